use application::auth::RegisterInput;
use application::orders::{CreateOrderInput, OrderItemInput};
use application::payments::CreateIntentError;
use application::ports::payment_gateway::PaymentIntentStatus;
use domain::{OrderStatus, User};

use crate::support::{yen, World};

async fn customer_with_order(world: &World) -> (User, domain::Order) {
    let tea = world.products.add("TEA-01", "Sencha", yen(5000), true);
    let signed_in = world
        .auth()
        .register(RegisterInput {
            email: "hanako@example.jp".into(),
            password: "correct horse".into(),
            name: Some("花子".into()),
        })
        .await
        .unwrap();
    let order = world
        .order_service()
        .create_order(
            signed_in.user.id,
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
    (signed_in.user, order)
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
