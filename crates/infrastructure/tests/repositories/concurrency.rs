//! Writers racing on a multi-thread runtime. A barrier releases all of them
//! at once so that they really overlap.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use domain::{Email, Order, OrderId, OrderStatus, PaymentFailure, Product, RepositoryError, User};
use test_support::Backend;
use tokio::sync::Barrier;

use crate::{day, new_order, new_user, t0, Harness, TEA_CATALOG};

backend_tests! {
    single: [],
    multi: [
        concurrent_inserts_get_distinct_numbers,
        concurrent_transitions_have_one_winner,
        concurrent_registrations_of_one_email_have_one_winner,
        concurrent_same_status_writes_have_one_winner,
    ],
    ignored: [],
}

async fn concurrent_inserts_get_distinct_numbers(backend: Backend) {
    // Several rounds, each on days of its own: one lucky interleaving must
    // not hide a racy counter (the insert retries a few collisions).
    const ROUNDS: u64 = 3;
    let h = Harness::new(backend).await;
    let products = h.catalog(TEA_CATALOG).await;
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(h.user(&format!("racer{i}@example.jp")).await);
    }
    let mut all_ids = HashSet::new();
    for round in 0..ROUNDS {
        let busy_day = day(2024, 11, 24) + chrono::Days::new(2 * round);
        let quiet_day = busy_day + chrono::Days::new(1);
        let ids = race_inserts(&h, &users, &products, busy_day, quiet_day).await;
        all_ids.extend(ids);
    }
    assert_eq!(all_ids.len(), 3 * (SAME_DAY + OTHER_DAY));
    let mut listed = 0;
    for user in &users {
        listed += h.repos.orders.list_for_user(user.id).await.unwrap().len();
    }
    assert_eq!(listed, all_ids.len());

    // And the counter carries on after the race.
    let next = h
        .repos
        .orders
        .insert(
            new_order(users[0].id, &[(&products[0], 1)], None),
            day(2024, 11, 24),
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(next.number.as_str(), "ACQ-241124-021");
}

const SAME_DAY: usize = 20;
const OTHER_DAY: usize = 5;

/// `SAME_DAY` simultaneous inserts on `busy_day` and `OTHER_DAY` on
/// `quiet_day`, from a fresh counter; returns the new orders' ids.
async fn race_inserts(
    h: &Harness,
    users: &[User],
    products: &[Product],
    busy_day: NaiveDate,
    quiet_day: NaiveDate,
) -> HashSet<OrderId> {
    let barrier = Arc::new(Barrier::new(SAME_DAY + OTHER_DAY));
    let mut tasks = Vec::new();
    for i in 0..SAME_DAY + OTHER_DAY {
        let orders = h.repos.orders.clone();
        let barrier = barrier.clone();
        let quantity = i64::try_from(i).unwrap() + 1;
        let placed = new_order(
            users[i % users.len()].id,
            &[(&products[i % products.len()], quantity)],
            Some(&format!("racer {i}")),
        );
        let on = if i < SAME_DAY { busy_day } else { quiet_day };
        let now = t0() + Duration::milliseconds(i64::try_from(i).unwrap());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let order = orders.insert(placed.clone(), on, now).await;
            (i, placed, now, order)
        }));
    }

    let mut stored = Vec::new();
    for result in futures::future::join_all(tasks).await {
        let (i, placed, now, order) = result.expect("task panicked");
        let order = order.unwrap_or_else(|e| panic!("{busy_day}: insert {i} failed: {e:?}"));
        // Each caller got back its own order.
        assert_eq!(order.placed, placed, "insert {i}");
        assert_eq!(order.created_at, now);
        assert_eq!(order.status(), OrderStatus::Pending);
        stored.push((i, order));
    }

    let numbers_of = |range: std::ops::Range<usize>| {
        let mut numbers: Vec<String> = stored
            .iter()
            .filter(|(i, _)| range.contains(i))
            .map(|(_, o)| o.number.as_str().to_string())
            .collect();
        numbers.sort();
        numbers
    };
    let expected = |on: NaiveDate, count: usize| -> Vec<String> {
        (1..=count)
            .map(|n| format!("ACQ-{}-{n:03}", on.format("%y%m%d")))
            .collect()
    };
    assert_eq!(numbers_of(0..SAME_DAY), expected(busy_day, SAME_DAY));
    assert_eq!(
        numbers_of(SAME_DAY..SAME_DAY + OTHER_DAY),
        expected(quiet_day, OTHER_DAY)
    );

    // What each caller was told is what the database holds.
    for (_, order) in &stored {
        let found = h.repos.orders.find_by_id(order.id).await.unwrap().unwrap();
        assert_eq!(&found, order);
    }
    let ids: HashSet<OrderId> = stored.iter().map(|(_, o)| o.id).collect();
    assert_eq!(ids.len(), SAME_DAY + OTHER_DAY);
    ids
}

/// Runs `a` and `b` as two simultaneous `save_state` calls, both made from
/// the same read of the order.
async fn race(h: &Harness, a: Order, b: Order) -> [Result<(), RepositoryError>; 2] {
    let barrier = Arc::new(Barrier::new(2));
    let spawn = |mut order: Order| {
        let orders = h.repos.orders.clone();
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            orders.save_state(&mut order, t0()).await
        })
    };
    let (ra, rb) = tokio::join!(spawn(a), spawn(b));
    [ra.expect("task a panicked"), rb.expect("task b panicked")]
}

/// Exactly one of the two writers won; returns which (0 or 1).
fn single_winner(results: &[Result<(), RepositoryError>; 2], round: usize) -> usize {
    match results {
        [Ok(()), Err(RepositoryError::Conflict)] => 0,
        [Err(RepositoryError::Conflict), Ok(())] => 1,
        other => panic!("round {round}: expected one Ok and one Conflict, got {other:?}"),
    }
}

async fn concurrent_transitions_have_one_winner(backend: Backend) {
    const ROUNDS: usize = 8;
    let h = Harness::new(backend).await;
    let user = h.user("race@example.jp").await;
    let products = h.catalog(TEA_CATALOG).await;
    let mut wins = [0_usize; 2];

    for round in 0..ROUNDS {
        let mut order = h.order_of_one(user.id, &products[0]).await;
        let at = t0() + Duration::seconds(i64::try_from(round).unwrap());

        // Even rounds: the customer cancels while the payment succeeds.
        // Odd rounds: two cancellations of a pending order.
        let (a, b) = if round % 2 == 0 {
            order.begin_payment(format!("pi_race_{round}")).unwrap();
            h.repos.orders.save_state(&mut order, t0()).await.unwrap();
            let mut cancel = order.clone();
            cancel.cancel(at, Some("changed my mind".into())).unwrap();
            let mut pay = order.clone();
            pay.mark_paid(at).unwrap();
            (cancel, pay)
        } else {
            let mut first = order.clone();
            first.cancel(at, Some("first".into())).unwrap();
            let mut second = order.clone();
            second.cancel(at, Some("second".into())).unwrap();
            (first, second)
        };

        let results = race(&h, a.clone(), b.clone()).await;
        let winner = single_winner(&results, round);
        wins[winner] += 1;
        let stored = h.repos.orders.find_by_id(order.id).await.unwrap().unwrap();
        let expected_state = if winner == 0 { a.state() } else { b.state() };
        assert_eq!(stored.state(), expected_state, "round {round}");
    }
    // Not asserted: which side wins is up to the scheduler.
    assert_eq!(wins[0] + wins[1], ROUNDS);
}

async fn concurrent_registrations_of_one_email_have_one_winner(backend: Backend) {
    const RACERS: usize = 10;
    let h = Harness::new(backend).await;
    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let users = h.repos.users.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let name = format!("Racer {i}");
                users
                    .insert(new_user("Same@Example.jp", Some(&name)), t0())
                    .await
            })
        })
        .collect();

    let mut winners = Vec::new();
    for result in futures::future::join_all(tasks).await {
        match result.expect("task panicked") {
            Ok(user) => winners.push(user),
            Err(RepositoryError::EmailTaken) => {}
            Err(other) => panic!("expected EmailTaken, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one registration wins");
    let stored = h
        .repos
        .users
        .find_by_email(&Email::parse("same@example.jp").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.id, winners[0].id);
    assert_eq!(stored.name, winners[0].name);
}

/// The port promises that two writers racing from the same status cannot
/// both win, also when neither changes the status.
async fn concurrent_same_status_writes_have_one_winner(backend: Backend) {
    let h = Harness::new(backend).await;
    let order = h
        .order_paying_with("same-status@example.jp", "pi_first")
        .await;

    // Checkout retry replaces the PaymentIntent while the webhook for the
    // first one records its failure (from the copy it read before).
    let mut retry = order.clone();
    retry.begin_payment("pi_second".into()).unwrap();
    let mut failure = order.clone();
    failure
        .record_payment_failure(PaymentFailure {
            code: Some("card_declined".into()),
            message: "declined".into(),
        })
        .unwrap();

    let results = race(&h, retry.clone(), failure.clone()).await;
    let winner = single_winner(&results, 0);
    let stored = h.repos.orders.find_by_id(order.id).await.unwrap().unwrap();
    let expected = if winner == 0 { &retry } else { &failure };
    assert_eq!(stored.state(), expected.state());
}
