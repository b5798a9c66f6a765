//! Recording webhook events under load: concurrent events share commits
//! (group commit) and each stays all or nothing: a duplicate writes
//! nothing, a conflict leaves no trace, and one failing event does not
//! take the others of its batch down.

use std::sync::Arc;

use application::Repositories;
use chrono::{Duration, Utc};
use domain::ports::{EventRecorded, OutboxMessage, WebhookEventRecord};
use domain::{Order, OrderId, OrderStatus, RepositoryError};
use test_support::Backend;
use tokio::sync::Barrier;

use crate::{day, new_order, t0, Harness, TEA_CATALOG};

backend_tests! {
    single: [closing_takes_back_the_connections_writers_keep],
    multi: [
        concurrent_events_share_commits_and_each_applies_once,
        deliveries_of_one_event_at_once_record_it_once,
        a_conflicting_event_leaves_no_trace,
        one_failing_event_does_not_fail_the_others,
        concurrent_batches_keep_each_event_once,
    ],
}

pub(crate) fn event(id: &str, order: Option<&Order>) -> WebhookEventRecord {
    WebhookEventRecord {
        id: id.to_string(),
        kind: "payment_intent.succeeded".into(),
        created: 1_732_400_000,
        received_at: Utc::now(),
        outcome: "applied".into(),
        detail: None,
        order_id: order.map(|o| o.id),
        payment_intent_id: order.and_then(|o| o.state().payment_intent_id.clone()),
        payload: format!(r#"{{"id":"{id}"}}"#),
    }
}

/// One caller's `record`: the event, the order to save, the messages.
type Write = (WebhookEventRecord, Option<Order>, Vec<OutboxMessage>);

/// `order` paid (at the fixed `t0`, which both databases store exactly).
fn paid(order: &Order) -> Order {
    let mut paid = order.clone();
    paid.mark_paid(t0()).unwrap();
    paid
}

/// `order` with a declined payment recorded.
fn declined(order: &Order) -> Order {
    let mut failed = order.clone();
    failed
        .record_payment_failure(domain::PaymentFailure {
            code: Some("card_declined".into()),
            message: "declined".into(),
        })
        .unwrap();
    failed
}

/// Event `id` paying `order`, with its `order_paid` message.
fn paying(id: &str, order: &Order) -> Write {
    let paid = paid(order);
    let message = paid_message(&paid);
    (event(id, Some(order)), Some(paid), vec![message])
}

pub(crate) fn paid_message(order: &Order) -> OutboxMessage {
    OutboxMessage {
        topic: "order_paid".into(),
        order_id: order.id,
    }
}

/// `count` orders awaiting payment, each with its own PaymentIntent.
pub(crate) async fn awaiting_orders(h: &Harness, count: usize) -> Vec<Order> {
    let user = h.user("events@example.jp").await;
    let products = h.catalog(TEA_CATALOG).await;
    let mut orders = Vec::new();
    for n in 0..count {
        let mut order = h
            .repos
            .orders
            .insert(
                new_order(user.id, &[(&products[0], 1), (&products[1], 2)], None),
                day(2024, 11, 24),
                Utc::now(),
            )
            .await
            .unwrap();
        order.begin_payment(format!("pi_events_{n}")).unwrap();
        h.repos
            .orders
            .save_state(&mut order, Utc::now())
            .await
            .unwrap();
        orders.push(order);
    }
    orders
}

/// Records every `(event, order to save, outbox)` at once, from as many
/// tasks released together; returns each result with the order as the
/// caller holds it afterwards.
async fn record_all(
    h: &Harness,
    writes: Vec<Write>,
) -> Vec<(Result<EventRecorded, RepositoryError>, Option<Order>)> {
    record_across(&[&h.repos], writes).await
}

/// Records `writes` all at once, the n-th through `instances[n % len]`.
async fn record_across(
    instances: &[&Repositories],
    writes: Vec<Write>,
) -> Vec<(Result<EventRecorded, RepositoryError>, Option<Order>)> {
    let start = Arc::new(Barrier::new(writes.len()));
    let tasks: Vec<_> = writes
        .into_iter()
        .enumerate()
        .map(|(n, (event, mut order, outbox))| {
            let events = instances[n % instances.len()].webhook_events.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let result = events
                    .record(&event, order.as_mut(), &outbox, Utc::now())
                    .await;
                (result, order)
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

pub(crate) async fn pending_outbox(h: &Harness) -> i64 {
    h.repos.outbox.backlog(100).await.unwrap().pending
}

async fn concurrent_events_share_commits_and_each_applies_once(backend: Backend) {
    const EVENTS: usize = 48;
    let h = Harness::new(backend).await;
    let orders = awaiting_orders(&h, EVENTS).await;
    let (batches_before, events_before) = h.database.event_batches().snapshot();
    let writes = orders
        .iter()
        .enumerate()
        .map(|(n, order)| paying(&format!("evt_group_{n}"), order))
        .collect();

    let results = record_all(&h, writes).await;

    for (n, (result, held)) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap(), EventRecorded::Recorded, "event {n}");
        let stored = h
            .repos
            .orders
            .find_by_id(orders[n].id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.status(), OrderStatus::Paid, "order {n}");
        assert_eq!(stored.placed, orders[n].placed, "order {n} keeps its lines");
        assert_eq!(stored.version(), orders[n].version() + 1, "order {n}");
        // The caller's copy moved to the stored version, so it can be
        // saved again without a false conflict.
        assert_eq!(held.unwrap().version(), stored.version(), "order {n}");
        let recorded = h
            .repos
            .webhook_events
            .find(&format!("evt_group_{n}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(recorded.order_id, Some(orders[n].id));
    }
    assert_eq!(pending_outbox(&h).await, EVENTS as i64);
    let (batches, events) = h.database.event_batches().snapshot();
    let (batches, events) = (batches - batches_before, events - events_before);
    assert_eq!(events, EVENTS as u64);
    assert!(
        batches < events,
        "{events} concurrent events took {batches} commits: nothing was grouped"
    );
}

async fn deliveries_of_one_event_at_once_record_it_once(backend: Backend) {
    const DELIVERIES: usize = 16;
    let h = Harness::new(backend).await;
    let order = awaiting_orders(&h, 1).await.remove(0);
    let writes = (0..DELIVERIES)
        .map(|_| paying("evt_same", &order))
        .collect();

    let results = record_all(&h, writes).await;

    let recorded = results
        .iter()
        .filter(|(r, _)| matches!(r, Ok(EventRecorded::Recorded)))
        .count();
    let duplicates = results
        .iter()
        .filter(|(r, _)| matches!(r, Ok(EventRecorded::Duplicate)))
        .count();
    assert_eq!((recorded, duplicates), (1, DELIVERIES - 1), "{results:?}");
    let stored = h.repos.orders.find_by_id(order.id).await.unwrap().unwrap();
    assert_eq!(stored.version(), order.version() + 1);
    assert_eq!(stored.status(), OrderStatus::Paid);
    assert_eq!(pending_outbox(&h).await, 1);
}

async fn a_conflicting_event_leaves_no_trace(backend: Backend) {
    const ROUNDS: usize = 6;
    let h = Harness::new(backend).await;
    for (round, order) in awaiting_orders(&h, ROUNDS).await.into_iter().enumerate() {
        // Two events decided from the same read of the order: a payment
        // and a failure. Only one may land, with its event and message.
        let (paid, failed) = (paid(&order), declined(&order));
        let (paid_id, failed_id) = (format!("evt_paid_{round}"), format!("evt_failed_{round}"));
        let outbox_before = pending_outbox(&h).await;
        let results = record_all(
            &h,
            vec![
                paying(&paid_id, &order),
                (
                    event(&failed_id, Some(&order)),
                    Some(failed.clone()),
                    vec![],
                ),
            ],
        )
        .await;

        let (winner, loser, winner_state, winner_messages) = match (&results[0].0, &results[1].0) {
            (Ok(EventRecorded::Recorded), Err(RepositoryError::Conflict)) => {
                (&paid_id, &failed_id, paid.state(), 1)
            }
            (Err(RepositoryError::Conflict), Ok(EventRecorded::Recorded)) => {
                (&failed_id, &paid_id, failed.state(), 0)
            }
            other => panic!("round {round}: expected one recorded and one conflict, got {other:?}"),
        };
        let events = &h.repos.webhook_events;
        assert!(
            events.find(winner).await.unwrap().is_some(),
            "round {round}"
        );
        assert!(
            events.find(loser).await.unwrap().is_none(),
            "round {round}: the conflicting event must not stay recorded"
        );
        let stored = h.repos.orders.find_by_id(order.id).await.unwrap().unwrap();
        assert_eq!(stored.state(), winner_state, "round {round}");
        assert_eq!(stored.version(), order.version() + 1, "round {round}");
        assert_eq!(
            pending_outbox(&h).await - outbox_before,
            winner_messages,
            "round {round}"
        );
    }
}

async fn one_failing_event_does_not_fail_the_others(backend: Backend) {
    const EVENTS: usize = 16;
    const BAD: usize = 5;
    let h = Harness::new(backend).await;
    let orders = awaiting_orders(&h, EVENTS).await;
    let writes = orders
        .iter()
        .enumerate()
        .map(|(n, order)| {
            let mut write = paying(&format!("evt_iso_{n}"), order);
            if n == BAD {
                // A message for an order that does not exist: the database
                // refuses it (foreign key), failing the batch it is in.
                write.2[0].order_id = OrderId::new(9_999_999);
            }
            write
        })
        .collect();

    let results = record_all(&h, writes).await;

    for (n, (result, _)) in results.iter().enumerate() {
        if n == BAD {
            assert!(
                matches!(result, Err(RepositoryError::Unexpected(_))),
                "the bad event fails: {result:?}"
            );
        } else {
            assert_eq!(
                result.as_ref().unwrap(),
                &EventRecorded::Recorded,
                "event {n}"
            );
        }
    }
    let events = &h.repos.webhook_events;
    assert!(events
        .find(&format!("evt_iso_{BAD}"))
        .await
        .unwrap()
        .is_none());
    let bad_order = h
        .repos
        .orders
        .find_by_id(orders[BAD].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bad_order.status(), OrderStatus::AwaitingPayment);
    assert_eq!(bad_order.version(), orders[BAD].version());
    assert_eq!(pending_outbox(&h).await, EVENTS as i64 - 1);
    // The writer is still there for the next event.
    let retry = event("evt_after", None);
    assert_eq!(
        events
            .record(&retry, None, &[], Utc::now() + Duration::seconds(1))
            .await
            .unwrap(),
        EventRecorded::Recorded
    );
}

/// Batches of four instances committing at once (each instance has one
/// event writer): every order gets a payment and a failure decided from
/// the same read, each event delivered three times, all at once, spread
/// over the instances. Per order exactly one event lands, once.
async fn concurrent_batches_keep_each_event_once(backend: Backend) {
    const ORDERS: usize = 12;
    const COPIES: usize = 3;
    let h = Harness::new(backend).await;
    let others = [
        h.another_instance().await,
        h.another_instance().await,
        h.another_instance().await,
    ];
    let others: Vec<_> = others.iter().map(|db| (db, db.repositories())).collect();
    let orders = awaiting_orders(&h, ORDERS).await;
    let mut writes = Vec::new();
    for (n, order) in orders.iter().enumerate() {
        let failed = declined(order);
        for _ in 0..COPIES {
            writes.push(paying(&format!("evt_cb_paid_{n}"), order));
            writes.push((
                event(&format!("evt_cb_failed_{n}"), Some(order)),
                Some(failed.clone()),
                vec![],
            ));
        }
    }

    let mut instances = vec![&h.repos];
    instances.extend(others.iter().map(|(_, repos)| repos));
    let results = record_across(&instances, writes).await;
    for (db, _) in &others {
        db.close().await;
    }

    let recorded = results
        .iter()
        .filter(|(r, _)| matches!(r, Ok(EventRecorded::Recorded)))
        .count();
    assert_eq!(recorded, ORDERS, "one event per order lands");
    for (result, _) in &results {
        assert!(
            matches!(
                result,
                Ok(EventRecorded::Recorded | EventRecorded::Duplicate)
                    | Err(RepositoryError::Conflict)
            ),
            "{result:?}"
        );
    }
    let mut paid_orders = 0;
    for (n, order) in orders.iter().enumerate() {
        let stored = h.repos.orders.find_by_id(order.id).await.unwrap().unwrap();
        assert_eq!(
            stored.version(),
            order.version() + 1,
            "order {n} saved once"
        );
        let paid = h
            .repos
            .webhook_events
            .find(&format!("evt_cb_paid_{n}"))
            .await
            .unwrap();
        let failed = h
            .repos
            .webhook_events
            .find(&format!("evt_cb_failed_{n}"))
            .await
            .unwrap();
        match stored.status() {
            OrderStatus::Paid => {
                paid_orders += 1;
                assert!(paid.is_some() && failed.is_none(), "order {n}");
            }
            OrderStatus::AwaitingPayment => {
                assert!(paid.is_none() && failed.is_some(), "order {n}")
            }
            other => panic!("order {n} is {other}"),
        }
    }
    assert_eq!(pending_outbox(&h).await, paid_orders);
}

/// The group-commit writers keep a connection between batches (on
/// PostgreSQL): closing the database must still close every one of them,
/// not leave them open on the server until the process ends.
async fn closing_takes_back_the_connections_writers_keep(backend: Backend) {
    let h = Harness::new(backend).await;
    let orders = awaiting_orders(&h, 4).await;
    let writes = orders
        .iter()
        .enumerate()
        .map(|(n, order)| paying(&format!("evt_close_{n}"), order))
        .collect();
    for (result, _) in record_all(&h, writes).await {
        assert_eq!(result.unwrap(), EventRecorded::Recorded);
    }
    // The lease writer keeps one too.
    let paid = h
        .repos
        .orders
        .find_by_id(orders[0].id)
        .await
        .unwrap()
        .unwrap();
    h.repos
        .orders
        .claim_payment_lease(
            &paid,
            "closing",
            Utc::now(),
            Utc::now() + Duration::seconds(60),
        )
        .await
        .unwrap();
    if let Some(open) = h.other_server_connections().await {
        assert!(open >= 1, "the writers keep connections: {open} open");
    }
    tokio::time::timeout(std::time::Duration::from_secs(10), h.database.close())
        .await
        .expect("the database closes");
    // The server ends a backend shortly after its client said goodbye.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while let Some(open) = h.other_server_connections().await {
        if open == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} connections still open after the database closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
