use std::time::Duration;

use application::auth::RegisterInput;
use application::orders::{CreateOrderInput, OrderItemInput};
use application::payments::CreateIntentError;
use application::ports::payment_gateway::{GatewayError, PaymentIntent, PaymentIntentStatus};
use application::ports::Clock;
use domain::ports::OrderRepository;
use domain::{Order, OrderId, OrderStatus, User};

use crate::support::{lease_ttl, short_lease, yen, FakeGateway, Op, World};

/// Registers a user (who gets a Customer unless the provider is down).
async fn register(world: &World, email: &str) -> User {
    world
        .auth()
        .register(RegisterInput {
            email: email.into(),
            password: "correct horse".into(),
            name: Some("花子".into()),
        })
        .await
        .unwrap()
        .user
}

/// Hanako and her ¥11,800 order (two teas, tax and shipping), pending.
async fn customer_with_order(world: &World) -> (User, domain::Order) {
    let tea = world.products.add("TEA-01", "Sencha", yen(5000), true);
    let user = register(world, "hanako@example.jp").await;
    let order = world
        .order_service()
        .create_order(
            user.id,
            CreateOrderInput {
                items: vec![OrderItemInput {
                    product_id: tea.id.get(),
                    quantity: 2,
                }],
                notes: None,
            },
        )
        .await
        .unwrap();
    (user, order)
}

/// A change to an order or an intent, for tests that try several.
type OrderEdit = fn(&mut Order);
type IntentEdit = fn(&mut PaymentIntent);

/// Moves the stored order on as another process would, at a new version.
fn advance_stored(world: &World, id: OrderId, advance: impl FnOnce(&mut Order)) -> Order {
    let mut order = world.orders.get(id).unwrap();
    advance(&mut order);
    let version = order.version() + 1;
    let order = order.at_version(version);
    world.orders.put(order.clone());
    order
}

fn paid(order: &mut Order) {
    order.begin_payment("pi_elsewhere".to_string()).unwrap();
    order.mark_paid(order.created_at).unwrap();
}

fn cancelled(order: &mut Order) {
    order.cancel(order.created_at, None).unwrap();
}

fn refunded(order: &mut Order) {
    paid(order);
    order.record_refunds(order.total()).unwrap();
}

/// The stored order is exactly `before`: same state, same version.
#[track_caller]
fn assert_unchanged(world: &World, before: &Order) {
    let stored = world.orders.get(before.id).unwrap();
    assert_eq!(stored.state(), before.state());
    assert_eq!(stored.version(), before.version());
}

#[track_caller]
fn assert_provider_api_error<T: std::fmt::Debug>(result: &Result<T, CreateIntentError>) {
    assert!(
        matches!(
            result,
            Err(CreateIntentError::Provider(GatewayError::Api { .. }))
        ),
        "expected a provider error, got {result:?}"
    );
}

#[tokio::test]
async fn registration_creates_one_customer_with_the_user_id() {
    let world = World::new();
    let (user, _) = customer_with_order(&world).await;
    let customers = world.gateway.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(
        user.stripe_customer_id.as_deref(),
        Some(customers[0].id.as_str())
    );
    assert_eq!(customers[0].metadata["kessai_user_id"], user.id.to_string());
}

#[tokio::test]
async fn registration_succeeds_while_stripe_is_down_and_checkout_creates_the_customer() {
    let world = World::new();
    world.gateway.set_down(true);
    let (user, order) = customer_with_order(&world).await;
    assert_eq!(user.stripe_customer_id, None);
    world.gateway.set_down(false);
    let output = world
        .payment_service()
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    let intent = world.gateway.intent(&output.payment_intent_id).unwrap();
    let customers = world.gateway.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(intent.customer.as_deref(), Some(customers[0].id.as_str()));
}

#[tokio::test]
async fn the_intent_charges_the_order_total_with_its_metadata() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    let output = world
        .payment_service()
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    assert_eq!(output.amount, order.total());
    let intent = world.gateway.intent(&output.payment_intent_id).unwrap();
    assert_eq!(intent.amount, order.total().minor_units());
    assert_eq!(intent.currency, "jpy");
    assert_eq!(intent.metadata["order_id"], order.id.to_string());
    assert_eq!(intent.metadata["order_number"], order.number.to_string());
    assert_eq!(intent.metadata["user_id"], user.id.to_string());
    let stored = world.orders.get(order.id).unwrap();
    assert_eq!(stored.status(), OrderStatus::AwaitingPayment);
    assert_eq!(
        stored.state().payment_intent_id.as_deref(),
        Some(output.payment_intent_id.as_str())
    );
}

#[tokio::test]
async fn calling_again_returns_the_same_intent_and_a_cancelled_one_is_replaced() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    let payments = world.payment_service();
    let first = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    let again = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    assert_eq!(first.payment_intent_id, again.payment_intent_id);
    assert_eq!(world.gateway.all_intents().len(), 1);

    world
        .gateway
        .set_status(&first.payment_intent_id, PaymentIntentStatus::Canceled);
    let replacement = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    assert_ne!(replacement.payment_intent_id, first.payment_intent_id);
    assert_eq!(
        world.orders.get(order.id).unwrap().state().payment_attempts,
        2
    );
}

#[tokio::test]
async fn a_succeeded_intent_pays_the_order_and_answers_already_paid() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    let payments = world.payment_service();
    let first = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    world
        .gateway
        .set_status(&first.payment_intent_id, PaymentIntentStatus::Succeeded);
    let result = payments.create_payment_intent(&user, order.id).await;
    assert!(
        matches!(result, Err(CreateIntentError::AlreadyPaid)),
        "{result:?}"
    );
    assert_eq!(
        world.orders.get(order.id).unwrap().status(),
        OrderStatus::Paid
    );
}

#[tokio::test]
async fn an_outage_leaves_the_order_as_it_was() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    world.gateway.set_down(true);
    let result = world
        .payment_service()
        .create_payment_intent(&user, order.id)
        .await;
    assert!(
        matches!(result, Err(CreateIntentError::Provider(_))),
        "{result:?}"
    );
    let stored = world.orders.get(order.id).unwrap();
    assert_eq!(stored.state(), order.state());
    assert_eq!(stored.version(), order.version());
}

// ---------------------------------------------------------------- checks before the provider

#[tokio::test]
async fn create_intent_for_an_unknown_order_is_not_found() {
    let world = World::new();
    let (user, _) = customer_with_order(&world).await;
    let calls = world.gateway.total_calls();

    let result = world
        .payment_service()
        .create_payment_intent(&user, OrderId::new(404))
        .await;

    assert!(
        matches!(result, Err(CreateIntentError::NotFound)),
        "{result:?}"
    );
    assert_eq!(world.gateway.total_calls(), calls, "no provider call");
}

#[tokio::test]
async fn create_intent_for_another_users_order_is_denied_whatever_its_status() {
    let advances: [(&str, OrderEdit); 4] = [
        ("pending", |_| {}),
        ("paid", paid),
        ("cancelled", cancelled),
        ("refunded", refunded),
    ];
    for (status, advance) in advances {
        let world = World::new();
        let (_, hanakos) = customer_with_order(&world).await;
        let hanakos = advance_stored(&world, hanakos.id, advance);
        let taro = register(&world, "taro@example.jp").await;
        let calls = world.gateway.total_calls();

        let result = world
            .payment_service()
            .create_payment_intent(&taro, hanakos.id)
            .await;

        assert!(
            matches!(result, Err(CreateIntentError::PermissionDenied)),
            "{status}: {result:?}"
        );
        assert_eq!(
            world.gateway.total_calls(),
            calls,
            "{status}: provider called"
        );
        assert_unchanged(&world, &hanakos);
    }
}

#[tokio::test]
async fn create_intent_for_a_paid_order_is_already_paid_without_asking_the_provider() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    // "pi_elsewhere" is unknown to the provider: asking it would fail.
    let order = advance_stored(&world, order.id, paid);
    let calls = world.gateway.total_calls();

    let result = world
        .payment_service()
        .create_payment_intent(&user, order.id)
        .await;

    assert!(
        matches!(result, Err(CreateIntentError::AlreadyPaid)),
        "{result:?}"
    );
    assert_eq!(world.gateway.total_calls(), calls, "no provider call");
    assert_eq!(world.orders.save_calls(), 0);
    assert_unchanged(&world, &order);
}

#[tokio::test]
async fn create_intent_for_a_cancelled_or_refunded_order_is_not_payable() {
    let advances: [(OrderStatus, OrderEdit); 2] = [
        (OrderStatus::Cancelled, cancelled),
        (OrderStatus::Refunded, refunded),
    ];
    for (status, advance) in advances {
        let world = World::new();
        let (user, order) = customer_with_order(&world).await;
        let order = advance_stored(&world, order.id, advance);
        let calls = world.gateway.total_calls();

        let result = world
            .payment_service()
            .create_payment_intent(&user, order.id)
            .await;

        match result {
            Err(CreateIntentError::NotPayable(s)) => assert_eq!(s, status),
            other => panic!("expected NotPayable({status}), got {other:?}"),
        }
        assert_eq!(
            world.gateway.total_calls(),
            calls,
            "{status}: provider called"
        );
        assert_unchanged(&world, &order);
    }
}

// ---------------------------------------------------------------- a new intent

#[tokio::test]
async fn a_new_intent_is_for_the_users_customer_and_the_order_records_it() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;

    let output = world
        .payment_service()
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();

    let intents = world.gateway.all_intents();
    assert_eq!(intents.len(), 1);
    let intent = &intents[0];
    assert_eq!(intent.id, output.payment_intent_id);
    assert_eq!(intent.amount, 11_800);
    assert_eq!(intent.currency, "jpy");
    assert_eq!(intent.customer, user.stripe_customer_id);
    assert!(intent.customer.is_some());
    assert_eq!(intent.metadata.len(), 3, "{:?}", intent.metadata);
    assert_eq!(Some(&output.client_secret), intent.client_secret.as_ref());
    assert_eq!(output.amount, yen(11_800));
    assert_eq!(world.gateway.calls_to(Op::CreateIntent), 1);
    assert_eq!(
        world.gateway.calls_to(Op::CreateCustomer),
        1,
        "the Customer made at registration is reused"
    );
    let stored = world.orders.get(order.id).unwrap();
    assert_eq!(stored.status(), OrderStatus::AwaitingPayment);
    assert_eq!(stored.state().payment_attempts, 1);
    assert_eq!(stored.version(), order.version() + 1);
    assert_eq!(world.orders.lease(order.id), None, "lease released");
}

#[tokio::test]
async fn an_open_intent_is_reused_without_creating_or_saving() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    let payments = world.payment_service();
    let first = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    let after_first = world.orders.get(order.id).unwrap();

    let again = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();

    assert_eq!(again.payment_intent_id, first.payment_intent_id);
    assert_eq!(again.client_secret, first.client_secret);
    assert_eq!(again.amount, first.amount);
    assert_eq!(world.gateway.calls_to(Op::CreateIntent), 1);
    assert_eq!(world.gateway.calls_to(Op::RetrieveIntent), 1);
    assert_eq!(world.gateway.calls_to(Op::UpdateIntent), 0);
    assert_unchanged(&world, &after_first);
}

#[tokio::test]
async fn an_intent_whose_amount_or_currency_changed_is_updated_to_the_order_total() {
    let edits: [(&str, IntentEdit); 2] = [
        ("amount", |i| i.amount = 1),
        ("currency", |i| i.currency = "usd".into()),
    ];
    for (what, edit) in edits {
        let world = World::new();
        let (user, order) = customer_with_order(&world).await;
        let payments = world.payment_service();
        let first = payments
            .create_payment_intent(&user, order.id)
            .await
            .unwrap();
        world.gateway.edit_intent(&first.payment_intent_id, edit);

        let output = payments
            .create_payment_intent(&user, order.id)
            .await
            .unwrap();

        assert_eq!(output.payment_intent_id, first.payment_intent_id, "{what}");
        assert_eq!(output.amount, order.total(), "{what}");
        let intent = world.gateway.intent(&first.payment_intent_id).unwrap();
        assert_eq!(
            (intent.amount, intent.currency.as_str()),
            (11_800, "jpy"),
            "{what}"
        );
        assert_eq!(world.gateway.calls_to(Op::UpdateIntent), 1, "{what}");
        assert_eq!(world.gateway.calls_to(Op::CreateIntent), 1, "{what}");
        let update_key = &world.gateway.keys_for(Op::UpdateIntent)[0];
        assert_ne!(update_key, &world.gateway.keys_for(Op::CreateIntent)[0]);
    }
}

#[tokio::test]
async fn a_cancelled_intent_is_replaced_under_the_next_attempts_key() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    let payments = world.payment_service();
    let first = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    world
        .gateway
        .set_status(&first.payment_intent_id, PaymentIntentStatus::Canceled);

    let replacement = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();

    assert_ne!(replacement.payment_intent_id, first.payment_intent_id);
    let keys = world.gateway.keys_for(Op::CreateIntent);
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1], "a new intent needs a new idempotency key");
    assert_eq!(world.gateway.all_intents().len(), 2);
    assert_eq!(
        world
            .gateway
            .intent(&replacement.payment_intent_id)
            .unwrap()
            .status,
        PaymentIntentStatus::RequiresPaymentMethod
    );
    let stored = world.orders.get(order.id).unwrap();
    assert_eq!(stored.status(), OrderStatus::AwaitingPayment);
    assert_eq!(stored.state().payment_attempts, 2);
    assert_eq!(
        stored.state().payment_intent_id.as_deref(),
        Some(replacement.payment_intent_id.as_str())
    );
}

// ---------------------------------------------------------------- what the provider says

#[tokio::test]
async fn a_succeeded_intent_pays_the_order_now_and_later_calls_skip_the_provider() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    let payments = world.payment_service();
    let first = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    world
        .gateway
        .set_status(&first.payment_intent_id, PaymentIntentStatus::Succeeded);
    world.clock.advance(chrono::Duration::minutes(5));

    let result = payments.create_payment_intent(&user, order.id).await;

    assert!(
        matches!(result, Err(CreateIntentError::AlreadyPaid)),
        "{result:?}"
    );
    let stored = world.orders.get(order.id).unwrap();
    assert_eq!(stored.status(), OrderStatus::Paid);
    assert_eq!(stored.state().paid_at, Some(world.clock.now()));

    let calls = world.gateway.total_calls();
    let again = payments.create_payment_intent(&user, order.id).await;
    assert!(
        matches!(again, Err(CreateIntentError::AlreadyPaid)),
        "{again:?}"
    );
    assert_eq!(world.gateway.total_calls(), calls);
}

/// A payment of the wrong amount is not a payment of the order: the order
/// stays unpaid (for review), but no second intent is offered either.
#[tokio::test]
async fn a_succeeded_intent_of_the_wrong_amount_does_not_pay_the_order() {
    let edits: [(&str, IntentEdit); 2] = [
        ("amount", |i| i.amount -= 1),
        ("currency", |i| i.currency = "usd".into()),
    ];
    for (what, edit) in edits {
        let world = World::new();
        let (user, order) = customer_with_order(&world).await;
        let payments = world.payment_service();
        let first = payments
            .create_payment_intent(&user, order.id)
            .await
            .unwrap();
        let before = world.orders.get(order.id).unwrap();
        world.gateway.edit_intent(&first.payment_intent_id, |i| {
            edit(i);
            i.status = PaymentIntentStatus::Succeeded;
        });

        let result = payments.create_payment_intent(&user, order.id).await;

        assert!(
            matches!(result, Err(CreateIntentError::AlreadyPaid)),
            "{what}: {result:?}"
        );
        assert_unchanged(&world, &before);
        assert_eq!(before.status(), OrderStatus::AwaitingPayment);
        assert_eq!(world.gateway.calls_to(Op::CreateIntent), 1, "{what}");
        assert_eq!(world.gateway.calls_to(Op::UpdateIntent), 0, "{what}");
    }
}

#[tokio::test]
async fn an_intent_naming_another_order_is_a_provider_error_whatever_its_status() {
    let statuses = [
        PaymentIntentStatus::RequiresPaymentMethod,
        PaymentIntentStatus::Succeeded,
        PaymentIntentStatus::Canceled,
    ];
    for status in statuses {
        let world = World::new();
        let (user, order) = customer_with_order(&world).await;
        let payments = world.payment_service();
        let first = payments
            .create_payment_intent(&user, order.id)
            .await
            .unwrap();
        let before = world.orders.get(order.id).unwrap();
        world.gateway.edit_intent(&first.payment_intent_id, |i| {
            i.metadata.insert("order_id".into(), "999".into());
            i.status = status.clone();
        });

        let result = payments.create_payment_intent(&user, order.id).await;

        assert_provider_api_error(&result);
        assert_unchanged(&world, &before);
        assert_eq!(world.gateway.calls_to(Op::CreateIntent), 1, "{status:?}");
        assert_eq!(world.gateway.calls_to(Op::UpdateIntent), 0, "{status:?}");
    }
}

#[tokio::test]
async fn a_processing_intent_is_returned_as_it_is() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    let payments = world.payment_service();
    let first = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    let before = world.orders.get(order.id).unwrap();
    world
        .gateway
        .set_status(&first.payment_intent_id, PaymentIntentStatus::Processing);

    let output = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();

    assert_eq!(output.payment_intent_id, first.payment_intent_id);
    assert_eq!(output.client_secret, first.client_secret);
    assert_eq!(
        world
            .gateway
            .intent(&first.payment_intent_id)
            .unwrap()
            .status,
        PaymentIntentStatus::Processing
    );
    assert_eq!(world.gateway.calls_to(Op::CreateIntent), 1);
    assert_eq!(world.gateway.calls_to(Op::UpdateIntent), 0);
    assert_eq!(world.gateway.calls_to(Op::CancelIntent), 0);
    assert_unchanged(&world, &before);
}

/// The provider does not know the order's intent (a wrong account or mode,
/// a deleted test object). Today that is a provider error, and stays one:
/// the order cannot be paid until someone intervenes.
#[tokio::test]
async fn an_intent_unknown_to_the_provider_is_a_provider_error() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    let order = advance_stored(&world, order.id, |o| {
        o.begin_payment("pi_unknown".to_string()).unwrap();
    });

    let result = world
        .payment_service()
        .create_payment_intent(&user, order.id)
        .await;

    match &result {
        Err(CreateIntentError::Provider(e)) => assert!(e.is_not_found(), "{e:?}"),
        other => panic!("expected a provider error, got {other:?}"),
    }
    assert_eq!(world.gateway.calls_to(Op::CreateIntent), 0);
    assert_unchanged(&world, &order);
}

// ---------------------------------------------------------------- failures

#[tokio::test]
async fn an_outage_leaves_no_lease_behind_and_the_next_call_succeeds_at_once() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    // A lease left behind would make the next call wait, then time out.
    let payments = world.payment_service_with(short_lease(Duration::from_millis(200)));
    world.gateway.set_down(true);

    let result = payments.create_payment_intent(&user, order.id).await;

    assert!(
        matches!(
            result,
            Err(CreateIntentError::Provider(GatewayError::Network { .. }))
        ),
        "{result:?}"
    );
    assert_unchanged(&world, &order);
    assert_eq!(world.orders.lease(order.id), None);

    world.gateway.set_down(false);
    let output = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    assert_eq!(world.gateway.all_intents().len(), 1);
    assert_eq!(
        world
            .orders
            .get(order.id)
            .unwrap()
            .state()
            .payment_intent_id,
        Some(output.payment_intent_id)
    );
}

#[tokio::test]
async fn an_outage_while_reading_the_intent_leaves_the_order_as_it_was() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    let payments = world.payment_service();
    payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    let before = world.orders.get(order.id).unwrap();
    world.gateway.set_down(true);

    let result = payments.create_payment_intent(&user, order.id).await;

    assert!(
        matches!(result, Err(CreateIntentError::Provider(_))),
        "{result:?}"
    );
    assert_unchanged(&world, &before);
    assert_eq!(world.gateway.all_intents().len(), 1);
}

#[tokio::test]
async fn a_failed_intent_creation_keeps_the_new_customer_and_a_retry_uses_it() {
    let world = World::new();
    world.gateway.set_down(true);
    let (user, order) = customer_with_order(&world).await;
    assert_eq!(user.stripe_customer_id, None);
    world.gateway.set_down(false);
    world.gateway.fail(
        Op::CreateIntent,
        1,
        GatewayError::Api {
            status: 500,
            message: "internal".into(),
        },
    );
    let payments = world.payment_service();

    let result = payments.create_payment_intent(&user, order.id).await;

    assert_provider_api_error(&result);
    assert_unchanged(&world, &order);
    assert_eq!(world.orders.lease(order.id), None);
    let customers = world.gateway.customers();
    assert_eq!(customers.len(), 1);
    let recorded = world.users.all()[0].stripe_customer_id.clone();
    assert_eq!(recorded.as_deref(), Some(customers[0].id.as_str()));

    // The caller still holds the user as read before the Customer existed.
    let output = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    assert_eq!(world.gateway.customers().len(), 1);
    let intent = world.gateway.intent(&output.payment_intent_id).unwrap();
    assert_eq!(intent.customer, recorded);
}

#[tokio::test]
async fn a_retry_after_an_unknown_outcome_reuses_the_idempotency_key_and_the_intent() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    world.gateway.fail_after_applying(
        Op::CreateIntent,
        1,
        GatewayError::Network {
            message: "timed out".into(),
            outcome_unknown: true,
        },
    );
    let payments = world.payment_service();

    let lost = payments.create_payment_intent(&user, order.id).await;

    assert!(
        matches!(
            lost,
            Err(CreateIntentError::Provider(GatewayError::Network {
                outcome_unknown: true,
                ..
            }))
        ),
        "{lost:?}"
    );
    assert_eq!(
        world.gateway.all_intents().len(),
        1,
        "created at the provider"
    );
    assert_unchanged(&world, &order);
    assert_eq!(world.orders.lease(order.id), None);

    let output = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();

    let intents = world.gateway.all_intents();
    assert_eq!(intents.len(), 1, "no second intent");
    assert_eq!(output.payment_intent_id, intents[0].id);
    let keys = world.gateway.keys_for(Op::CreateIntent);
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1], "the retry must reuse the key");
    let stored = world.orders.get(order.id).unwrap();
    assert_eq!(
        stored.state().payment_intent_id,
        Some(intents[0].id.clone())
    );
    assert_eq!(stored.state().payment_attempts, 1);
}

#[tokio::test]
async fn an_intent_created_for_the_wrong_amount_or_currency_is_not_recorded() {
    let tampers: [(&str, IntentEdit); 2] = [
        ("amount", |i| i.amount += 100),
        ("currency", |i| i.currency = "usd".into()),
    ];
    for (what, tamper) in tampers {
        let world = World::new();
        let (user, order) = customer_with_order(&world).await;
        world.gateway.tamper_created_intents(tamper);

        let result = world
            .payment_service()
            .create_payment_intent(&user, order.id)
            .await;

        assert_provider_api_error(&result);
        assert_unchanged(&world, &order);
        assert_eq!(world.orders.lease(order.id), None, "{what}");
    }
}

#[tokio::test]
async fn an_order_cancelled_while_its_intent_was_created_gets_that_intent_cancelled() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    world
        .orders
        .interfere_before_next_save(|o| o.cancel(o.created_at, None).unwrap());

    let result = world
        .payment_service_with(short_lease(Duration::from_secs(2)))
        .create_payment_intent(&user, order.id)
        .await;

    match result {
        Err(CreateIntentError::NotPayable(OrderStatus::Cancelled)) => {}
        other => panic!("expected NotPayable(cancelled), got {other:?}"),
    }
    let intents = world.gateway.all_intents();
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].status, PaymentIntentStatus::Canceled);
    let stored = world.orders.get(order.id).unwrap();
    assert_eq!(stored.status(), OrderStatus::Cancelled);
    assert_eq!(stored.state().payment_intent_id, None);
    assert_eq!(world.orders.lease(order.id), None);
}

// ---------------------------------------------------------------- concurrency and leases

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_calls_create_one_intent_even_if_the_provider_ignores_keys() {
    let world = World::with_gateway(FakeGateway::ignoring_keys());
    let (user, order) = customer_with_order(&world).await;
    world.gateway.set_create_delay(Duration::from_millis(20));
    let payments = world.payment_service_with(short_lease(Duration::from_secs(10)));

    let calls: Vec<_> = (0..16)
        .map(|_| {
            let (payments, user) = (payments.clone(), user.clone());
            tokio::spawn(async move { payments.create_payment_intent(&user, order.id).await })
        })
        .collect();
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap().unwrap().payment_intent_id);
    }

    let intents = world.gateway.all_intents();
    assert_eq!(intents.len(), 1, "{intents:#?}");
    assert!(ids.iter().all(|id| id == &intents[0].id), "{ids:?}");
    assert_eq!(world.gateway.calls_to(Op::CreateIntent), 1);
    let stored = world.orders.get(order.id).unwrap();
    assert_eq!(
        stored.state().payment_intent_id,
        Some(intents[0].id.clone())
    );
    assert_eq!(stored.state().payment_attempts, 1);
    assert_eq!(world.orders.lease(order.id), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ensures_leave_the_user_with_one_customer() {
    let world = World::with_gateway(FakeGateway::ignoring_keys());
    world.gateway.set_down(true);
    let user = register(&world, "hanako@example.jp").await;
    assert_eq!(user.stripe_customer_id, None);
    world.gateway.set_down(false);
    world.gateway.set_create_delay(Duration::from_millis(20));

    let calls: Vec<_> = (0..16)
        .map(|_| {
            let (accounts, user) = (world.customer_accounts(), user.clone());
            tokio::spawn(async move { accounts.ensure(&user).await })
        })
        .collect();
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap().unwrap());
    }

    assert!(
        world.gateway.customers().len() > 1,
        "the calls did not overlap: the test proves nothing"
    );
    let recorded = world.users.all()[0].stripe_customer_id.clone().unwrap();
    assert!(
        ids.iter().all(|id| id == &recorded),
        "{ids:?} vs {recorded}"
    );
    assert!(world.gateway.customers().iter().any(|c| c.id == recorded));
}

#[tokio::test]
async fn a_lease_left_by_a_crashed_caller_blocks_creation_until_it_expires() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    let now = world.clock.now();
    assert!(world
        .orders
        .claim_payment_lease(&order, "crashed-0", now, now + lease_ttl())
        .await
        .unwrap());
    let payments = world.payment_service_with(short_lease(Duration::from_millis(100)));

    let blocked = payments.create_payment_intent(&user, order.id).await;

    assert!(
        matches!(
            blocked,
            Err(CreateIntentError::Provider(GatewayError::Network {
                outcome_unknown: true,
                ..
            }))
        ),
        "{blocked:?}"
    );
    assert_eq!(world.gateway.calls_to(Op::CreateIntent), 0);
    assert_unchanged(&world, &order);

    world
        .clock
        .advance(lease_ttl() + chrono::Duration::seconds(1));
    let output = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();

    assert_eq!(world.gateway.all_intents().len(), 1);
    assert_eq!(
        world
            .orders
            .get(order.id)
            .unwrap()
            .state()
            .payment_intent_id,
        Some(output.payment_intent_id)
    );
}

#[tokio::test]
async fn a_waiting_caller_proceeds_once_a_crashed_callers_lease_expires() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    let now = world.clock.now();
    assert!(world
        .orders
        .claim_payment_lease(&order, "crashed-0", now, now + lease_ttl())
        .await
        .unwrap());
    let payments = world.payment_service_with(short_lease(Duration::from_secs(10)));

    let (result, ()) = tokio::join!(payments.create_payment_intent(&user, order.id), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            world.gateway.calls_to(Op::CreateIntent),
            0,
            "created while another caller held the lease"
        );
        world
            .clock
            .advance(lease_ttl() + chrono::Duration::seconds(1));
    });

    let output = result.unwrap();
    assert_eq!(world.gateway.all_intents().len(), 1);
    assert_eq!(world.gateway.all_intents()[0].id, output.payment_intent_id);
}

/// The caller dies after the provider created the intent but before the
/// order recorded it: its lease stays until it expires, and the next
/// caller's creation, under the same idempotency key, finds that intent.
#[tokio::test]
async fn after_a_crash_past_the_provider_the_next_caller_gets_the_same_intent() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    let payments = world.payment_service_with(short_lease(Duration::from_millis(100)));
    world
        .gateway
        .delay_next_intent_answer(Duration::from_secs(30));

    let crashed = tokio::time::timeout(
        Duration::from_millis(100),
        payments.create_payment_intent(&user, order.id),
    )
    .await;

    assert!(crashed.is_err(), "{crashed:?}");
    assert_eq!(world.gateway.all_intents().len(), 1);
    assert_unchanged(&world, &order);
    assert!(world.orders.lease(order.id).is_some(), "the lease stays");
    let blocked = payments.create_payment_intent(&user, order.id).await;
    assert!(
        matches!(blocked, Err(CreateIntentError::Provider(_))),
        "{blocked:?}"
    );

    world
        .clock
        .advance(lease_ttl() + chrono::Duration::seconds(1));
    let output = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();

    let intents = world.gateway.all_intents();
    assert_eq!(intents.len(), 1);
    assert_eq!(output.payment_intent_id, intents[0].id);
    let keys = world.gateway.keys_for(Op::CreateIntent);
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);
}

// ---------------------------------------------------------------- known bugs

/// Fixed (create_intent.rs, `create_under_lease`, the `Conflict` arm): a
/// caller whose lease ran out while it was at the provider (the Stripe
/// client may retry for longer than the 60 s lease) gets, under the same
/// idempotency key, the intent that the next lease holder already stored
/// and handed out; its save then conflicts and it cancels that intent.
#[tokio::test]
async fn a_caller_whose_lease_expired_does_not_cancel_the_intent_another_caller_handed_out() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    let payments = world.payment_service_with(short_lease(Duration::from_secs(5)));
    world
        .gateway
        .delay_next_intent_creation(Duration::from_millis(300));

    let slow = payments.create_payment_intent(&user, order.id);
    let late = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        world
            .clock
            .advance(lease_ttl() + chrono::Duration::seconds(1));
        payments.create_payment_intent(&user, order.id).await
    };
    let (slow, late) = tokio::join!(slow, late);

    for handed_out in [slow.unwrap(), late.unwrap()] {
        let intent = world.gateway.intent(&handed_out.payment_intent_id).unwrap();
        assert_ne!(
            intent.status,
            PaymentIntentStatus::Canceled,
            "{} was handed out to a customer, then cancelled",
            intent.id
        );
    }
}

/// Fixed (create_intent.rs, `reuse_or_replace`, the amount update): the
/// update's idempotency key names only the order, the attempt and the
/// target amount, so a second correction within Stripe's 24 h key window
/// is answered with the first one's saved response and changes nothing;
/// the result is not checked against the order total either.
#[tokio::test]
async fn an_intent_whose_amount_changed_twice_is_corrected_twice() {
    let world = World::new();
    let (user, order) = customer_with_order(&world).await;
    let payments = world.payment_service();
    let first = payments
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    for round in 1..=2 {
        world
            .gateway
            .edit_intent(&first.payment_intent_id, |i| i.amount = 1);

        let output = payments.create_payment_intent(&user, order.id).await;

        let intent = world.gateway.intent(&first.payment_intent_id).unwrap();
        assert!(
            output.is_err() || intent.amount == order.total().minor_units(),
            "round {round}: handed out an intent charging {} instead of {}",
            intent.amount,
            order.total()
        );
    }
}
