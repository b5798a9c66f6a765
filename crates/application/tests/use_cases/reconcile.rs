use application::auth::RegisterInput;
use application::orders::{CreateOrderInput, OrderItemInput};
use application::ports::payment_gateway::PaymentIntentStatus;
use application::reconcile::{ReconcileSettings, Reconciler};
use chrono::Duration;
use domain::ports::UserRepository;
use domain::{Order, OrderStatus, User};

use crate::support::{yen, World};

fn reconciler(world: &World) -> Reconciler {
    Reconciler::new(
        world.orders.clone(),
        world.users.clone(),
        world.gateway.clone(),
        world.clock.clone(),
        ReconcileSettings {
            quiet_for: Duration::zero(),
            batch: 100,
        },
        "test",
    )
}

async fn customer_with_paid_intent(world: &World, email: &str) -> (User, Order, String) {
    let sku = format!("TEA-{}", email.split('@').next().unwrap_or("x"));
    let tea = world.products.add(&sku, "Sencha", yen(5000), true);
    let user = world
        .auth()
        .register(RegisterInput {
            email: email.into(),
            password: "correct horse".into(),
            name: None,
        })
        .await
        .unwrap()
        .user;
    let order = world
        .order_service()
        .create_order(
            user.id,
            CreateOrderInput {
                items: vec![OrderItemInput {
                    product_id: tea.id.get(),
                    quantity: 1,
                }],
                notes: None,
            },
        )
        .await
        .unwrap();
    let intent = world
        .payment_service()
        .create_payment_intent(&user, order.id)
        .await
        .unwrap();
    (user, order, intent.payment_intent_id)
}

#[tokio::test]
async fn a_payment_no_webhook_reported_is_found_and_settled_once() {
    let world = World::new();
    let (_, order, intent) = customer_with_paid_intent(&world, "a@example.jp").await;
    world
        .gateway
        .set_status(&intent, PaymentIntentStatus::Succeeded);

    let report = reconciler(&world).run_once().await.unwrap();
    assert_eq!((report.checked, report.paid), (1, 1));
    let stored = world.orders.get(order.id).unwrap();
    assert_eq!(stored.status(), OrderStatus::Paid);
    assert_eq!(world.orders.notified.lock().unwrap().len(), 1);

    // Paid orders are not looked at again.
    let again = reconciler(&world).run_once().await.unwrap();
    assert_eq!(again.checked, 0);
}

#[tokio::test]
async fn an_open_payment_is_checked_on_a_backing_off_schedule_that_ends() {
    let world = World::new();
    let (_, order, _) = customer_with_paid_intent(&world, "b@example.jp").await;
    let worker = reconciler(&world);

    let first = worker.run_once().await.unwrap();
    assert_eq!((first.checked, first.still_open), (1, 1));
    // Not due again before its time...
    assert_eq!(worker.run_once().await.unwrap().checked, 0);
    // ...and checked at each step of the schedule until it ends.
    let mut given_up = 0;
    for _ in 0..20 {
        world.clock.advance(Duration::days(2));
        given_up += worker.run_once().await.unwrap().given_up;
    }
    assert_eq!(given_up, 1, "the schedule ends once");
    world.clock.advance(Duration::days(30));
    assert_eq!(worker.run_once().await.unwrap().checked, 0);
    assert_eq!(
        world.orders.get(order.id).unwrap().status(),
        OrderStatus::AwaitingPayment
    );
}

#[tokio::test]
async fn stripe_down_fails_the_check_and_it_is_retried() {
    let world = World::new();
    let (_, order, intent) = customer_with_paid_intent(&world, "c@example.jp").await;
    world
        .gateway
        .set_status(&intent, PaymentIntentStatus::Succeeded);
    world.gateway.set_down(true);
    let failed = reconciler(&world).run_once().await.unwrap();
    assert_eq!((failed.failed, failed.paid), (1, 0));
    world.gateway.set_down(false);
    let report = reconciler(&world).run_once().await.unwrap();
    assert_eq!(report.paid, 1);
    assert_eq!(
        world.orders.get(order.id).unwrap().status(),
        OrderStatus::Paid
    );
}

#[tokio::test]
async fn customers_that_could_not_be_created_are_created_later() {
    let world = World::new();
    world.gateway.set_down(true);
    let user = world
        .auth()
        .register(RegisterInput {
            email: "late@example.jp".into(),
            password: "correct horse".into(),
            name: None,
        })
        .await
        .unwrap()
        .user;
    assert_eq!(user.stripe_customer_id, None);
    world.gateway.set_down(false);
    let report = reconciler(&world).run_once().await.unwrap();
    assert_eq!(report.customers_created, 1);
    let stored = world.users.find_by_id(user.id).await.unwrap().unwrap();
    assert!(stored.stripe_customer_id.is_some());
}
