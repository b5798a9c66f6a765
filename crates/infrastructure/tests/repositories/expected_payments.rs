//! `record_expected_payment`: PostgreSQL pays an order that awaits exactly
//! the payment, with its event, in one write, and writes nothing for any
//! other order; SQLite declines every time (its reads cost next to
//! nothing), so the caller reads first.

use std::sync::Arc;

use chrono::Utc;
use domain::ports::{EventRecorded, ExpectedPayment, WebhookEventRecord};
use domain::{Money, Order, OrderStatus, RepositoryError};
use test_support::Backend;
use tokio::sync::Barrier;

use crate::webhook_events::{awaiting_orders, event, paid_message, pending_outbox};
use crate::{t0, yen, Harness, TEA_CATALOG};

backend_tests! {
    single: [
        an_awaited_payment_pays_the_order_and_records_its_event_once,
        an_order_not_awaiting_exactly_this_payment_is_not_written,
    ],
    multi: [payments_at_once_from_two_instances_each_pay_once],
}

/// The payment `order` awaits: its intent, its total.
fn awaited(order: &Order) -> ExpectedPayment {
    ExpectedPayment {
        order_id: order.id,
        payment_intent_id: order.state().payment_intent_id.clone().unwrap(),
        charged: order.total(),
        paid_at: t0(),
    }
}

async fn record(
    h: &Harness,
    event: &WebhookEventRecord,
    payment: &ExpectedPayment,
    order: &Order,
) -> Result<Option<EventRecorded>, RepositoryError> {
    h.repos
        .webhook_events
        .record_expected_payment(event, payment, &[paid_message(order)], Utc::now())
        .await
}

async fn stored(h: &Harness, order: &Order) -> Order {
    h.repos.orders.find_by_id(order.id).await.unwrap().unwrap()
}

async fn an_awaited_payment_pays_the_order_and_records_its_event_once(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut order = awaiting_orders(&h, 1).await.remove(0);
    // An earlier decline: paying clears it, as `mark_paid` does.
    order
        .record_payment_failure(domain::PaymentFailure {
            code: Some("card_declined".into()),
            message: "declined".into(),
        })
        .unwrap();
    h.repos
        .orders
        .save_state(&mut order, Utc::now())
        .await
        .unwrap();
    let first = event("evt_expected", Some(&order));

    let result = record(&h, &first, &awaited(&order), &order).await.unwrap();

    if backend == Backend::Sqlite {
        assert_eq!(result, None, "SQLite declines");
        assert_eq!(stored(&h, &order).await, order);
        assert_eq!(
            h.repos.webhook_events.find("evt_expected").await.unwrap(),
            None
        );
        assert_eq!(pending_outbox(&h).await, 0);
        return;
    }
    assert_eq!(result, Some(EventRecorded::Recorded));
    let mut expected = order.clone();
    expected.mark_paid(t0()).unwrap();
    let paid = stored(&h, &order).await;
    assert_eq!(paid.state(), expected.state());
    assert_eq!(paid.version(), order.version() + 1);
    let recorded = h.repos.webhook_events.find("evt_expected").await.unwrap();
    assert_eq!(recorded.unwrap().outcome, first.outcome);
    assert_eq!(pending_outbox(&h).await, 1);

    // Another delivery of it: known, nothing written.
    let again = record(&h, &first, &awaited(&order), &order).await.unwrap();
    assert_eq!(again, Some(EventRecorded::Duplicate));
    assert_eq!(stored(&h, &order).await, paid);
    assert_eq!(pending_outbox(&h).await, 1);
}

async fn an_order_not_awaiting_exactly_this_payment_is_not_written(backend: Backend) {
    let h = Harness::new(backend).await;
    let orders = awaiting_orders(&h, 3).await;
    let awaiting = &orders[0];
    let (mut paid, mut cancelled) = (orders[1].clone(), orders[2].clone());
    paid.mark_paid(t0()).unwrap();
    cancelled.cancel(t0(), None).unwrap();
    for order in [&mut paid, &mut cancelled] {
        h.repos.orders.save_state(order, Utc::now()).await.unwrap();
    }
    let user = h.user("pending@example.jp").await;
    let products = h.catalog(TEA_CATALOG).await;
    let pending = h.order_of_one(user.id, &products[0]).await;
    let other_currency = Money::new(awaiting.total().minor_units(), domain::Currency::Usd).unwrap();

    let cases = [
        (
            "another intent",
            awaiting,
            ExpectedPayment {
                payment_intent_id: "pi_someone_else".into(),
                ..awaited(awaiting)
            },
        ),
        (
            "another amount",
            awaiting,
            ExpectedPayment {
                charged: yen(awaiting.total().minor_units() - 1),
                ..awaited(awaiting)
            },
        ),
        (
            "another currency",
            awaiting,
            ExpectedPayment {
                charged: other_currency,
                ..awaited(awaiting)
            },
        ),
        ("paid already", &paid, awaited(&paid)),
        ("cancelled", &cancelled, awaited(&cancelled)),
        (
            "no intent yet",
            &pending,
            ExpectedPayment {
                order_id: pending.id,
                payment_intent_id: "pi_never_recorded".into(),
                charged: pending.total(),
                paid_at: t0(),
            },
        ),
    ];
    for (n, (case, order, payment)) in cases.iter().enumerate() {
        let id = format!("evt_unexpected_{n}");
        let result = record(&h, &event(&id, Some(order)), payment, order).await;
        assert_eq!(result.unwrap(), None, "{case}");
        assert_eq!(&stored(&h, order).await, *order, "{case}");
        assert_eq!(
            h.repos.webhook_events.find(&id).await.unwrap(),
            None,
            "{case}"
        );
    }
    assert_eq!(pending_outbox(&h).await, 0);
}

/// Every order awaits its payment; each event is delivered twice, the
/// copies through two instances, all at once. Each order is paid once,
/// each event recorded once; a copy that lost answers a duplicate or
/// `None` (the caller then reads the order and finds it paid).
async fn payments_at_once_from_two_instances_each_pay_once(backend: Backend) {
    const ORDERS: usize = 24;
    let h = Harness::new(backend).await;
    let other = h.another_instance().await;
    let orders = awaiting_orders(&h, ORDERS).await;
    let instances = [
        h.repos.webhook_events.clone(),
        other.repositories().webhook_events,
    ];
    let start = Arc::new(Barrier::new(2 * ORDERS));
    let mut tasks = Vec::new();
    for copy in 0..2 {
        for (n, order) in orders.iter().enumerate() {
            let events = instances[(n + copy) % 2].clone();
            let (start, order) = (start.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                let result = events
                    .record_expected_payment(
                        &event(&format!("evt_race_{n}"), Some(&order)),
                        &awaited(&order),
                        &[paid_message(&order)],
                        Utc::now(),
                    )
                    .await;
                (n, result.unwrap())
            }));
        }
    }
    let mut recorded = vec![0; ORDERS];
    for task in tasks {
        let (n, result) = task.await.unwrap();
        match result {
            Some(EventRecorded::Recorded) => recorded[n] += 1,
            Some(EventRecorded::Duplicate) | None => {}
        }
    }
    let paid_once = if backend == Backend::Sqlite { 0 } else { 1 };
    assert_eq!(recorded, vec![paid_once; ORDERS]);
    for order in &orders {
        let stored = stored(&h, order).await;
        if backend == Backend::Postgres {
            assert_eq!(stored.status(), OrderStatus::Paid);
            assert_eq!(stored.version(), order.version() + 1);
        } else {
            assert_eq!(&stored, order);
        }
    }
    assert_eq!(pending_outbox(&h).await, (paid_once * ORDERS) as i64);
    other.close().await;
}
