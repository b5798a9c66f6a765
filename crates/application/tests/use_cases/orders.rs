use std::collections::BTreeMap;

use application::orders::{
    CancelOrderError, CreateOrderError, CreateOrderInput, GetOrderError, OrderItemInput,
};
use application::ports::payment_gateway::{
    GatewayError, IdempotencyKey, NewPaymentIntent, PaymentGateway, PaymentIntentStatus,
};
use chrono::{Duration, TimeZone, Utc};
use domain::{
    Currency, NewOrder, NewOrderLine, Order, OrderId, OrderNumber, OrderState, OrderStatus,
    Product, Quantity, UserId, ValidationError,
};

use crate::support::{assert_injected, shipping_fee, t0, yen, Op, World};

const ALICE: UserId = UserId::new(1);
const BOB: UserId = UserId::new(2);

/// A world whose catalog holds a ¥5,000 tea and a ¥2,500 set of cups.
fn shop() -> (World, Product, Product) {
    let world = World::new();
    let tea = world.products.add("TEA-01", "Sencha", yen(5000), true);
    let cups = world.products.add("CUP-01", "Tea cups", yen(2500), true);
    (world, tea, cups)
}

fn items(lines: &[(i64, i64)]) -> CreateOrderInput {
    CreateOrderInput {
        items: lines
            .iter()
            .map(|&(product_id, quantity)| OrderItemInput {
                product_id,
                quantity,
            })
            .collect(),
        notes: None,
    }
}

/// Places an order of one `product` for `user`.
async fn place(world: &World, user: UserId, product: &Product) -> Order {
    world
        .order_service()
        .create_order(user, items(&[(product.id.get(), 1)]))
        .await
        .unwrap()
}

/// Stores an order of one `product` for `user`, built with `Order::restore`
/// and moved forward by `advance`, as if another process had done so.
fn seed(world: &World, user: UserId, product: &Product, advance: impl FnOnce(&mut Order)) -> Order {
    let line = NewOrderLine {
        product_id: product.id,
        product_name: product.name.clone(),
        unit_price: product.price,
        quantity: Quantity::new(1).unwrap(),
    };
    let placed = NewOrder::price(user, vec![line], shipping_fee(), None).unwrap();
    let mut order = Order::restore(
        OrderId::new(900),
        OrderNumber::parse("ACQ-241125-900").unwrap(),
        t0(),
        placed,
        OrderState::new_pending(Currency::Jpy),
    );
    advance(&mut order);
    world.orders.put(order.clone());
    order
}

fn paid(order: &mut Order) {
    order.begin_payment("pi_test".to_string()).unwrap();
    order.mark_paid(t0()).unwrap();
}

/// Places an order of one `product` for `user` and gives it a PaymentIntent
/// at the provider, moved to `status`. Returns the stored order and the
/// intent's id.
async fn awaiting_payment(
    world: &World,
    user: UserId,
    product: &Product,
    status: PaymentIntentStatus,
) -> (Order, String) {
    let placed = place(world, user, product).await;
    let intent = world
        .gateway
        .create_payment_intent(
            &NewPaymentIntent {
                amount: placed.total(),
                customer: None,
                metadata: BTreeMap::from([("order_id".to_string(), placed.id.to_string())]),
            },
            &IdempotencyKey::new(format!("test-order-{}", placed.id)),
        )
        .await
        .unwrap();
    world.gateway.set_status(&intent.id, status);
    let mut order = world.orders.get(placed.id).unwrap();
    order.begin_payment(intent.id.clone()).unwrap();
    let version = order.version() + 1;
    let order = order.at_version(version);
    world.orders.put(order.clone());
    (order, intent.id)
}

#[track_caller]
fn assert_invalid(result: Result<Order, CreateOrderError>, field: &str) {
    match result {
        Err(CreateOrderError::Invalid(ValidationError { field: f, .. })) => assert_eq!(f, field),
        other => panic!("expected Invalid({field}), got {other:?}"),
    }
}

// ---------------------------------------------------------------- create_order

#[tokio::test]
async fn create_order_prices_the_order_from_the_catalog() {
    let (world, tea, cups) = shop();
    let mut input = items(&[(tea.id.get(), 2), (cups.id.get(), 2)]);
    input.notes = Some("  gift wrap, please ".to_string());

    let order = world
        .order_service()
        .create_order(ALICE, input)
        .await
        .unwrap();

    assert_eq!(order.placed.subtotal, yen(15_000));
    assert_eq!(order.placed.tax, yen(1_500));
    assert_eq!(order.placed.shipping_fee, shipping_fee());
    assert_eq!(order.total(), yen(15_000 + 1_500 + 800));
    let lines: Vec<(&str, i64, u32, i64)> = order
        .placed
        .lines
        .iter()
        .map(|l| {
            let (name, unit, quantity) = (l.product_name.as_str(), l.unit_price, l.quantity);
            (
                name,
                unit.minor_units(),
                quantity.get(),
                l.subtotal.minor_units(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![("Sencha", 5000, 2, 10_000), ("Tea cups", 2500, 2, 5_000)]
    );
    assert_eq!(order.placed.notes.as_deref(), Some("gift wrap, please"));
    assert_eq!(order.user_id(), ALICE);
    assert_eq!(order.status(), OrderStatus::Pending);
    assert_eq!(order.created_at, t0());
    assert_eq!(world.orders.get(order.id), Some(order));
}

#[tokio::test]
async fn create_order_numbers_orders_by_the_japanese_day() {
    let (world, tea, _) = shop();
    // 2024-11-24T16:00:00Z is 01:00 on the 25th in Japan.
    world
        .clock
        .set(Utc.with_ymd_and_hms(2024, 11, 24, 16, 0, 0).unwrap());

    let first = place(&world, ALICE, &tea).await;
    let second = place(&world, BOB, &tea).await;
    // One second before midnight JST it is still the 24th.
    world
        .clock
        .set(Utc.with_ymd_and_hms(2024, 11, 24, 14, 59, 59).unwrap());
    let late = place(&world, ALICE, &tea).await;

    assert_eq!(first.number.as_str(), "ACQ-241125-001");
    assert_eq!(second.number.as_str(), "ACQ-241125-002");
    assert_eq!(late.number.as_str(), "ACQ-241124-001");
}

#[tokio::test]
async fn create_order_rejects_quantities_outside_1_to_999() {
    let (world, tea, _) = shop();
    for quantity in [0, 1000, -1] {
        let result = world
            .order_service()
            .create_order(ALICE, items(&[(tea.id.get(), quantity)]))
            .await;
        assert_invalid(result, "quantity");
    }
    assert_eq!(world.orders.count(), 0);
}

#[tokio::test]
async fn create_order_rejects_an_empty_order() {
    let (world, _, _) = shop();
    let result = world.order_service().create_order(ALICE, items(&[])).await;
    assert_invalid(result, "items");
    assert_eq!(world.orders.count(), 0);
}

#[tokio::test]
async fn create_order_rejects_more_than_50_lines() {
    let (world, tea, _) = shop();
    let too_many = vec![(tea.id.get(), 1); 51];

    let result = world
        .order_service()
        .create_order(ALICE, items(&too_many))
        .await;

    assert_invalid(result, "items");
    assert_eq!(world.orders.count(), 0);
}

#[tokio::test]
async fn create_order_accepts_exactly_50_lines() {
    let (world, tea, _) = shop();
    let fifty = vec![(tea.id.get(), 1); 50];

    let order = world
        .order_service()
        .create_order(ALICE, items(&fifty))
        .await
        .unwrap();

    assert_eq!(order.placed.lines.len(), 50);
    assert_eq!(order.placed.subtotal, yen(250_000));
}

#[tokio::test]
async fn create_order_rejects_notes_longer_than_1000_characters() {
    let (world, tea, _) = shop();
    let mut input = items(&[(tea.id.get(), 1)]);
    input.notes = Some("あ".repeat(1001));

    let result = world.order_service().create_order(ALICE, input).await;

    assert_invalid(result, "notes");
}

#[tokio::test]
async fn create_order_refuses_an_unknown_product() {
    let (world, tea, _) = shop();

    let result = world
        .order_service()
        .create_order(ALICE, items(&[(tea.id.get(), 1), (999, 1)]))
        .await;

    assert!(
        matches!(result, Err(CreateOrderError::ProductNotFound(999))),
        "{result:?}"
    );
    assert_eq!(world.orders.count(), 0);
}

#[tokio::test]
async fn create_order_refuses_an_inactive_product() {
    let (world, _, _) = shop();
    let retired = world
        .products
        .add("TEA-99", "Retired tea", yen(3000), false);

    let result = world
        .order_service()
        .create_order(ALICE, items(&[(retired.id.get(), 1)]))
        .await;

    match result {
        Err(CreateOrderError::ProductNotFound(id)) => assert_eq!(id, retired.id.get()),
        other => panic!("expected ProductNotFound, got {other:?}"),
    }
    assert_eq!(world.orders.count(), 0);
}

#[tokio::test]
async fn create_order_reports_a_failing_product_store_as_unexpected() {
    let (world, tea, _) = shop();
    world.products.failing.set(true);

    let result = world
        .order_service()
        .create_order(ALICE, items(&[(tea.id.get(), 1)]))
        .await;

    match result {
        Err(CreateOrderError::Unexpected(e)) => assert_injected(&e),
        other => panic!("expected Unexpected, got {other:?}"),
    }
}

#[tokio::test]
async fn create_order_reports_a_failing_order_store_as_unexpected() {
    let (world, tea, _) = shop();
    world.orders.failing.set(true);

    let result = world
        .order_service()
        .create_order(ALICE, items(&[(tea.id.get(), 1)]))
        .await;

    match result {
        Err(CreateOrderError::Unexpected(e)) => assert_injected(&e),
        other => panic!("expected Unexpected, got {other:?}"),
    }
}

// ---------------------------------------------------------------- get_order / list_orders

#[tokio::test]
async fn get_order_returns_the_users_own_order() {
    let (world, tea, _) = shop();
    let placed = place(&world, ALICE, &tea).await;

    let fetched = world
        .order_service()
        .get_order(ALICE, placed.id)
        .await
        .unwrap();

    assert_eq!(fetched, placed);
}

#[tokio::test]
async fn get_order_of_an_unknown_id_is_not_found() {
    let (world, tea, _) = shop();
    place(&world, ALICE, &tea).await;

    let result = world
        .order_service()
        .get_order(ALICE, OrderId::new(404))
        .await;

    assert!(matches!(result, Err(GetOrderError::NotFound)), "{result:?}");
}

#[tokio::test]
async fn get_order_of_another_users_order_is_denied() {
    let (world, tea, _) = shop();
    let alices = place(&world, ALICE, &tea).await;

    let result = world.order_service().get_order(BOB, alices.id).await;

    assert!(
        matches!(result, Err(GetOrderError::PermissionDenied)),
        "{result:?}"
    );
}

#[tokio::test]
async fn get_order_reports_a_storage_failure_as_unexpected() {
    let (world, tea, _) = shop();
    let placed = place(&world, ALICE, &tea).await;
    world.orders.failing.set(true);

    let result = world.order_service().get_order(ALICE, placed.id).await;

    match result {
        Err(GetOrderError::Unexpected(e)) => assert_injected(&e),
        other => panic!("expected Unexpected, got {other:?}"),
    }
}

#[tokio::test]
async fn list_orders_returns_only_the_users_orders_newest_first() {
    let (world, tea, _) = shop();
    let oldest = place(&world, ALICE, &tea).await;
    world.clock.advance(Duration::minutes(30));
    place(&world, BOB, &tea).await;
    world.clock.advance(Duration::minutes(30));
    let middle = place(&world, ALICE, &tea).await;
    world.clock.advance(Duration::minutes(30));
    let newest = place(&world, ALICE, &tea).await;

    let listed = world.order_service().list_orders(ALICE).await.unwrap();

    let ids: Vec<OrderId> = listed.iter().map(|o| o.id).collect();
    assert_eq!(ids, vec![newest.id, middle.id, oldest.id]);
}

#[tokio::test]
async fn list_orders_reports_a_storage_failure_as_unexpected() {
    let world = World::new();
    world.orders.failing.set(true);

    let error = world.order_service().list_orders(ALICE).await.unwrap_err();

    assert_injected(&error);
}

// ---------------------------------------------------------------- cancel_order

#[tokio::test]
async fn cancel_order_cancels_a_pending_order() {
    let (world, tea, _) = shop();
    let placed = place(&world, ALICE, &tea).await;
    world.clock.advance(Duration::minutes(10));

    let cancelled = world
        .order_service()
        .cancel_order(ALICE, placed.id, Some("  changed my mind \n".to_string()))
        .await
        .unwrap();

    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(
        cancelled.state().cancelled_at,
        Some(t0() + Duration::minutes(10))
    );
    assert_eq!(
        cancelled.state().cancel_reason.as_deref(),
        Some("changed my mind")
    );
    assert_eq!(world.orders.get(placed.id), Some(cancelled));
}

#[tokio::test]
async fn cancel_order_drops_a_blank_reason() {
    let (world, tea, _) = shop();
    let placed = place(&world, ALICE, &tea).await;

    let cancelled = world
        .order_service()
        .cancel_order(ALICE, placed.id, Some("   ".to_string()))
        .await
        .unwrap();

    assert_eq!(cancelled.state().cancel_reason, None);
}

#[tokio::test]
async fn cancel_order_cancels_an_order_awaiting_payment() {
    let (world, tea, _) = shop();
    let seeded = seed(&world, ALICE, &tea, |o| {
        o.begin_payment("pi_test".to_string()).unwrap();
    });

    let cancelled = world
        .order_service()
        .cancel_order(ALICE, seeded.id, None)
        .await
        .unwrap();

    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(
        world.orders.get(seeded.id).unwrap().status(),
        OrderStatus::Cancelled
    );
}

#[tokio::test]
async fn cancel_order_refuses_an_order_cancelled_before() {
    let (world, tea, _) = shop();
    let placed = place(&world, ALICE, &tea).await;
    let first = world
        .order_service()
        .cancel_order(ALICE, placed.id, Some("first".to_string()))
        .await
        .unwrap();
    world.clock.advance(Duration::minutes(1));

    let result = world
        .order_service()
        .cancel_order(ALICE, placed.id, Some("second".to_string()))
        .await;

    assert!(
        matches!(
            result,
            Err(CancelOrderError::CannotCancel(OrderStatus::Cancelled))
        ),
        "{result:?}"
    );
    assert_eq!(world.orders.get(placed.id), Some(first), "unchanged");
}

#[tokio::test]
async fn cancel_order_refuses_a_paid_order() {
    let (world, tea, _) = shop();
    let seeded = seed(&world, ALICE, &tea, paid);

    let result = world
        .order_service()
        .cancel_order(ALICE, seeded.id, None)
        .await;

    assert!(
        matches!(
            result,
            Err(CancelOrderError::CannotCancel(OrderStatus::Paid))
        ),
        "{result:?}"
    );
    assert_eq!(world.orders.save_calls(), 0);
    assert_eq!(world.orders.get(seeded.id), Some(seeded));
}

#[tokio::test]
async fn cancel_order_of_an_unknown_id_is_not_found() {
    let world = World::new();

    let result = world
        .order_service()
        .cancel_order(ALICE, OrderId::new(404), None)
        .await;

    assert!(
        matches!(result, Err(CancelOrderError::NotFound)),
        "{result:?}"
    );
}

#[tokio::test]
async fn cancel_order_of_another_users_order_is_denied() {
    let (world, tea, _) = shop();
    let alices = place(&world, ALICE, &tea).await;

    let result = world
        .order_service()
        .cancel_order(BOB, alices.id, None)
        .await;

    assert!(
        matches!(result, Err(CancelOrderError::PermissionDenied)),
        "{result:?}"
    );
    assert_eq!(world.orders.get(alices.id), Some(alices), "unchanged");
}

#[tokio::test]
async fn cancel_order_limits_the_reason_to_500_characters() {
    let (world, tea, _) = shop();
    let placed = place(&world, ALICE, &tea).await;

    let result = world
        .order_service()
        .cancel_order(ALICE, placed.id, Some("x".repeat(501)))
        .await;
    match result {
        Err(CancelOrderError::Invalid(e)) => assert_eq!(e.field, "reason"),
        other => panic!("expected Invalid(reason), got {other:?}"),
    }
    assert_eq!(
        world.orders.get(placed.id).unwrap().status(),
        OrderStatus::Pending
    );

    // Characters, not bytes, and counted after trimming.
    let longest = format!(" {} ", "あ".repeat(500));
    let cancelled = world
        .order_service()
        .cancel_order(ALICE, placed.id, Some(longest))
        .await
        .unwrap();
    assert_eq!(
        cancelled
            .state()
            .cancel_reason
            .as_ref()
            .map(|r| r.chars().count()),
        Some(500)
    );
}

#[tokio::test]
async fn cancel_order_retries_after_a_conflict() {
    let (world, tea, _) = shop();
    let placed = place(&world, ALICE, &tea).await;
    world.orders.inject_conflicts(1);

    let cancelled = world
        .order_service()
        .cancel_order(ALICE, placed.id, None)
        .await
        .unwrap();

    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(world.orders.save_calls(), 2);
    assert_eq!(
        world.orders.get(placed.id).unwrap().status(),
        OrderStatus::Cancelled
    );
}

#[tokio::test]
async fn cancel_order_decides_again_on_the_state_a_concurrent_writer_left() {
    let (world, tea, _) = shop();
    let placed = place(&world, ALICE, &tea).await;
    // A checkout starts between our read and our write: still cancellable.
    world
        .orders
        .interfere_before_next_save(|o| o.begin_payment("pi_race".to_string()).unwrap());

    let cancelled = world
        .order_service()
        .cancel_order(ALICE, placed.id, None)
        .await
        .unwrap();

    assert_eq!(world.orders.save_calls(), 2);
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(
        cancelled.state().payment_intent_id.as_deref(),
        Some("pi_race")
    );
}

#[tokio::test]
async fn cancel_order_loses_to_a_payment_that_completed_meanwhile() {
    let (world, tea, _) = shop();
    let placed = place(&world, ALICE, &tea).await;
    world.orders.interfere_before_next_save(paid);

    let result = world
        .order_service()
        .cancel_order(ALICE, placed.id, None)
        .await;

    assert!(
        matches!(
            result,
            Err(CancelOrderError::CannotCancel(OrderStatus::Paid))
        ),
        "{result:?}"
    );
    assert_eq!(
        world.orders.get(placed.id).unwrap().status(),
        OrderStatus::Paid
    );
}

#[tokio::test]
async fn cancel_order_gives_up_after_three_conflicts() {
    let (world, tea, _) = shop();
    let placed = place(&world, ALICE, &tea).await;
    world.orders.inject_conflicts(usize::MAX);

    let result = world
        .order_service()
        .cancel_order(ALICE, placed.id, None)
        .await;

    match result {
        Err(CancelOrderError::Unexpected(e)) => {
            assert!(e.to_string().contains("kept changing"), "{e}");
        }
        other => panic!("expected Unexpected, got {other:?}"),
    }
    assert_eq!(world.orders.save_calls(), 3);
    assert_eq!(
        world.orders.get(placed.id).unwrap().status(),
        OrderStatus::Pending
    );
}

#[tokio::test]
async fn cancel_order_reports_a_storage_failure_as_unexpected() {
    let (world, tea, _) = shop();
    let placed = place(&world, ALICE, &tea).await;
    world.orders.failing.set(true);

    let result = world
        .order_service()
        .cancel_order(ALICE, placed.id, None)
        .await;

    match result {
        Err(CancelOrderError::Unexpected(e)) => assert_injected(&e),
        other => panic!("expected Unexpected, got {other:?}"),
    }
}

// ---------------------------------------------------------------- cancel_order and the PaymentIntent

#[tokio::test]
async fn cancel_order_of_an_order_without_intent_does_not_call_the_provider() {
    let (world, tea, _) = shop();
    let placed = place(&world, ALICE, &tea).await;

    world
        .order_service()
        .cancel_order(ALICE, placed.id, None)
        .await
        .unwrap();

    assert_eq!(world.gateway.total_calls(), 0);
}

#[tokio::test]
async fn cancel_order_cancels_the_open_intent_at_the_provider_then_the_order() {
    let (world, tea, _) = shop();
    let (order, intent_id) = awaiting_payment(
        &world,
        ALICE,
        &tea,
        PaymentIntentStatus::RequiresPaymentMethod,
    )
    .await;

    let cancelled = world
        .order_service()
        .cancel_order(ALICE, order.id, None)
        .await
        .unwrap();

    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(
        world.gateway.intent(&intent_id).unwrap().status,
        PaymentIntentStatus::Canceled
    );
    assert_eq!(world.gateway.calls_to(Op::CancelIntent), 1);
    let stored = world.orders.get(order.id).unwrap();
    assert_eq!(stored.status(), OrderStatus::Cancelled);
    assert_eq!(stored.state().payment_intent_id, Some(intent_id));
}

#[tokio::test]
async fn cancel_order_cancels_the_order_of_an_intent_cancelled_before() {
    let (world, tea, _) = shop();
    let (order, _) = awaiting_payment(&world, ALICE, &tea, PaymentIntentStatus::Canceled).await;

    let cancelled = world
        .order_service()
        .cancel_order(ALICE, order.id, None)
        .await
        .unwrap();

    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(
        world.orders.get(order.id).unwrap().status(),
        OrderStatus::Cancelled
    );
}

#[tokio::test]
async fn cancel_order_of_a_succeeded_intent_records_the_payment_and_refuses() {
    let (world, tea, _) = shop();
    let (order, intent_id) =
        awaiting_payment(&world, ALICE, &tea, PaymentIntentStatus::Succeeded).await;
    world.clock.advance(Duration::minutes(3));

    let result = world
        .order_service()
        .cancel_order(ALICE, order.id, None)
        .await;

    assert!(
        matches!(
            result,
            Err(CancelOrderError::CannotCancel(OrderStatus::Paid))
        ),
        "{result:?}"
    );
    let stored = world.orders.get(order.id).unwrap();
    assert_eq!(stored.status(), OrderStatus::Paid);
    assert_eq!(stored.state().paid_at, Some(t0() + Duration::minutes(3)));
    assert_eq!(
        world.gateway.intent(&intent_id).unwrap().status,
        PaymentIntentStatus::Succeeded
    );
}

/// Money was taken, but not the order's total: the order is neither paid
/// nor cancellable (it needs review), and the refusal names its status.
#[tokio::test]
async fn cancel_order_of_a_succeeded_intent_of_the_wrong_amount_refuses_and_changes_nothing() {
    let (world, tea, _) = shop();
    let (order, intent_id) =
        awaiting_payment(&world, ALICE, &tea, PaymentIntentStatus::Succeeded).await;
    world.gateway.edit_intent(&intent_id, |i| i.amount -= 1);

    let result = world
        .order_service()
        .cancel_order(ALICE, order.id, None)
        .await;

    assert!(
        matches!(
            result,
            Err(CancelOrderError::CannotCancel(OrderStatus::AwaitingPayment))
        ),
        "{result:?}"
    );
    assert_eq!(world.orders.get(order.id), Some(order));
}

#[tokio::test]
async fn cancel_order_of_a_processing_intent_refuses_and_changes_nothing() {
    let (world, tea, _) = shop();
    let (order, intent_id) =
        awaiting_payment(&world, ALICE, &tea, PaymentIntentStatus::Processing).await;

    let result = world
        .order_service()
        .cancel_order(ALICE, order.id, None)
        .await;

    assert!(
        matches!(
            result,
            Err(CancelOrderError::CannotCancel(OrderStatus::AwaitingPayment))
        ),
        "{result:?}"
    );
    assert_eq!(world.orders.get(order.id), Some(order));
    assert_eq!(world.orders.save_calls(), 0);
    assert_eq!(
        world.gateway.intent(&intent_id).unwrap().status,
        PaymentIntentStatus::Processing
    );
}

#[tokio::test]
async fn cancel_order_while_the_provider_is_down_fails_and_changes_nothing() {
    let (world, tea, _) = shop();
    let (order, intent_id) = awaiting_payment(
        &world,
        ALICE,
        &tea,
        PaymentIntentStatus::RequiresPaymentMethod,
    )
    .await;
    world.gateway.set_down(true);

    let result = world
        .order_service()
        .cancel_order(ALICE, order.id, None)
        .await;

    assert!(
        matches!(
            result,
            Err(CancelOrderError::Provider(GatewayError::Network { .. }))
        ),
        "{result:?}"
    );
    assert_eq!(world.orders.get(order.id), Some(order));
    assert_eq!(world.orders.save_calls(), 0);
    assert_eq!(
        world.gateway.intent(&intent_id).unwrap().status,
        PaymentIntentStatus::RequiresPaymentMethod
    );
}

#[tokio::test]
async fn cancel_order_fails_when_the_provider_refuses_and_cannot_say_why() {
    let (world, tea, _) = shop();
    let (order, _) = awaiting_payment(&world, ALICE, &tea, PaymentIntentStatus::Succeeded).await;
    world.gateway.fail(
        Op::RetrieveIntent,
        1,
        GatewayError::Api {
            status: 503,
            message: "unavailable".into(),
        },
    );

    let result = world
        .order_service()
        .cancel_order(ALICE, order.id, None)
        .await;

    assert!(
        matches!(
            result,
            Err(CancelOrderError::Provider(GatewayError::Api {
                status: 503,
                ..
            }))
        ),
        "{result:?}"
    );
    assert_eq!(world.orders.get(order.id), Some(order));
}

#[tokio::test]
async fn cancel_order_of_an_intent_unknown_to_the_provider_cancels_the_order() {
    let (world, tea, _) = shop();
    let seeded = seed(&world, ALICE, &tea, |o| {
        o.begin_payment("pi_unknown".to_string()).unwrap();
    });

    let cancelled = world
        .order_service()
        .cancel_order(ALICE, seeded.id, None)
        .await
        .unwrap();

    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    // Asked once, and nothing left to cancel.
    assert_eq!(world.gateway.calls_to(Op::RetrieveIntent), 1);
    assert_eq!(world.gateway.calls_to(Op::CancelIntent), 0);
    assert_eq!(
        world.orders.get(seeded.id).unwrap().status(),
        OrderStatus::Cancelled
    );
}

/// Fixed (orders/cancel.rs, `cancel_open_intent`): the cancel's idempotency
/// key names only the order and the intent, and Stripe saves a refused
/// request's answer under its key too. Once a processing payment fails
/// (the intent is open again), cancelling again within 24 h replays the
/// old refusal, and the re-read open intent is taken as "cannot cancel".
#[tokio::test]
async fn cancel_order_succeeds_once_a_processing_payment_failed() {
    let (world, tea, _) = shop();
    let (order, intent_id) =
        awaiting_payment(&world, ALICE, &tea, PaymentIntentStatus::Processing).await;
    let refused = world
        .order_service()
        .cancel_order(ALICE, order.id, None)
        .await;
    assert!(
        matches!(refused, Err(CancelOrderError::CannotCancel(_))),
        "{refused:?}"
    );
    // The bank debit failed: the customer may pay again, or cancel.
    world
        .gateway
        .set_status(&intent_id, PaymentIntentStatus::RequiresPaymentMethod);

    let result = world
        .order_service()
        .cancel_order(ALICE, order.id, None)
        .await;

    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        world.gateway.intent(&intent_id).unwrap().status,
        PaymentIntentStatus::Canceled
    );
}
