//! Stripe's webhooks: refused unless signed, recorded once, applied only
//! forward, and ending in the same order state whatever order the events
//! arrive in.

use std::collections::BTreeMap;
use std::sync::Arc;

use application::ports::payment_gateway::{PaymentIntent, PaymentIntentStatus};
use application::ports::webhooks::{Charge, EventObject, ProviderEvent, WebhookRejection};
use application::ports::Clock;
use application::webhooks::{HandleWebhookError, Outcome, ReplayError};
use chrono::Duration;
use domain::ports::{OrderRepository, OutboxMessage};
use domain::{
    NewOrder, NewOrderLine, Order, OrderStatus, PaymentFailure, ProductId, Quantity, UserId,
};
use proptest::prelude::*;

use crate::support::{
    assert_injected, shipping_fee, t0, yen, Op, World, BAD_SIGNATURE, GOOD_SIGNATURE,
};

/// The order's PaymentIntent in most tests.
const INTENT: &str = "pi_1";

/// When Stripe stamped every event of these tests (unix seconds).
const CREATED: i64 = 1_732_464_000;

// ---------------------------------------------------------------- set-up

/// Stores a new order of two ¥5,000 teas (¥11,800 with tax and shipping),
/// moves it on with `advance` and stores that at the next version, as
/// another process would have.
async fn order_where(world: &World, advance: impl FnOnce(&mut Order)) -> Order {
    let line = NewOrderLine {
        product_id: ProductId::new(1),
        product_name: "Sencha".into(),
        unit_price: yen(5000),
        quantity: Quantity::new(2).unwrap(),
    };
    let placed = NewOrder::price(UserId::new(1), vec![line], shipping_fee(), None).unwrap();
    let mut order = world
        .orders
        .insert(placed, t0().date_naive(), t0())
        .await
        .unwrap();
    advance(&mut order);
    let version = order.version() + 1;
    let order = order.at_version(version);
    world.orders.put(order.clone());
    order
}

/// An order awaiting payment through `intent_id`.
async fn awaiting(world: &World, intent_id: &str) -> Order {
    order_where(world, |o| o.begin_payment(intent_id.to_string()).unwrap()).await
}

/// An order paid through [`INTENT`] at [`t0`].
async fn paid(world: &World) -> Order {
    order_where(world, |o| {
        o.begin_payment(INTENT.to_string()).unwrap();
        o.mark_paid(t0()).unwrap();
    })
    .await
}

/// The PaymentIntent `id` of `order` as Stripe describes it: the order's
/// total, the order's id in its metadata.
fn intent(order: &Order, id: &str, status: PaymentIntentStatus) -> PaymentIntent {
    PaymentIntent {
        id: id.to_string(),
        amount: order.total().minor_units(),
        currency: order.total().currency().code().to_string(),
        status,
        client_secret: None,
        customer: None,
        metadata: BTreeMap::from([("order_id".to_string(), order.id.to_string())]),
        last_payment_error: None,
        latest_charge: Some(format!("ch_{id}")),
        created: CREATED,
    }
}

fn succeeded(order: &Order, id: &str) -> PaymentIntent {
    intent(order, id, PaymentIntentStatus::Succeeded)
}

fn declined() -> PaymentFailure {
    PaymentFailure {
        code: Some("card_declined".into()),
        message: "Your card was declined.".into(),
    }
}

/// The intent after a declined card: payable again, with the decline.
fn failed(order: &Order, id: &str) -> PaymentIntent {
    PaymentIntent {
        last_payment_error: Some(declined()),
        ..intent(order, id, PaymentIntentStatus::RequiresPaymentMethod)
    }
}

/// Registers an event about `intent` with the decoder; returns its payload.
fn intent_event(world: &World, event_id: &str, kind: &str, intent: PaymentIntent) -> Vec<u8> {
    world.decoder.register(ProviderEvent {
        id: event_id.to_string(),
        kind: kind.to_string(),
        created: CREATED,
        object: EventObject::PaymentIntent(intent),
    })
}

/// Registers a `charge.refunded` of `order`'s charge through `intent_id`,
/// `refunded` yen refunded so far; returns its payload.
fn refund_event(
    world: &World,
    event_id: &str,
    order: &Order,
    intent_id: &str,
    refunded: i64,
) -> Vec<u8> {
    world.decoder.register(ProviderEvent {
        id: event_id.to_string(),
        kind: "charge.refunded".to_string(),
        created: CREATED,
        object: EventObject::Charge(Charge {
            id: format!("ch_{intent_id}"),
            payment_intent: Some(intent_id.to_string()),
            amount: order.total().minor_units(),
            amount_refunded: refunded,
            currency: "jpy".to_string(),
        }),
    })
}

/// One correctly signed delivery.
async fn deliver(world: &World, payload: &[u8]) -> Outcome {
    world
        .webhook_service()
        .receive(Some(GOOD_SIGNATURE), payload)
        .await
        .unwrap()
}

/// Delivers as Stripe does: again (once) if the first answer was an error.
async fn deliver_until_acknowledged(world: &World, payload: &[u8]) -> Outcome {
    match world
        .webhook_service()
        .receive(Some(GOOD_SIGNATURE), payload)
        .await
    {
        Ok(outcome) => outcome,
        Err(_) => deliver(world, payload).await,
    }
}

fn stored(world: &World, order: &Order) -> Order {
    world.orders.get(order.id).unwrap()
}

/// The stored order is exactly `before`: same state, same version.
#[track_caller]
fn assert_unchanged(world: &World, before: &Order) {
    let now = world.orders.get(before.id).unwrap();
    assert_eq!(now.state(), before.state());
    assert_eq!(now.version(), before.version());
}

fn recorded_outcome(world: &World, event_id: &str) -> String {
    world.webhook_events.get(event_id).unwrap().outcome
}

fn message(topic: &str, order: &Order) -> OutboxMessage {
    OutboxMessage {
        topic: topic.to_string(),
        order_id: order.id,
    }
}

// ---------------------------------------------------------------- payment_intent.succeeded

#[tokio::test]
async fn a_succeeded_payment_pays_the_order_and_a_redelivery_changes_nothing() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    world.clock.advance(Duration::minutes(10));
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.succeeded",
        succeeded(&order, INTENT),
    );

    assert_eq!(deliver(&world, &payload).await, Outcome::Applied);
    let paid = stored(&world, &order);
    assert_eq!(paid.status(), OrderStatus::Paid);
    assert_eq!(paid.state().paid_at, Some(world.clock.now()));
    assert_eq!(paid.state().payment_intent_id.as_deref(), Some(INTENT));
    assert_eq!(paid.version(), order.version() + 1);
    assert_eq!(
        world.webhook_events.outbox(),
        vec![message("order_paid", &order)]
    );
    let record = world.webhook_events.get("evt_1").unwrap();
    assert_eq!(record.outcome, "applied");
    assert_eq!(record.kind, "payment_intent.succeeded");
    assert_eq!(record.created, CREATED);
    assert_eq!(record.received_at, world.clock.now());
    assert_eq!(record.order_id, Some(order.id));
    assert_eq!(record.payment_intent_id.as_deref(), Some(INTENT));
    assert_eq!(record.payload.as_bytes(), payload.as_slice());
    // The event said all there was to know.
    assert_eq!(world.gateway.total_calls(), 0);

    world.clock.advance(Duration::minutes(1));
    assert_eq!(deliver(&world, &payload).await, Outcome::Duplicate);
    assert_unchanged(&world, &paid);
    assert_eq!(world.webhook_events.outbox().len(), 1);
    assert_eq!(world.webhook_events.count(), 1);
    assert_eq!(world.webhook_events.get("evt_1").unwrap(), record);
}

// ---------------------------------------------------------------- the expected payment

/// The same event delivered to two worlds, one whose storage takes the
/// expected-payment write and one that declines it: both end the same.
#[tokio::test]
async fn a_payment_the_order_awaits_is_recorded_in_one_write_as_if_read_first() {
    let mut ends = Vec::new();
    for takes_expected_payments in [true, false] {
        let world = World::new();
        if !takes_expected_payments {
            world.webhook_events.decline_expected_payments();
        }
        let order = awaiting(&world, INTENT).await;
        world.clock.advance(Duration::minutes(10));
        let payload = intent_event(
            &world,
            "evt_1",
            "payment_intent.succeeded",
            succeeded(&order, INTENT),
        );
        assert_eq!(deliver(&world, &payload).await, Outcome::Applied);
        assert_eq!(deliver(&world, &payload).await, Outcome::Duplicate);
        let calls = (
            world.webhook_events.expected_payment_calls(),
            world.webhook_events.record_calls(),
        );
        // Taken: two expected-payment writes (the second a duplicate), no
        // read-then-record. Declined: two records.
        assert_eq!(
            calls,
            if takes_expected_payments {
                (2, 0)
            } else {
                (0, 2)
            }
        );
        ends.push((
            stored(&world, &order),
            world.webhook_events.get("evt_1").unwrap(),
            world.webhook_events.outbox(),
        ));
    }
    assert_eq!(ends[0], ends[1]);
}

/// Orders the write must not take: each is read and decided as before.
#[tokio::test]
async fn an_order_not_awaiting_exactly_this_payment_is_read_and_decided() {
    let world = World::new();
    let cancelled = order_where(&world, |o| {
        o.begin_payment("pi_cancelled".to_string()).unwrap();
        o.cancel(t0(), None).unwrap();
    })
    .await;
    let pending = order_where(&world, |_| {}).await;
    let replaced = awaiting(&world, "pi_newer").await;
    let cases = [
        (succeeded(&cancelled, "pi_cancelled"), Outcome::Review),
        // Named by its metadata only: a creation never recorded.
        (succeeded(&pending, "pi_unrecorded"), Outcome::Applied),
        // An older intent of the order, named by its metadata.
        (succeeded(&replaced, "pi_older"), Outcome::Applied),
    ];
    for (n, (intent, outcome)) in cases.into_iter().enumerate() {
        let payload = intent_event(
            &world,
            &format!("evt_{n}"),
            "payment_intent.succeeded",
            intent,
        );
        assert_eq!(deliver(&world, &payload).await, outcome, "case {n}");
        assert_eq!(world.webhook_events.expected_payment_calls(), n + 1);
        assert_eq!(world.webhook_events.record_calls(), n + 1, "case {n}");
    }
    assert_eq!(stored(&world, &cancelled).status(), OrderStatus::Cancelled);
    assert_eq!(stored(&world, &pending).status(), OrderStatus::Paid);
    let paid = stored(&world, &replaced);
    assert_eq!(paid.status(), OrderStatus::Paid);
    assert_eq!(paid.state().payment_intent_id.as_deref(), Some("pi_older"));
}

/// Another writer changes the order just before the write: the write
/// does not take it, and the event is decided on the order as it now is.
#[tokio::test]
async fn an_order_cancelled_just_before_the_write_is_decided_on_its_new_state() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.succeeded",
        succeeded(&order, INTENT),
    );
    world
        .orders
        .interfere_before_next_save(|o| o.cancel(t0(), None).unwrap());

    assert_eq!(deliver(&world, &payload).await, Outcome::Review);
    assert_eq!(stored(&world, &order).status(), OrderStatus::Cancelled);
    assert_eq!(world.webhook_events.outbox(), vec![]);
    assert_eq!(recorded_outcome(&world, "evt_1"), "review");
}

/// [`ExpectedPayment::is_expected_by`] is what storage tests before it
/// writes `paid`, `paid_at` and a cleared payment error over the order,
/// leaving everything else: for every order it admits, that must be
/// exactly what [`settle_success`] decides. Every status, this intent or
/// another or none, the total or not, with and without an earlier failure
/// and attempts.
#[test]
fn expected_payments_settle_as_decided() {
    use application::payments::{settle_success, SuccessOutcome};
    use domain::ports::ExpectedPayment;
    use domain::OrderState;

    let template = {
        let line = NewOrderLine {
            product_id: ProductId::new(1),
            product_name: "Sencha".into(),
            unit_price: yen(5000),
            quantity: Quantity::new(2).unwrap(),
        };
        NewOrder::price(UserId::new(1), vec![line], shipping_fee(), None).unwrap()
    };
    let paid_at = t0() + Duration::minutes(5);
    let mut admitted = 0;
    for status in [
        OrderStatus::Pending,
        OrderStatus::AwaitingPayment,
        OrderStatus::Paid,
        OrderStatus::Refunded,
        OrderStatus::Cancelled,
    ] {
        for current in [None, Some(INTENT), Some("pi_other")] {
            for failure in [None, Some(declined())] {
                for charged in [template.total, yen(9_999)] {
                    let mut state = OrderState::new_pending(template.total.currency());
                    state.status = status;
                    state.payment_intent_id = current.map(str::to_string);
                    state.payment_attempts = 2;
                    state.last_payment_error = failure.clone();
                    let order = Order::restore(
                        domain::OrderId::new(7),
                        domain::OrderNumber::new(t0().date_naive(), 1).unwrap(),
                        t0(),
                        template.clone(),
                        state,
                    )
                    .at_version(3);
                    let payment = ExpectedPayment {
                        order_id: order.id,
                        payment_intent_id: INTENT.to_string(),
                        charged,
                        paid_at,
                    };
                    if !payment.is_expected_by(&order) {
                        continue;
                    }
                    admitted += 1;
                    let mut intent = succeeded(&order, INTENT);
                    intent.amount = charged.minor_units();
                    let mut decided = order.clone();
                    assert_eq!(
                        settle_success(&mut decided, &intent, paid_at),
                        SuccessOutcome::Paid,
                        "{status:?} {current:?} {failure:?} {charged:?}"
                    );
                    let mut written = order.state().clone();
                    written.status = OrderStatus::Paid;
                    written.paid_at = Some(paid_at);
                    written.last_payment_error = None;
                    assert_eq!(decided.state(), &written);
                }
            }
        }
    }
    // Awaiting this intent for the total, with and without a failure.
    assert_eq!(admitted, 2);
}

#[tokio::test]
async fn a_second_succeeded_event_for_a_paid_order_is_ignored() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let first = intent_event(
        &world,
        "evt_1",
        "payment_intent.succeeded",
        succeeded(&order, INTENT),
    );
    // Another event about the same success (another id): nothing new.
    let second = intent_event(
        &world,
        "evt_2",
        "payment_intent.succeeded",
        succeeded(&order, INTENT),
    );
    assert_eq!(deliver(&world, &first).await, Outcome::Applied);
    let paid = stored(&world, &order);
    world.clock.advance(Duration::hours(1));
    assert_eq!(deliver(&world, &second).await, Outcome::Ignored);
    assert_unchanged(&world, &paid);
    assert_eq!(recorded_outcome(&world, "evt_2"), "ignored");
    assert_eq!(world.webhook_events.outbox().len(), 1);
}

#[tokio::test]
async fn a_payment_of_another_amount_is_a_mismatch_and_leaves_the_order_unpaid() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let mut short = succeeded(&order, INTENT);
    short.amount -= 1;
    let payload = intent_event(&world, "evt_1", "payment_intent.succeeded", short);

    // Stripe does not know the intent here: the event's word stands.
    assert_eq!(deliver(&world, &payload).await, Outcome::Mismatch);
    assert_unchanged(&world, &order);
    assert_eq!(world.webhook_events.outbox(), vec![]);
    let record = world.webhook_events.get("evt_1").unwrap();
    assert_eq!(record.outcome, "mismatch");
    assert_eq!(record.order_id, Some(order.id));
    assert_eq!(world.gateway.calls_to(Op::RetrieveIntent), 1);
}

#[tokio::test]
async fn a_mismatching_event_is_applied_when_stripe_says_the_intent_charges_the_total() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    world.gateway.put_intent(succeeded(&order, INTENT));
    let mut stale = succeeded(&order, INTENT);
    stale.amount = 9_999;
    let payload = intent_event(&world, "evt_1", "payment_intent.succeeded", stale);

    assert_eq!(deliver(&world, &payload).await, Outcome::Applied);
    let paid = stored(&world, &order);
    assert_eq!(paid.status(), OrderStatus::Paid);
    assert_eq!(paid.state().paid_at, Some(t0()));
    assert_eq!(
        world.webhook_events.outbox(),
        vec![message("order_paid", &order)]
    );
    assert_eq!(world.gateway.calls_to(Op::RetrieveIntent), 1);
}

#[tokio::test]
async fn a_mismatching_event_stays_a_mismatch_when_stripe_agrees_with_it() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let mut short = succeeded(&order, INTENT);
    short.amount = 9_999;
    world.gateway.put_intent(short.clone());
    let payload = intent_event(&world, "evt_1", "payment_intent.succeeded", short);

    assert_eq!(deliver(&world, &payload).await, Outcome::Mismatch);
    assert_unchanged(&world, &order);
    assert_eq!(world.webhook_events.outbox(), vec![]);
    assert_eq!(world.gateway.calls_to(Op::RetrieveIntent), 1);
}

#[tokio::test]
async fn a_payment_in_another_currency_is_a_mismatch() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let mut dollars = succeeded(&order, INTENT);
    dollars.currency = "usd".into();
    world.gateway.put_intent(dollars.clone());
    let payload = intent_event(&world, "evt_1", "payment_intent.succeeded", dollars);

    assert_eq!(deliver(&world, &payload).await, Outcome::Mismatch);
    assert_unchanged(&world, &order);
    assert_eq!(recorded_outcome(&world, "evt_1"), "mismatch");
    assert_eq!(world.webhook_events.outbox(), vec![]);
}

#[tokio::test]
async fn an_intent_the_order_never_recorded_but_its_metadata_names_pays_the_order() {
    let world = World::new();
    // Pending: the intent's creation was never recorded (a crash).
    let order = order_where(&world, |_| {}).await;
    assert_eq!(order.status(), OrderStatus::Pending);
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.succeeded",
        succeeded(&order, "pi_lost"),
    );

    assert_eq!(deliver(&world, &payload).await, Outcome::Applied);
    let paid = stored(&world, &order);
    assert_eq!(paid.status(), OrderStatus::Paid);
    assert_eq!(paid.state().payment_intent_id.as_deref(), Some("pi_lost"));
    assert_eq!(paid.state().payment_attempts, 1);
    assert_eq!(paid.state().paid_at, Some(t0()));
    assert_eq!(
        world.webhook_events.outbox(),
        vec![message("order_paid", &order)]
    );
    assert_eq!(
        world.webhook_events.get("evt_1").unwrap().order_id,
        Some(order.id)
    );
}

#[tokio::test]
async fn an_intent_of_no_order_is_foreign_and_changes_nothing() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let mut no_metadata = succeeded(&order, "pi_other_shop");
    no_metadata.metadata.clear();
    let mut unknown_order = succeeded(&order, "pi_unknown_order");
    unknown_order
        .metadata
        .insert("order_id".into(), "999".into());
    let mut garbled = succeeded(&order, "pi_garbled");
    garbled.metadata.insert("order_id".into(), "order-1".into());
    let mut failed_elsewhere = failed(&order, "pi_failed_elsewhere");
    failed_elsewhere.metadata.clear();
    let cases = [
        ("evt_1", "payment_intent.succeeded", no_metadata),
        ("evt_2", "payment_intent.succeeded", unknown_order),
        ("evt_3", "payment_intent.succeeded", garbled),
        ("evt_4", "payment_intent.payment_failed", failed_elsewhere),
    ];

    for (event_id, kind, intent) in cases {
        let intent_id = intent.id.clone();
        let payload = intent_event(&world, event_id, kind, intent);
        assert_eq!(
            deliver(&world, &payload).await,
            Outcome::Foreign,
            "{event_id}"
        );
        let record = world.webhook_events.get(event_id).unwrap();
        assert_eq!(record.outcome, "foreign");
        assert_eq!(record.order_id, None);
        assert_eq!(record.payment_intent_id, Some(intent_id));
    }
    let refund = refund_event(&world, "evt_5", &order, "pi_other_shop", 500);
    assert_eq!(deliver(&world, &refund).await, Outcome::Foreign);

    assert_unchanged(&world, &order);
    assert_eq!(world.webhook_events.outbox(), vec![]);
    assert_eq!(world.webhook_events.count(), 5);
}

#[tokio::test]
async fn a_payment_for_a_cancelled_order_is_flagged_for_review_and_the_order_stays_cancelled() {
    let world = World::new();
    let order = order_where(&world, |o| {
        o.begin_payment(INTENT.to_string()).unwrap();
        o.cancel(t0(), Some("changed my mind".into())).unwrap();
    })
    .await;
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.succeeded",
        succeeded(&order, INTENT),
    );

    assert_eq!(deliver(&world, &payload).await, Outcome::Review);
    assert_unchanged(&world, &order);
    assert_eq!(stored(&world, &order).status(), OrderStatus::Cancelled);
    let record = world.webhook_events.get("evt_1").unwrap();
    assert_eq!(record.outcome, "review");
    assert_eq!(record.order_id, Some(order.id));
    assert_eq!(world.webhook_events.outbox(), vec![]);
}

#[tokio::test]
async fn a_second_payment_for_a_paid_order_is_flagged_for_review() {
    let world = World::new();
    let order = paid(&world).await;
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.succeeded",
        succeeded(&order, "pi_2"),
    );

    assert_eq!(deliver(&world, &payload).await, Outcome::Review);
    assert_unchanged(&world, &order);
    assert_eq!(
        stored(&world, &order).state().payment_intent_id.as_deref(),
        Some(INTENT)
    );
    assert_eq!(world.webhook_events.outbox(), vec![]);
}

// ---------------------------------------------------------------- other intent events

#[tokio::test]
async fn a_failed_payment_is_stored_and_the_order_stays_payable() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.payment_failed",
        failed(&order, INTENT),
    );

    assert_eq!(deliver(&world, &payload).await, Outcome::Applied);
    let after = stored(&world, &order);
    assert_eq!(after.status(), OrderStatus::AwaitingPayment);
    assert_eq!(after.state().last_payment_error, Some(declined()));
    assert_eq!(after.state().payment_intent_id.as_deref(), Some(INTENT));
    assert_eq!(after.version(), order.version() + 1);
    assert_eq!(recorded_outcome(&world, "evt_1"), "applied");
    assert_eq!(world.webhook_events.outbox(), vec![]);
}

#[tokio::test]
async fn a_failed_payment_without_details_stores_a_generic_failure() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.payment_failed",
        intent(&order, INTENT, PaymentIntentStatus::RequiresPaymentMethod),
    );

    assert_eq!(deliver(&world, &payload).await, Outcome::Applied);
    let failure = stored(&world, &order).state().last_payment_error.clone();
    assert_eq!(
        failure,
        Some(PaymentFailure {
            code: None,
            message: "the payment failed".into(),
        })
    );
}

#[tokio::test]
async fn a_failure_that_arrives_after_the_success_is_ignored() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let success = intent_event(
        &world,
        "evt_1",
        "payment_intent.succeeded",
        succeeded(&order, INTENT),
    );
    let failure = intent_event(
        &world,
        "evt_0",
        "payment_intent.payment_failed",
        failed(&order, INTENT),
    );
    assert_eq!(deliver(&world, &success).await, Outcome::Applied);
    let paid = stored(&world, &order);

    assert_eq!(deliver(&world, &failure).await, Outcome::Ignored);
    assert_unchanged(&world, &paid);
    assert_eq!(paid.status(), OrderStatus::Paid);
    assert_eq!(paid.state().last_payment_error, None);
    assert_eq!(recorded_outcome(&world, "evt_0"), "ignored");
}

#[tokio::test]
async fn a_failure_of_an_intent_the_order_replaced_is_ignored() {
    let world = World::new();
    let order = awaiting(&world, "pi_2").await;
    // pi_1 was the order's first intent; its metadata still names the order.
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.payment_failed",
        failed(&order, "pi_1"),
    );

    assert_eq!(deliver(&world, &payload).await, Outcome::Ignored);
    assert_unchanged(&world, &order);
    assert_eq!(
        world.webhook_events.get("evt_1").unwrap().order_id,
        Some(order.id)
    );
}

#[tokio::test]
async fn processing_and_canceled_events_change_nothing() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let processing = intent_event(
        &world,
        "evt_1",
        "payment_intent.processing",
        intent(&order, INTENT, PaymentIntentStatus::Processing),
    );
    let canceled = intent_event(
        &world,
        "evt_2",
        "payment_intent.canceled",
        intent(&order, INTENT, PaymentIntentStatus::Canceled),
    );
    let old_canceled = intent_event(
        &world,
        "evt_3",
        "payment_intent.canceled",
        intent(&order, "pi_0", PaymentIntentStatus::Canceled),
    );

    for (event_id, payload) in [
        ("evt_1", processing),
        ("evt_2", canceled),
        ("evt_3", old_canceled),
    ] {
        assert_eq!(
            deliver(&world, &payload).await,
            Outcome::Ignored,
            "{event_id}"
        );
        assert_unchanged(&world, &order);
        let record = world.webhook_events.get(event_id).unwrap();
        assert_eq!(record.outcome, "ignored");
        assert_eq!(record.order_id, Some(order.id));
    }
    assert_eq!(
        stored(&world, &order).status(),
        OrderStatus::AwaitingPayment
    );
    assert_eq!(world.webhook_events.outbox(), vec![]);
}

#[tokio::test]
async fn event_types_kessai_does_not_act_on_are_ignored_and_recorded() {
    let world = World::new();
    let order = paid(&world).await;
    let customer = world.decoder.register(ProviderEvent {
        id: "evt_1".into(),
        kind: "customer.created".into(),
        created: CREATED,
        object: EventObject::Other,
    });
    let created = intent_event(
        &world,
        "evt_2",
        "payment_intent.created",
        intent(&order, INTENT, PaymentIntentStatus::RequiresPaymentMethod),
    );
    let charge = world.decoder.register(ProviderEvent {
        id: "evt_3".into(),
        kind: "charge.succeeded".into(),
        created: CREATED,
        object: EventObject::Charge(Charge {
            id: "ch_1".into(),
            payment_intent: Some(INTENT.into()),
            amount: order.total().minor_units(),
            amount_refunded: order.total().minor_units(),
            currency: "jpy".into(),
        }),
    });

    for (event_id, payload) in [("evt_1", customer), ("evt_2", created), ("evt_3", charge)] {
        assert_eq!(
            deliver(&world, &payload).await,
            Outcome::Ignored,
            "{event_id}"
        );
        assert_eq!(recorded_outcome(&world, event_id), "ignored");
    }
    assert_unchanged(&world, &order);
    assert_eq!(world.webhook_events.outbox(), vec![]);
    assert_eq!(world.webhook_events.count(), 3);
}

// ---------------------------------------------------------------- charge.refunded

#[tokio::test]
async fn refunds_follow_the_charges_running_total_until_the_order_is_refunded() {
    let world = World::new();
    let order = paid(&world).await;
    let partial = refund_event(&world, "evt_1", &order, INTENT, 500);
    let full = refund_event(&world, "evt_2", &order, INTENT, 11_800);

    assert_eq!(deliver(&world, &partial).await, Outcome::Applied);
    let after_partial = stored(&world, &order);
    assert_eq!(after_partial.status(), OrderStatus::Paid);
    assert_eq!(after_partial.state().refunded_amount, yen(500));
    assert_eq!(after_partial.version(), order.version() + 1);
    assert_eq!(world.webhook_events.outbox(), vec![]);

    assert_eq!(deliver(&world, &full).await, Outcome::Applied);
    let after_full = stored(&world, &order);
    assert_eq!(after_full.status(), OrderStatus::Refunded);
    assert_eq!(after_full.state().refunded_amount, order.total());
    assert_eq!(after_full.state().paid_at, Some(t0()));
    assert_eq!(
        world.webhook_events.outbox(),
        vec![message("order_refunded", &order)]
    );
    assert_eq!(recorded_outcome(&world, "evt_2"), "applied");
}

#[tokio::test]
async fn an_older_or_repeated_refund_changes_nothing() {
    let world = World::new();
    let order = paid(&world).await;
    let eight_hundred = refund_event(&world, "evt_800", &order, INTENT, 800);
    assert_eq!(deliver(&world, &eight_hundred).await, Outcome::Applied);
    let after = stored(&world, &order);

    // The same delivery again, an older total, and another event with the same total.
    let older = refund_event(&world, "evt_300", &order, INTENT, 300);
    let same_total = refund_event(&world, "evt_800_again", &order, INTENT, 800);
    assert_eq!(deliver(&world, &eight_hundred).await, Outcome::Duplicate);
    assert_eq!(deliver(&world, &older).await, Outcome::Ignored);
    assert_eq!(deliver(&world, &same_total).await, Outcome::Ignored);
    assert_unchanged(&world, &after);
    assert_eq!(after.state().refunded_amount, yen(800));

    // Once everything was given back, an older partial total changes nothing either.
    let full = refund_event(&world, "evt_full", &order, INTENT, 11_800);
    assert_eq!(deliver(&world, &full).await, Outcome::Applied);
    let refunded = stored(&world, &order);
    let late = refund_event(&world, "evt_late", &order, INTENT, 800);
    assert_eq!(deliver(&world, &late).await, Outcome::Ignored);
    assert_unchanged(&world, &refunded);
    assert_eq!(refunded.status(), OrderStatus::Refunded);
    assert_eq!(refunded.state().refunded_amount, order.total());
    assert_eq!(world.webhook_events.outbox_topics(), vec!["order_refunded"]);
}

#[tokio::test]
async fn a_refund_that_overtakes_the_payment_settles_the_order_first() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    world.gateway.put_intent(succeeded(&order, INTENT));
    world.clock.advance(Duration::minutes(3));
    let refund = refund_event(&world, "evt_refund", &order, INTENT, 500);
    let success = intent_event(
        &world,
        "evt_succeeded",
        "payment_intent.succeeded",
        succeeded(&order, INTENT),
    );

    assert_eq!(deliver(&world, &refund).await, Outcome::Applied);
    let after = stored(&world, &order);
    assert_eq!(after.status(), OrderStatus::Paid);
    assert_eq!(after.state().paid_at, Some(world.clock.now()));
    assert_eq!(after.state().refunded_amount, yen(500));
    assert_eq!(after.version(), order.version() + 1);
    assert_eq!(
        world.webhook_events.outbox(),
        vec![message("order_paid", &order)]
    );
    assert_eq!(world.gateway.calls_to(Op::RetrieveIntent), 1);

    // The success event, late, finds the payment recorded.
    assert_eq!(deliver(&world, &success).await, Outcome::Ignored);
    assert_unchanged(&world, &after);
    assert_eq!(world.webhook_events.outbox().len(), 1);
}

#[tokio::test]
async fn a_full_refund_that_overtakes_the_payment_pays_and_refunds_the_order() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    world.gateway.put_intent(succeeded(&order, INTENT));
    let refund = refund_event(&world, "evt_refund", &order, INTENT, 11_800);

    assert_eq!(deliver(&world, &refund).await, Outcome::Applied);
    let after = stored(&world, &order);
    assert_eq!(after.status(), OrderStatus::Refunded);
    assert_eq!(after.state().refunded_amount, order.total());
    assert_eq!(after.state().paid_at, Some(t0()));
    assert_eq!(
        world.webhook_events.outbox_topics(),
        vec!["order_paid", "order_refunded"]
    );
}

#[tokio::test]
async fn a_refund_of_an_intent_stripe_says_did_not_succeed_changes_nothing() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    world
        .gateway
        .put_intent(intent(&order, INTENT, PaymentIntentStatus::Processing));
    let refund = refund_event(&world, "evt_refund", &order, INTENT, 500);

    assert_eq!(deliver(&world, &refund).await, Outcome::Ignored);
    assert_unchanged(&world, &order);
    assert_eq!(world.webhook_events.outbox(), vec![]);
}

/// Stripe retries a delivery it did not get a 2xx for; one it did get a
/// 2xx for is never sent again.
#[tokio::test]
async fn a_refund_that_overtakes_the_payment_while_stripe_is_down_is_not_lost() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    world.gateway.put_intent(succeeded(&order, INTENT));
    let refund = refund_event(&world, "evt_refund", &order, INTENT, 500);
    let success = intent_event(
        &world,
        "evt_succeeded",
        "payment_intent.succeeded",
        succeeded(&order, INTENT),
    );

    world.gateway.set_down(true);
    let first = world
        .webhook_service()
        .receive(Some(GOOD_SIGNATURE), &refund)
        .await;
    world.gateway.set_down(false);
    assert_eq!(deliver(&world, &success).await, Outcome::Applied);
    if first.is_err() {
        deliver(&world, &refund).await;
    }

    let after = stored(&world, &order);
    assert_eq!(after.status(), OrderStatus::Paid);
    assert_eq!(
        after.state().refunded_amount,
        yen(500),
        "first answer: {first:?}"
    );
}

#[tokio::test]
async fn a_refund_that_overtakes_a_payment_the_order_never_recorded_is_not_lost() {
    let world = World::new();
    let order = order_where(&world, |_| {}).await;
    world.gateway.put_intent(succeeded(&order, "pi_lost"));
    let refund = refund_event(&world, "evt_refund", &order, "pi_lost", 11_800);
    let success = intent_event(
        &world,
        "evt_succeeded",
        "payment_intent.succeeded",
        succeeded(&order, "pi_lost"),
    );

    let first = deliver_until_acknowledged(&world, &refund).await;
    deliver_until_acknowledged(&world, &success).await;

    let after = stored(&world, &order);
    assert_eq!(after.status(), OrderStatus::Refunded, "refund: {first:?}");
    assert_eq!(after.state().refunded_amount, order.total());
}

// ---------------------------------------------------------------- refusals and failures

#[tokio::test]
async fn a_request_stripe_did_not_sign_is_rejected_and_nothing_is_recorded() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.succeeded",
        succeeded(&order, INTENT),
    );
    let service = world.webhook_service();

    for signature in [Some(BAD_SIGNATURE), None] {
        let result = service.receive(signature, &payload).await;
        assert!(
            matches!(
                result,
                Err(HandleWebhookError::Rejected(
                    WebhookRejection::InvalidSignature(_)
                ))
            ),
            "{signature:?}: {result:?}"
        );
    }
    let garbage = service
        .receive(Some(GOOD_SIGNATURE), br#"{"id":"evt_forged"}"#)
        .await;
    assert!(
        matches!(
            garbage,
            Err(HandleWebhookError::Rejected(
                WebhookRejection::InvalidPayload(_)
            ))
        ),
        "{garbage:?}"
    );

    assert_unchanged(&world, &order);
    assert_eq!(world.webhook_events.count(), 0);
    assert_eq!(world.webhook_events.record_calls(), 0);
    assert_eq!(world.webhook_events.outbox(), vec![]);
    assert_eq!(world.gateway.total_calls(), 0);
    assert_eq!(world.decoder.decode_calls(), 3);

    // The genuine delivery still works afterwards.
    assert_eq!(deliver(&world, &payload).await, Outcome::Applied);
}

#[tokio::test]
async fn a_storage_failure_is_unexpected_records_nothing_and_a_redelivery_applies() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.succeeded",
        succeeded(&order, INTENT),
    );

    for failing in [&world.webhook_events.failing, &world.orders.failing] {
        failing.set(true);
        let result = world
            .webhook_service()
            .receive(Some(GOOD_SIGNATURE), &payload)
            .await;
        match result {
            Err(HandleWebhookError::Unexpected(error)) => assert_injected(&error),
            other => panic!("expected the injected failure, got {other:?}"),
        }
        failing.set(false);
        assert_unchanged(&world, &order);
        assert_eq!(world.webhook_events.count(), 0);
    }

    assert_eq!(deliver(&world, &payload).await, Outcome::Applied);
    assert_eq!(stored(&world, &order).status(), OrderStatus::Paid);
}

// ---------------------------------------------------------------- concurrency

/// Delivers `payload` `n` times at once; returns the outcomes.
async fn deliver_concurrently(world: &World, payload: Vec<u8>, n: usize) -> Vec<Outcome> {
    let service = world.webhook_service();
    let payload = Arc::new(payload);
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (service, payload, barrier) = (service.clone(), payload.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                service.receive(Some(GOOD_SIGNATURE), &payload).await
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(n);
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap());
    }
    outcomes
}

fn count(outcomes: &[Outcome], outcome: Outcome) -> usize {
    outcomes.iter().filter(|o| **o == outcome).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_deliveries_of_one_payment_apply_it_once() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.succeeded",
        succeeded(&order, INTENT),
    );

    let outcomes = deliver_concurrently(&world, payload, 10).await;
    assert_eq!(count(&outcomes, Outcome::Applied), 1, "{outcomes:?}");
    assert_eq!(count(&outcomes, Outcome::Duplicate), 9, "{outcomes:?}");
    let paid = stored(&world, &order);
    assert_eq!(paid.status(), OrderStatus::Paid);
    assert_eq!(paid.version(), order.version() + 1);
    assert_eq!(
        world.webhook_events.outbox(),
        vec![message("order_paid", &order)]
    );
    assert_eq!(world.webhook_events.count(), 1);
    assert_eq!(recorded_outcome(&world, "evt_1"), "applied");
}

/// Both deliveries pass the duplicate check while Stripe is slow to answer;
/// the event writes no order, so only the record's own check stops the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deliveries_that_both_passed_the_duplicate_check_record_the_event_once() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let mut short = succeeded(&order, INTENT);
    short.amount = 9_999;
    world.gateway.put_intent(short.clone());
    world
        .gateway
        .set_retrieve_delay(std::time::Duration::from_millis(100));
    let payload = intent_event(&world, "evt_1", "payment_intent.succeeded", short);

    let outcomes = deliver_concurrently(&world, payload, 2).await;
    assert_eq!(world.gateway.calls_to(Op::RetrieveIntent), 2);
    assert_eq!(count(&outcomes, Outcome::Mismatch), 1, "{outcomes:?}");
    assert_eq!(count(&outcomes, Outcome::Duplicate), 1, "{outcomes:?}");
    assert_eq!(world.webhook_events.record_calls(), 2);
    assert_eq!(world.webhook_events.count(), 1);
    assert_unchanged(&world, &order);
}

#[tokio::test]
async fn an_order_changed_between_decision_and_record_is_decided_again_on_its_new_state() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.payment_failed",
        failed(&order, INTENT),
    );
    // The payment endpoint saw the intent succeed and paid the order meanwhile.
    world
        .orders
        .interfere_before_next_save(|o| o.mark_paid(t0()).unwrap());

    assert_eq!(deliver(&world, &payload).await, Outcome::Ignored);
    let after = stored(&world, &order);
    assert_eq!(after.status(), OrderStatus::Paid);
    assert_eq!(after.state().last_payment_error, None);
    // Only the other writer's save.
    assert_eq!(after.version(), order.version() + 1);
    assert_eq!(recorded_outcome(&world, "evt_1"), "ignored");
    assert_eq!(world.webhook_events.record_calls(), 2);
}

#[tokio::test]
async fn a_lost_race_with_an_unrelated_write_is_applied_on_the_fresh_version() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.succeeded",
        succeeded(&order, INTENT),
    );
    // The read-then-record path (the expected-payment write has its own
    // race test below).
    world.webhook_events.decline_expected_payments();
    world.orders.interfere_before_next_save(|_| {});

    assert_eq!(deliver(&world, &payload).await, Outcome::Applied);
    let paid = stored(&world, &order);
    assert_eq!(paid.status(), OrderStatus::Paid);
    assert_eq!(paid.version(), order.version() + 2);
    assert_eq!(world.webhook_events.record_calls(), 2);
    // The refused round left nothing behind.
    assert_eq!(world.webhook_events.outbox().len(), 1);
    assert_eq!(world.webhook_events.count(), 1);
}

#[tokio::test]
async fn an_event_that_keeps_conflicting_is_not_recorded_and_can_be_delivered_again() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.succeeded",
        succeeded(&order, INTENT),
    );
    world.orders.inject_conflicts(1_000);

    let result = world
        .webhook_service()
        .receive(Some(GOOD_SIGNATURE), &payload)
        .await;
    assert!(
        matches!(result, Err(HandleWebhookError::Unexpected(_))),
        "{result:?}"
    );
    // It gave up after a few rounds instead of spinning.
    let rounds = world.webhook_events.record_calls();
    assert!((2..=10).contains(&rounds), "{rounds} rounds");
    assert_unchanged(&world, &order);
    assert_eq!(world.webhook_events.count(), 0);
    assert_eq!(world.webhook_events.outbox(), vec![]);

    world.orders.inject_conflicts(0);
    assert_eq!(deliver(&world, &payload).await, Outcome::Applied);
    assert_eq!(world.webhook_events.outbox().len(), 1);
}

// ---------------------------------------------------------------- replay

#[tokio::test]
async fn replaying_an_applied_event_changes_nothing() {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    let payload = intent_event(
        &world,
        "evt_1",
        "payment_intent.succeeded",
        succeeded(&order, INTENT),
    );
    assert_eq!(deliver(&world, &payload).await, Outcome::Applied);
    let paid = stored(&world, &order);
    world.clock.advance(Duration::days(1));

    let replayed = world.webhook_service().replay("evt_1").await.unwrap();
    assert_eq!(replayed, Outcome::Ignored);
    assert_unchanged(&world, &paid);
    assert_eq!(paid.state().paid_at, Some(t0()));
    assert_eq!(world.webhook_events.outbox().len(), 1);
    assert_eq!(world.webhook_events.count(), 1);
    // The replay's outcome overwrites the stored one (the repository's contract).
    assert_eq!(recorded_outcome(&world, "evt_1"), "ignored");
    assert_eq!(world.decoder.parse_calls(), 1);
}

#[tokio::test]
async fn replaying_a_foreign_event_once_the_order_knows_its_intent_applies_it() {
    let world = World::new();
    let order = order_where(&world, |_| {}).await;
    let mut anonymous = succeeded(&order, "pi_x");
    anonymous.metadata.clear();
    let payload = intent_event(&world, "evt_1", "payment_intent.succeeded", anonymous);
    assert_eq!(deliver(&world, &payload).await, Outcome::Foreign);

    // An operator finds the intent's order and records it, then replays.
    let mut fixed = stored(&world, &order);
    fixed.begin_payment("pi_x".into()).unwrap();
    let version = fixed.version() + 1;
    let fixed = fixed.at_version(version);
    world.orders.put(fixed.clone());

    assert_eq!(
        world.webhook_service().replay("evt_1").await.unwrap(),
        Outcome::Applied
    );
    let paid = stored(&world, &order);
    assert_eq!(paid.status(), OrderStatus::Paid);
    assert_eq!(paid.version(), fixed.version() + 1);
    assert_eq!(recorded_outcome(&world, "evt_1"), "applied");
    assert_eq!(
        world.webhook_events.outbox(),
        vec![message("order_paid", &order)]
    );
    // Delivered again by Stripe: still a duplicate.
    assert_eq!(deliver(&world, &payload).await, Outcome::Duplicate);
}

#[tokio::test]
async fn replaying_an_unknown_event_is_not_found() {
    let world = World::new();
    let result = world.webhook_service().replay("evt_never").await;
    assert!(
        matches!(&result, Err(ReplayError::NotFound(id)) if id == "evt_never"),
        "{result:?}"
    );
    assert_eq!(world.webhook_events.record_calls(), 0);
}

// ---------------------------------------------------------------- arrival order

/// The events of one order's life, in the order they happened: a declined
/// card, the payment, a ¥500 refund, then the rest.
const LIFE: [usize; 4] = [0, 1, 2, 3];

/// A fresh world whose order awaits payment of [`INTENT`], where Stripe
/// (asked) says the intent succeeded, and where the clock stands still.
/// Delivers the events of the order's life in `sequence` (indices into
/// [`LIFE`], repeats being redeliveries); returns the order at the end,
/// the outbox topics (sorted) and the outcomes.
async fn live(sequence: &[usize]) -> (Order, Vec<String>, Vec<Outcome>) {
    let world = World::new();
    let order = awaiting(&world, INTENT).await;
    world.gateway.put_intent(succeeded(&order, INTENT));
    let events = [
        intent_event(
            &world,
            "evt_failed",
            "payment_intent.payment_failed",
            failed(&order, INTENT),
        ),
        intent_event(
            &world,
            "evt_succeeded",
            "payment_intent.succeeded",
            succeeded(&order, INTENT),
        ),
        refund_event(&world, "evt_refund_500", &order, INTENT, 500),
        refund_event(&world, "evt_refund_all", &order, INTENT, 11_800),
    ];
    let mut outcomes = Vec::with_capacity(sequence.len());
    for &event in sequence {
        outcomes.push(deliver(&world, &events[event]).await);
    }
    let mut topics = world.webhook_events.outbox_topics();
    topics.sort();
    (stored(&world, &order), topics, outcomes)
}

#[tokio::test]
async fn the_life_of_an_order_in_order_ends_refunded() {
    let (order, topics, outcomes) = live(&LIFE).await;
    assert_eq!(outcomes, vec![Outcome::Applied; 4]);
    assert_eq!(order.status(), OrderStatus::Refunded);
    assert_eq!(order.state().refunded_amount, order.total());
    assert_eq!(order.state().paid_at, Some(t0()));
    assert_eq!(order.state().last_payment_error, None);
    assert_eq!(order.state().payment_intent_id.as_deref(), Some(INTENT));
    assert_eq!(order.state().payment_attempts, 1);
    assert_eq!(topics, vec!["order_paid", "order_refunded"]);
}

/// `LIFE` shuffled, with up to 5 redeliveries inserted anywhere.
fn arrivals() -> impl Strategy<Value = Vec<usize>> {
    (
        Just(LIFE.to_vec()).prop_shuffle(),
        prop::collection::vec((0..LIFE.len(), any::<prop::sample::Index>()), 0..6),
    )
        .prop_map(|(mut sequence, redeliveries)| {
            for (event, at) in redeliveries {
                let position = at.index(sequence.len() + 1);
                sequence.insert(position, event);
            }
            sequence
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_arrival_order_ends_in_the_state_of_the_in_order_sequence(sequence in arrivals()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (expected, expected_topics, _) = runtime.block_on(live(&LIFE));
        let (order, topics, outcomes) = runtime.block_on(live(&sequence));

        prop_assert_eq!(order.state(), expected.state());
        prop_assert_eq!(topics, expected_topics);
        for outcome in &outcomes {
            prop_assert!(
                matches!(outcome, Outcome::Applied | Outcome::Ignored | Outcome::Duplicate),
                "{:?} in {:?}",
                outcome,
                outcomes
            );
        }
        let distinct: std::collections::BTreeSet<_> = sequence.iter().collect();
        prop_assert_eq!(count(&outcomes, Outcome::Duplicate), sequence.len() - distinct.len());
    }
}
