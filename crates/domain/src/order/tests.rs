use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;

use super::*;

fn yen(v: i64) -> Money {
    Money::new(v, Currency::Jpy).unwrap()
}

fn line(product: i64, price: i64, qty: i64) -> NewOrderLine {
    NewOrderLine {
        product_id: ProductId::new(product),
        product_name: format!("product {product}"),
        unit_price: yen(price),
        quantity: Quantity::new(qty).unwrap(),
    }
}

fn order_in(status_path: &[OrderStatus]) -> Order {
    let placed = NewOrder::price(UserId::new(1), vec![line(1, 1000, 2)], yen(0), None).unwrap();
    let mut order = Order::restore(
        OrderId::new(7),
        OrderNumber::new(NaiveDate::from_ymd_opt(2024, 11, 24).unwrap(), 1).unwrap(),
        Utc.with_ymd_and_hms(2024, 11, 24, 0, 0, 0).unwrap(),
        placed,
        OrderState::new_pending(Currency::Jpy),
    );
    let now = Utc.with_ymd_and_hms(2024, 11, 24, 1, 0, 0).unwrap();
    for step in status_path {
        match step {
            OrderStatus::AwaitingPayment => order.begin_payment("pi_1".into()).unwrap(),
            OrderStatus::Paid => order.mark_paid(now).unwrap(),
            OrderStatus::Refunded => order.record_refunds(order.total()).unwrap(),
            OrderStatus::Cancelled => order.cancel(now, None).unwrap(),
            OrderStatus::Pending => {}
        }
    }
    order
}

#[test]
fn prices_an_order_as_the_shop_does() {
    // The design document's example: ¥15,000 of goods → ¥16,500 with tax.
    let order = NewOrder::price(
        UserId::new(1),
        vec![line(1, 5000, 2), line(2, 2500, 2)],
        yen(0),
        Some("  gift wrap ".into()),
    )
    .unwrap();
    assert_eq!(order.subtotal, yen(15000));
    assert_eq!(order.tax, yen(1500));
    assert_eq!(order.total, yen(16500));
    assert_eq!(order.lines[0].subtotal, yen(10000));
    assert_eq!(order.notes.as_deref(), Some("gift wrap"));
}

#[test]
fn adds_the_shipping_fee_and_rounds_tax_down() {
    let order = NewOrder::price(UserId::new(1), vec![line(1, 999, 1)], yen(500), None).unwrap();
    assert_eq!(order.tax, yen(99));
    assert_eq!(order.total, yen(999 + 99 + 500));
}

#[test]
fn refuses_empty_oversized_and_mixed_currency_orders() {
    assert!(NewOrder::price(UserId::new(1), vec![], yen(0), None).is_err());
    let many: Vec<_> = (0..51).map(|i| line(i, 100, 1)).collect();
    assert!(NewOrder::price(UserId::new(1), many, yen(0), None).is_err());
    let mut usd = line(1, 100, 1);
    usd.unit_price = Money::new(100, Currency::Usd).unwrap();
    assert!(NewOrder::price(UserId::new(1), vec![usd], yen(0), None).is_err());
    let too_much = vec![line(1, Money::MAX_MINOR, 999)];
    assert!(NewOrder::price(UserId::new(1), too_much, yen(0), None).is_err());
    let long_notes = Some("あ".repeat(MAX_NOTES_CHARS + 1));
    assert!(NewOrder::price(UserId::new(1), vec![line(1, 1, 1)], yen(0), long_notes).is_err());
    let nul_notes = Some("gift\0wrap".to_string());
    assert!(NewOrder::price(UserId::new(1), vec![line(1, 1, 1)], yen(0), nul_notes).is_err());
}

#[test]
fn quantity_must_be_between_1_and_999() {
    assert!(Quantity::new(0).is_err());
    assert!(Quantity::new(1000).is_err());
    assert!(Quantity::new(-1).is_err());
    assert!(Quantity::new(i64::MAX).is_err());
    assert_eq!(Quantity::new(999).unwrap().get(), 999);
}

#[test]
fn exactly_the_five_legal_moves_are_allowed() {
    use OrderStatus::*;
    let legal = [
        (Pending, AwaitingPayment),
        (Pending, Cancelled),
        (AwaitingPayment, Paid),
        (AwaitingPayment, Cancelled),
        (Paid, Refunded),
    ];
    for from in OrderStatus::ALL {
        for to in OrderStatus::ALL {
            let expected = legal.contains(&(from, to));
            assert_eq!(from.transition(to).is_ok(), expected, "{from} -> {to}");
        }
    }
}

#[test]
fn final_states_have_no_way_out() {
    for from in OrderStatus::ALL.into_iter().filter(|s| s.is_final()) {
        for to in OrderStatus::ALL {
            assert!(!from.can_become(to), "{from} -> {to}");
        }
    }
}

#[test]
fn status_names_round_trip() {
    for status in OrderStatus::ALL {
        assert_eq!(OrderStatus::parse(status.as_str()).unwrap(), status);
    }
    assert!(OrderStatus::parse("shipped").is_err());
}

#[test]
fn payment_flow_moves_forward() {
    let order = order_in(&[OrderStatus::AwaitingPayment, OrderStatus::Paid]);
    assert_eq!(order.status(), OrderStatus::Paid);
    assert!(order.state().paid_at.is_some());
}

#[test]
fn a_replacement_payment_intent_keeps_the_order_awaiting_payment() {
    let mut order = order_in(&[OrderStatus::AwaitingPayment]);
    order.begin_payment("pi_2".into()).unwrap();
    assert_eq!(order.status(), OrderStatus::AwaitingPayment);
    assert_eq!(order.state().payment_intent_id.as_deref(), Some("pi_2"));
}

#[test]
fn paid_orders_cannot_be_cancelled_or_paid_again() {
    let mut order = order_in(&[OrderStatus::AwaitingPayment, OrderStatus::Paid]);
    assert!(order.cancel(Utc::now(), None).is_err());
    assert!(order.mark_paid(Utc::now()).is_err());
    assert!(order.begin_payment("pi_x".into()).is_err());
    assert_eq!(order.status(), OrderStatus::Paid);
}

#[test]
fn cancelled_orders_stay_cancelled() {
    let mut order = order_in(&[OrderStatus::Cancelled]);
    assert!(order.begin_payment("pi_x".into()).is_err());
    assert!(order.mark_paid(Utc::now()).is_err());
    assert!(order.cancel(Utc::now(), None).is_err());
    assert_eq!(order.status(), OrderStatus::Cancelled);
}

#[test]
fn a_failed_payment_keeps_the_order_payable() {
    let mut order = order_in(&[OrderStatus::AwaitingPayment]);
    let failure = PaymentFailure {
        code: Some("card_declined".into()),
        message: "Your card was declined.".into(),
    };
    order.record_payment_failure(failure.clone()).unwrap();
    assert_eq!(order.status(), OrderStatus::AwaitingPayment);
    assert_eq!(order.state().last_payment_error, Some(failure.clone()));
    let mut paid = order_in(&[OrderStatus::AwaitingPayment, OrderStatus::Paid]);
    assert!(paid.record_payment_failure(failure).is_err());
}

#[test]
fn partial_refunds_add_up_and_a_full_refund_ends_the_order() {
    let mut order = order_in(&[OrderStatus::AwaitingPayment, OrderStatus::Paid]);
    order.record_refunds(yen(500)).unwrap();
    assert_eq!(order.status(), OrderStatus::Paid);
    // A late, smaller running total never lowers what we know.
    order.record_refunds(yen(200)).unwrap();
    assert_eq!(order.state().refunded_amount, yen(500));
    order.record_refunds(order.total()).unwrap();
    assert_eq!(order.status(), OrderStatus::Refunded);
    assert!(order
        .record_refunds(yen(order.total().minor_units() + 1))
        .is_err());
    let mut pending = order_in(&[]);
    assert!(pending.record_refunds(yen(1)).is_err());
}

fn status_strategy() -> impl Strategy<Value = OrderStatus> {
    prop::sample::select(OrderStatus::ALL.to_vec())
}

fn rank(s: OrderStatus) -> u8 {
    match s {
        OrderStatus::Pending => 0,
        OrderStatus::AwaitingPayment => 1,
        OrderStatus::Paid => 2,
        OrderStatus::Refunded | OrderStatus::Cancelled => 3,
    }
}

proptest! {
    #[test]
    fn no_sequence_of_transitions_moves_backwards(steps in prop::collection::vec(status_strategy(), 0..20)) {
        let mut current = OrderStatus::Pending;
        for next in steps {
            if let Ok(moved) = current.transition(next) {
                prop_assert!(rank(moved) > rank(current));
                current = moved;
            }
        }
    }

    #[test]
    fn total_is_subtotal_plus_floor_tax_plus_shipping(
        prices in prop::collection::vec((1i64..100_000, 1i64..=999), 1..=MAX_LINES),
        shipping in 0i64..5_000,
    ) {
        let lines: Vec<_> = prices.iter().enumerate().map(|(i, (p, q))| line(i as i64, *p, *q)).collect();
        let expected_subtotal: i64 = prices.iter().map(|(p, q)| p * q).sum();
        match NewOrder::price(UserId::new(1), lines, yen(shipping), None) {
            Ok(order) => {
                prop_assert_eq!(order.subtotal.minor_units(), expected_subtotal);
                prop_assert_eq!(order.tax.minor_units(), expected_subtotal / 10);
                prop_assert_eq!(order.total.minor_units(), expected_subtotal + expected_subtotal / 10 + shipping);
            }
            Err(_) => prop_assert!(expected_subtotal + expected_subtotal / 10 + shipping > Money::MAX_MINOR),
        }
    }
}
