use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use domain::{
    Currency, Order, OrderId, OrderNumber, OrderState, OrderStatus, PaymentFailure,
    RepositoryError, UserId,
};
use test_support::Backend;
use tokio::sync::Barrier;

use crate::{day, new_order, new_product, t0, yen, Harness, TEA_CATALOG};

backend_tests! {
    single: [
        insert_numbers_orders_per_day,
        insert_preserves_lines_and_totals,
        unknown_order_is_none,
        an_intent_finds_its_order_by_its_id_before_the_fallback,
        concurrent_intent_lookups_each_find_their_own_order,
        lookups_are_planned_once,
        list_for_user_is_own_orders_newest_first,
        save_state_persists_every_field,
        save_state_with_stale_status_is_conflict,
        deactivated_product_never_breaks_orders,
        reconciliation_finds_quiet_awaiting_orders_on_schedule,
        a_payment_lease_holds_until_its_owner_saves_or_releases,
        concurrent_checkouts_share_commits_and_one_caller_leases_each_order,
    ],
    multi: [],
}

/// Reloads `order` and checks that it is stored exactly as `expected`.
async fn assert_stored(h: &Harness, expected: &Order) {
    let stored = h
        .repos
        .orders
        .find_by_id(expected.id)
        .await
        .unwrap()
        .expect("order exists");
    assert_eq!(stored.state(), expected.state());
    assert_eq!(&stored, expected);
}

async fn insert_numbers_orders_per_day(backend: Backend) {
    let h = Harness::new(backend).await;
    let user = h.user("numbers@example.jp").await;
    let products = h.catalog(TEA_CATALOG).await;
    let orders = &h.repos.orders;
    let order = || new_order(user.id, &[(&products[0], 1)], None);
    let nov24 = day(2024, 11, 24);
    let nov25 = day(2024, 11, 25);

    let first = orders.insert(order(), nov24, t0()).await.unwrap();
    assert!(first.id.get() > 0);
    assert_eq!(first.number.as_str(), "ACQ-241124-001");
    assert_eq!(first.number, OrderNumber::new(nov24, 1).unwrap());
    let second = orders.insert(order(), nov24, t0()).await.unwrap();
    assert_eq!(second.number.as_str(), "ACQ-241124-002");
    assert_ne!(second.id, first.id);

    // Each day counts on its own, and going back to a day continues it.
    let next_day = orders.insert(order(), nov25, t0()).await.unwrap();
    assert_eq!(next_day.number.as_str(), "ACQ-241125-001");
    let third = orders.insert(order(), nov24, t0()).await.unwrap();
    assert_eq!(third.number.as_str(), "ACQ-241124-003");
    let next_day_2 = orders.insert(order(), nov25, t0()).await.unwrap();
    assert_eq!(next_day_2.number.as_str(), "ACQ-241125-002");
    // The same day of another month and of another year are other days.
    let dec24 = orders
        .insert(order(), day(2024, 12, 24), t0())
        .await
        .unwrap();
    assert_eq!(dec24.number.as_str(), "ACQ-241224-001");
    let next_year = orders
        .insert(order(), day(2025, 11, 24), t0())
        .await
        .unwrap();
    assert_eq!(next_year.number.as_str(), "ACQ-251124-001");

    // The number is stored, not recomputed.
    for o in [&first, &second, &third, &next_day, &next_day_2, &dec24] {
        assert_stored(&h, o).await;
    }
    let ids: std::collections::HashSet<OrderId> = [
        first.id,
        second.id,
        third.id,
        next_day.id,
        next_day_2.id,
        dec24.id,
        next_year.id,
    ]
    .into_iter()
    .collect();
    assert_eq!(ids.len(), 7);
}

async fn insert_preserves_lines_and_totals(backend: Backend) {
    let h = Harness::new(backend).await;
    let user = h.user("lines@example.jp").await;
    let products = h.catalog(TEA_CATALOG).await;
    let (sencha, gyokuro, yunomi) = (&products[0], &products[1], &products[2]);
    let now = t0();

    // Lines deliberately not in product-id order.
    let placed = new_order(
        user.id,
        &[(yunomi, 2), (sencha, 3), (gyokuro, 1)],
        Some("  のし紙をお願いします  "),
    );
    // 2 × 2,500 + 3 × 1,200 + 1 × 3,000 = 11,600; tax 1,160; shipping 500.
    assert_eq!(placed.subtotal, yen(11_600));
    let order = h
        .repos
        .orders
        .insert(placed.clone(), day(2024, 11, 24), now)
        .await
        .unwrap();

    assert_eq!(order.placed, placed);
    assert_eq!(order.user_id(), user.id);
    assert_eq!(order.created_at, now);
    assert_eq!(order.state(), &OrderState::new_pending(Currency::Jpy));
    assert_eq!(order.status(), OrderStatus::Pending);
    assert_eq!(order.placed.subtotal, yen(11_600));
    assert_eq!(order.placed.tax, yen(1_160));
    assert_eq!(order.placed.shipping_fee, yen(500));
    assert_eq!(order.total(), yen(13_260));
    assert_eq!(order.placed.notes.as_deref(), Some("のし紙をお願いします"));
    let lines: Vec<_> = order
        .placed
        .lines
        .iter()
        .map(|l| {
            (
                l.product_id,
                l.product_name.as_str(),
                l.unit_price.minor_units(),
                l.quantity.get(),
                l.subtotal.minor_units(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (yunomi.id, "有田焼 湯呑み", 2_500, 2, 5_000),
            (sencha.id, "静岡煎茶 100g", 1_200, 3, 3_600),
            (gyokuro.id, "玉露 50g", 3_000, 1, 3_000),
        ]
    );
    assert_stored(&h, &order).await;

    // Snapshots: a later catalog change does not alter what was bought.
    h.catalog(&[
        ("TEA-SENCHA", "静岡煎茶 100g (新)", 1_500),
        ("TEA-GYOKURO", "玉露 50g", 2_800),
        ("CUP-YUNOMI", "湯呑み", 2_500),
    ])
    .await;
    assert_stored(&h, &order).await;

    // No notes, one line, a big quantity.
    let simple = new_order(user.id, &[(gyokuro, 999)], None);
    let simple_order = h
        .repos
        .orders
        .insert(
            simple.clone(),
            day(2024, 11, 24),
            now + Duration::seconds(1),
        )
        .await
        .unwrap();
    assert_eq!(simple_order.placed, simple);
    assert_eq!(simple_order.placed.notes, None);
    assert_eq!(
        simple_order.total(),
        yen(3_000 * 999 + 3_000 * 999 / 10 + 500)
    );
    assert_stored(&h, &simple_order).await;
}

async fn unknown_order_is_none(backend: Backend) {
    let h = Harness::new(backend).await;
    let orders = &h.repos.orders;
    assert!(orders.find_by_id(OrderId::new(1)).await.unwrap().is_none());
    let user = h.user("unknown-order@example.jp").await;
    let products = h.catalog(TEA_CATALOG).await;
    let order = orders
        .insert(
            new_order(user.id, &[(&products[0], 1)], None),
            day(2024, 11, 24),
            t0(),
        )
        .await
        .unwrap();
    assert!(orders
        .find_by_id(OrderId::new(order.id.get() + 1))
        .await
        .unwrap()
        .is_none());
    assert!(orders.find_by_id(OrderId::new(-1)).await.unwrap().is_none());
    assert!(orders.find_by_id(order.id).await.unwrap().is_some());
}

async fn an_intent_finds_its_order_by_its_id_before_the_fallback(backend: Backend) {
    let h = Harness::new(backend).await;
    let orders = &h.repos.orders;
    let user = h.user("intent-lookup@example.jp").await;
    let products = h.catalog(TEA_CATALOG).await;
    let mut placed = Vec::new();
    for _ in 0..2 {
        let order = orders
            .insert(
                new_order(user.id, &[(&products[0], 2)], None),
                day(2024, 11, 24),
                t0(),
            )
            .await
            .unwrap();
        placed.push(order);
    }
    let (mut with_intent, without) = (placed.remove(0), placed.remove(0));
    with_intent.begin_payment("pi_lookup".into()).unwrap();
    orders.save_state(&mut with_intent, t0()).await.unwrap();
    let find = |intent: &'static str, fallback: Option<OrderId>| async move {
        orders
            .find_by_payment_intent_or_id(intent, fallback)
            .await
            .unwrap()
            .map(|order| order.id)
    };

    // The intent's own order wins over the fallback it is given.
    assert_eq!(
        find("pi_lookup", Some(without.id)).await,
        Some(with_intent.id)
    );
    assert_eq!(find("pi_lookup", None).await, Some(with_intent.id));
    // An intent no order records falls back to the order named.
    assert_eq!(
        find("pi_unrecorded", Some(without.id)).await,
        Some(without.id)
    );
    assert_eq!(find("pi_unrecorded", None).await, None);
    assert_eq!(find("pi_unrecorded", Some(OrderId::new(-1))).await, None);
    // The order comes whole, lines included.
    let found = orders
        .find_by_payment_intent_or_id("pi_unrecorded", Some(without.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, without);
}

/// A burst of webhooks looks up its orders at once; on PostgreSQL the
/// look-ups share queries, and each caller must still get its own order,
/// whole, or none.
async fn concurrent_intent_lookups_each_find_their_own_order(backend: Backend) {
    const ORDERS: usize = 16;
    let h = Harness::new(backend).await;
    let user = h.user("lookups@example.jp").await;
    let products = h.catalog(TEA_CATALOG).await;
    let mut placed = Vec::new();
    for n in 0..ORDERS {
        // Orders of one, two and three lines, so lines cannot be mixed up.
        let lines: Vec<_> = products
            .iter()
            .take(1 + n % 3)
            .map(|p| (p, 1 + n as i64 % 2))
            .collect();
        let mut order = h
            .repos
            .orders
            .insert(new_order(user.id, &lines, None), day(2024, 11, 24), t0())
            .await
            .unwrap();
        if n % 2 == 0 {
            order.begin_payment(format!("pi_burst_{n}")).unwrap();
            h.repos.orders.save_state(&mut order, t0()).await.unwrap();
        }
        placed.push(order);
    }
    // Each order by its intent (the recorded ones) or by its id (the
    // others), each asked twice; and look-ups that find nothing.
    let mut lookups: Vec<(String, Option<OrderId>, Option<Order>)> = Vec::new();
    for (n, order) in placed.iter().enumerate() {
        let lookup = match order.state().payment_intent_id.clone() {
            Some(intent) => (intent, None, Some(order.clone())),
            None => (
                format!("pi_unrecorded_{n}"),
                Some(order.id),
                Some(order.clone()),
            ),
        };
        lookups.push(lookup.clone());
        lookups.push(lookup);
    }
    lookups.push(("pi_nobody".into(), None, None));
    lookups.push(("pi_nobody".into(), Some(OrderId::new(-7)), None));
    let before = h
        .database
        .order_lookup_batches()
        .map(|stats| stats.snapshot());

    let start = Arc::new(Barrier::new(lookups.len()));
    let asked: Vec<_> = lookups
        .iter()
        .cloned()
        .map(|(intent, fallback, expected)| {
            let (orders, start) = (h.repos.orders.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let found = orders
                    .find_by_payment_intent_or_id(&intent, fallback)
                    .await
                    .unwrap();
                (intent, found, expected)
            })
        })
        .collect();
    for answer in asked {
        let (intent, found, expected) = answer.await.unwrap();
        assert_eq!(found, expected, "look-up of {intent}");
    }

    if let (Some((batches_before, lookups_before)), Some(stats)) =
        (before, h.database.order_lookup_batches())
    {
        let (batches, asked) = stats.snapshot();
        let (batches, asked) = (batches - batches_before, asked - lookups_before);
        assert_eq!(asked, lookups.len() as u64);
        assert!(
            batches < asked,
            "{asked} concurrent look-ups took {batches} queries: none were grouped"
        );
    }
}

/// PostgreSQL plans the webhooks' look-up once per connection, not on
/// every run (a custom plan cost more than running it); SQLite reads
/// in-process and plans nothing here.
async fn lookups_are_planned_once(backend: Backend) {
    // More runs than the five custom plans PostgreSQL makes by default
    // before it may try the generic one.
    const RUNS: i64 = 8;
    let h = Harness::new(backend).await;
    let order = h
        .order_paying_with("planned@example.jp", "pi_planned")
        .await;
    for _ in 0..RUNS {
        let found = h
            .repos
            .orders
            .find_by_payment_intent_or_id("pi_planned", None)
            .await
            .unwrap();
        assert_eq!(found.map(|o| o.id), Some(order.id));
    }

    match h.database.order_lookup_plans().await {
        Some((generic, custom)) => {
            assert_eq!(custom, 0, "the look-up was planned afresh {custom} times");
            assert!(generic >= RUNS, "{generic} generic runs of {RUNS}");
        }
        None => assert_eq!(h.database.backend(), "sqlite"),
    }
}

async fn list_for_user_is_own_orders_newest_first(backend: Backend) {
    let h = Harness::new(backend).await;
    let alice = h.user("alice@example.jp").await;
    let bob = h.user("bob@example.jp").await;
    let carol = h.user("carol@example.jp").await;
    let products = h.catalog(TEA_CATALOG).await;
    let orders = &h.repos.orders;
    assert!(orders.list_for_user(alice.id).await.unwrap().is_empty());

    let mut alices = Vec::new();
    let mut bobs = Vec::new();
    for i in 0..4_i64 {
        let at = t0() + Duration::minutes(i);
        let a = orders
            .insert(
                new_order(alice.id, &[(&products[0], i + 1)], None),
                day(2024, 11, 24),
                at,
            )
            .await
            .unwrap();
        alices.push(a);
        if i % 2 == 0 {
            let b = orders
                .insert(
                    new_order(bob.id, &[(&products[1], 1), (&products[2], i + 1)], None),
                    day(2024, 11, 24),
                    at + Duration::seconds(1),
                )
                .await
                .unwrap();
            bobs.push(b);
        }
    }

    let listed = orders.list_for_user(alice.id).await.unwrap();
    alices.reverse();
    assert_eq!(listed, alices);
    assert!(listed.iter().all(|o| o.is_owned_by(alice.id)));
    assert!(listed.windows(2).all(|w| w[0].created_at > w[1].created_at));

    let listed = orders.list_for_user(bob.id).await.unwrap();
    bobs.reverse();
    assert_eq!(listed, bobs);
    // Each listed order carries its own lines, not its neighbours'.
    assert_eq!(listed[0].placed.lines.len(), 2);
    assert_eq!(listed[0].placed.lines[1].quantity.get(), 3);
    assert_eq!(listed[1].placed.lines[1].quantity.get(), 1);

    assert!(orders.list_for_user(carol.id).await.unwrap().is_empty());
    assert!(orders
        .list_for_user(UserId::new(carol.id.get() + 100))
        .await
        .unwrap()
        .is_empty());

    // A state change does not reorder the list.
    let mut oldest = alices.last().unwrap().clone();
    oldest.cancel(t0() + Duration::hours(1), None).unwrap();
    orders
        .save_state(&mut oldest, t0() + Duration::hours(1))
        .await
        .unwrap();
    let listed = orders.list_for_user(alice.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|o| o.id).collect::<Vec<_>>(),
        alices.iter().map(|o| o.id).collect::<Vec<_>>()
    );
    assert_eq!(listed.last().unwrap(), &oldest);
}

/// A placed order for the state tests, and the time it was placed.
async fn placed_order(h: &Harness, email: &str) -> (Order, DateTime<Utc>) {
    let user = h.user(email).await;
    let products = h.catalog(TEA_CATALOG).await;
    let now = Utc::now().trunc_subsecs(6);
    let order = h
        .repos
        .orders
        .insert(
            new_order(user.id, &[(&products[0], 2), (&products[1], 1)], None),
            day(2024, 11, 24),
            now,
        )
        .await
        .unwrap();
    (order, now)
}

async fn save_state_persists_every_field(backend: Backend) {
    let h = Harness::new(backend).await;
    let orders = &h.repos.orders;
    let (mut order, now) = placed_order(&h, "state@example.jp").await;

    order.begin_payment("pi_3QabcDEF123".into()).unwrap();
    orders.save_state(&mut order, now).await.unwrap();
    assert_stored(&h, &order).await;
    assert_eq!(order.status(), OrderStatus::AwaitingPayment);

    // Same status, other fields: a failed attempt, then a new PaymentIntent.
    order
        .record_payment_failure(PaymentFailure {
            code: Some("card_declined".into()),
            message: "Your card was declined.".into(),
        })
        .unwrap();
    orders.save_state(&mut order, now).await.unwrap();
    assert_stored(&h, &order).await;
    order
        .record_payment_failure(PaymentFailure {
            code: None,
            message: "カードが拒否されました".into(),
        })
        .unwrap();
    order.begin_payment("pi_3QsecondXYZ".into()).unwrap();
    orders.save_state(&mut order, now).await.unwrap();
    assert_stored(&h, &order).await;
    assert_eq!(
        order.state().last_payment_error,
        Some(PaymentFailure {
            code: None,
            message: "カードが拒否されました".into()
        })
    );

    let paid_at = now + Duration::seconds(42) + Duration::microseconds(654_321);
    order.mark_paid(paid_at).unwrap();
    orders.save_state(&mut order, paid_at).await.unwrap();
    assert_stored(&h, &order).await;
    let stored = orders.find_by_id(order.id).await.unwrap().unwrap();
    assert_eq!(stored.state().paid_at, Some(paid_at));
    assert_eq!(stored.state().last_payment_error, None);
    assert_eq!(
        stored.state().payment_intent_id.as_deref(),
        Some("pi_3QsecondXYZ")
    );

    // A partial refund keeps `paid`, the rest makes it `refunded`.
    order.record_refunds(yen(1_000)).unwrap();
    orders.save_state(&mut order, paid_at).await.unwrap();
    assert_stored(&h, &order).await;
    assert_eq!(order.status(), OrderStatus::Paid);
    order.record_refunds(order.total()).unwrap();
    assert_eq!(order.status(), OrderStatus::Refunded);
    orders.save_state(&mut order, paid_at).await.unwrap();
    assert_stored(&h, &order).await;
    let stored = orders.find_by_id(order.id).await.unwrap().unwrap();
    assert_eq!(stored.state().refunded_amount, order.total());
    assert_eq!(stored.status(), OrderStatus::Refunded);
    // The placed part never changes.
    assert_eq!(stored.placed, order.placed);
    assert_eq!(stored.number, order.number);
    assert_eq!(stored.created_at, order.created_at);

    // Cancellation, with and without a reason.
    let (mut cancelled, now) = placed_order(&h, "cancel@example.jp").await;
    let at = now + Duration::minutes(3) + Duration::microseconds(7);
    cancelled
        .cancel(at, Some("住所を間違えました".into()))
        .unwrap();
    orders.save_state(&mut cancelled, at).await.unwrap();
    assert_stored(&h, &cancelled).await;
    let stored = orders.find_by_id(cancelled.id).await.unwrap().unwrap();
    assert_eq!(stored.status(), OrderStatus::Cancelled);
    assert_eq!(stored.state().cancelled_at, Some(at));
    assert_eq!(
        stored.state().cancel_reason.as_deref(),
        Some("住所を間違えました")
    );
    assert_eq!(stored.state().payment_intent_id, None);

    let (mut awaiting, now) = placed_order(&h, "cancel2@example.jp").await;
    awaiting.begin_payment("pi_cancel_me".into()).unwrap();
    orders.save_state(&mut awaiting, now).await.unwrap();
    awaiting.cancel(now, None).unwrap();
    orders.save_state(&mut awaiting, now).await.unwrap();
    assert_stored(&h, &awaiting).await;

    // The other orders were not touched by any of this.
    let stored = orders.find_by_id(order.id).await.unwrap().unwrap();
    assert_eq!(stored, order);
}

async fn save_state_with_stale_status_is_conflict(backend: Backend) {
    let h = Harness::new(backend).await;
    let orders = &h.repos.orders;
    let (order, now) = placed_order(&h, "stale@example.jp").await;
    let stale = order.clone();

    let mut current = order.clone();
    current.begin_payment("pi_current".into()).unwrap();
    orders.save_state(&mut current, now).await.unwrap();

    // A writer that still believes the order is pending loses.
    let mut late_cancel = stale.clone();
    late_cancel
        .cancel(now + Duration::seconds(1), Some("too late".into()))
        .unwrap();
    let err = orders
        .save_state(&mut late_cancel, now + Duration::seconds(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepositoryError::Conflict),
        "expected Conflict, got {err:?}"
    );
    assert_stored(&h, &current).await;

    // A copy read before the last save is stale whatever state it carries.
    let mut paid = current.clone().at_version(current.version() - 1);
    paid.mark_paid(now + Duration::seconds(2)).unwrap();
    let err = orders.save_state(&mut paid, now).await.unwrap_err();
    assert!(
        matches!(err, RepositoryError::Conflict),
        "expected Conflict, got {err:?}"
    );
    assert_stored(&h, &current).await;

    // After the order is final, no writer from an earlier status gets in.
    let mut cancelled = current.clone();
    cancelled.cancel(now + Duration::seconds(3), None).unwrap();
    orders.save_state(&mut cancelled, now).await.unwrap();
    let err = orders.save_state(&mut paid, now).await.unwrap_err();
    assert!(matches!(err, RepositoryError::Conflict), "{err:?}");
    assert_stored(&h, &cancelled).await;

    // An order that does not exist cannot be written either.
    let mut ghost = Order::restore(
        OrderId::new(order.id.get() + 1000),
        order.number.clone(),
        order.created_at,
        order.placed.clone(),
        late_cancel.state().clone(),
    );
    assert!(orders.save_state(&mut ghost, now).await.is_err());
    assert!(orders.find_by_id(ghost.id).await.unwrap().is_none());
    assert_stored(&h, &cancelled).await;
}

async fn deactivated_product_never_breaks_orders(backend: Backend) {
    let h = Harness::new(backend).await;
    let user = h.user("retired@example.jp").await;
    let products = h.catalog(TEA_CATALOG).await;
    let (sencha, gyokuro) = (&products[0], &products[1]);
    let orders = &h.repos.orders;

    let order = orders
        .insert(
            new_order(user.id, &[(sencha, 1), (gyokuro, 2)], None),
            day(2024, 11, 24),
            t0(),
        )
        .await
        .unwrap();
    // Priced while gyokuro was still on sale...
    let priced_earlier = new_order(user.id, &[(gyokuro, 1)], None);

    // ...then the catalog drops gyokuro, which orders refer to: no error.
    h.repos
        .products
        .replace_catalog(&[
            new_product("TEA-SENCHA", "静岡煎茶 100g", 1_200, true),
            new_product("CUP-YUNOMI", "有田焼 湯呑み", 2_500, true),
        ])
        .await
        .unwrap();
    assert!(h
        .repos
        .products
        .find_active(&[gyokuro.id])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        h.product_row("TEA-GYOKURO").await,
        Some((gyokuro.id.get(), false))
    );

    // Orders that refer to it still read back whole.
    assert_stored(&h, &order).await;
    assert_eq!(
        orders.list_for_user(user.id).await.unwrap(),
        vec![order.clone()]
    );

    // An order priced before the drop can still be stored.
    let late = orders
        .insert(priced_earlier.clone(), day(2024, 11, 24), t0())
        .await
        .unwrap();
    assert_eq!(late.placed, priced_earlier);
    assert_eq!(late.number.as_str(), "ACQ-241124-002");
    assert_stored(&h, &late).await;

    // Emptying the catalog entirely is fine too.
    h.repos.products.replace_catalog(&[]).await.unwrap();
    assert_stored(&h, &order).await;
    assert_stored(&h, &late).await;
}

async fn reconciliation_finds_quiet_awaiting_orders_on_schedule(backend: Backend) {
    let h = Harness::new(backend).await;
    let user = h.user("reconcile@example.jp").await;
    let products = h.catalog(TEA_CATALOG).await;
    let orders = &h.repos.orders;
    let created = t0();
    let mut awaiting = orders
        .insert(
            new_order(user.id, &[(&products[0], 1)], None),
            day(2024, 11, 24),
            created,
        )
        .await
        .unwrap();
    awaiting.begin_payment("pi_quiet".into()).unwrap();
    orders.save_state(&mut awaiting, created).await.unwrap();
    // Pending orders (no intent) are never due.
    orders
        .insert(
            new_order(user.id, &[(&products[0], 1)], None),
            day(2024, 11, 24),
            created,
        )
        .await
        .unwrap();

    let later = created + Duration::minutes(10);
    let due = |quiet_since, now| async move {
        orders
            .due_for_reconciliation(quiet_since, now, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect::<Vec<_>>()
    };
    // Quiet for long enough: due. Changed too recently: not yet.
    assert_eq!(
        due(later - Duration::minutes(2), later).await,
        vec![awaiting.id]
    );
    assert_eq!(due(created - Duration::minutes(2), later).await, vec![]);

    // Checked once: not due again until the scheduled time.
    orders
        .schedule_next_check(awaiting.id, later + Duration::seconds(15), 1)
        .await
        .unwrap();
    assert_eq!(orders.reconcile_checks(awaiting.id).await.unwrap(), 1);
    assert_eq!(due(later, later + Duration::seconds(14)).await, vec![]);
    assert_eq!(
        due(later, later + Duration::seconds(15)).await,
        vec![awaiting.id]
    );

    // Paid orders are never due.
    awaiting.mark_paid(later).unwrap();
    orders.save_state(&mut awaiting, created).await.unwrap();
    assert_eq!(due(later, later + Duration::days(30)).await, vec![]);
}

async fn a_payment_lease_holds_until_its_owner_saves_or_releases(backend: Backend) {
    let h = Harness::new(backend).await;
    let user = h.user("lease@example.jp").await;
    let products = h.catalog(TEA_CATALOG).await;
    let orders = &h.repos.orders;
    let mut order = orders
        .insert(
            new_order(user.id, &[(&products[0], 1)], None),
            day(2024, 11, 24),
            t0(),
        )
        .await
        .unwrap();
    let until = t0() + Duration::seconds(120);

    assert!(orders
        .claim_payment_lease(&order, "a", t0(), until)
        .await
        .unwrap());
    assert!(
        !orders
            .claim_payment_lease(&order, "b", t0(), until)
            .await
            .unwrap(),
        "a live lease is exclusive"
    );
    // Someone else's save does not free a's lease.
    let mut other = order.clone();
    other.begin_payment("pi_other".into()).unwrap();
    orders
        .save_state_releasing_lease(&mut other, "b", t0())
        .await
        .unwrap();
    assert!(!orders
        .claim_payment_lease(&other, "b", t0(), until)
        .await
        .unwrap());
    // A stale save by the owner is a conflict and keeps the lease.
    order.begin_payment("pi_stale".into()).unwrap();
    assert!(matches!(
        orders
            .save_state_releasing_lease(&mut order, "a", t0())
            .await,
        Err(RepositoryError::Conflict)
    ));
    assert!(!orders
        .claim_payment_lease(&other, "b", t0(), until)
        .await
        .unwrap());
    // The owner's save records the state and frees the order at once.
    let mut current = orders.find_by_id(other.id).await.unwrap().unwrap();
    current.mark_paid(t0()).unwrap();
    orders
        .save_state_releasing_lease(&mut current, "a", t0())
        .await
        .unwrap();
    assert_stored(&h, &current).await;
    assert!(
        orders
            .claim_payment_lease(&current, "b", t0(), until)
            .await
            .unwrap(),
        "released with the save"
    );
    orders.release_payment_lease(current.id, "b").await.unwrap();
    assert!(orders
        .claim_payment_lease(&current, "c", t0(), until)
        .await
        .unwrap());
}

/// Many first intent calls at once (a sale opening): their lease claims
/// and their records share commits, and still only one caller of each
/// order gets its lease.
async fn concurrent_checkouts_share_commits_and_one_caller_leases_each_order(backend: Backend) {
    const ORDERS: usize = 24;
    let h = Harness::new(backend).await;
    let user = h.user("sale@example.jp").await;
    let products = h.catalog(TEA_CATALOG).await;
    let mut placed = Vec::new();
    for _ in 0..ORDERS {
        placed.push(h.order_of_one(user.id, &products[0]).await);
    }
    let (batches_before, writes_before) = h.database.order_write_batches().snapshot();
    let until = t0() + Duration::seconds(120);

    // Two callers per order, all at once.
    let start = Arc::new(Barrier::new(2 * ORDERS));
    let claims: Vec<_> = placed
        .iter()
        .flat_map(|order| ["first", "second"].map(|owner| (order.clone(), owner)))
        .map(|(order, owner)| {
            let (orders, start) = (h.repos.orders.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let won = orders
                    .claim_payment_lease(&order, owner, t0(), until)
                    .await
                    .unwrap();
                (order, owner, won)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for claim in claims {
        let (order, owner, won) = claim.await.unwrap();
        if won {
            winners.push((order, owner));
        }
    }
    let mut leased: Vec<_> = winners.iter().map(|(order, _)| order.id).collect();
    leased.sort_unstable();
    leased.dedup();
    assert_eq!(
        (winners.len(), leased.len()),
        (ORDERS, ORDERS),
        "exactly one lease per order"
    );

    // Each winner records its intent and gives the lease back, all at once.
    let start = Arc::new(Barrier::new(ORDERS));
    let saves: Vec<_> = winners
        .into_iter()
        .enumerate()
        .map(|(n, (mut order, owner))| {
            let (orders, start) = (h.repos.orders.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                order.begin_payment(format!("pi_sale_{n}")).unwrap();
                orders
                    .save_state_releasing_lease(&mut order, owner, t0())
                    .await
                    .unwrap();
                order
            })
        })
        .collect();
    for save in saves {
        let saved = save.await.unwrap();
        assert_stored(&h, &saved).await;
        assert!(
            h.repos
                .orders
                .claim_payment_lease(&saved, "next", t0(), until)
                .await
                .unwrap(),
            "order {} was released with its record",
            saved.id
        );
    }

    let (batches, writes) = h.database.order_write_batches().snapshot();
    let (batches, writes) = (batches - batches_before, writes - writes_before);
    // 48 claims, 24 saves, and the 24 claims of the check above.
    assert_eq!(writes, 4 * ORDERS as u64);
    assert!(
        batches < 3 * ORDERS as u64,
        "{writes} writes took {batches} commits: the concurrent ones were not grouped"
    );
}
