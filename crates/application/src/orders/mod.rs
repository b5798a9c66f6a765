//! Orders: place, read and cancel.

mod cancel;
mod create;
mod read;

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use domain::ports::{OrderRepository, ProductRepository};
use domain::{Money, Order, OrderId, UserId};

use crate::payments::Settlement;
use crate::ports::payment_gateway::PaymentGateway;
use crate::ports::Clock;
use crate::UnexpectedError;

pub use cancel::CancelOrderError;
pub use create::{CreateOrderError, CreateOrderInput, OrderItemInput};
pub use read::GetOrderError;

/// Order numbers carry the shop's calendar day. The shop sells in Japan, so
/// the day turns at midnight JST, not UTC.
const SHOP_UTC_OFFSET_SECONDS: i64 = 9 * 3600;

#[derive(Clone)]
pub struct OrderService {
    orders: Arc<dyn OrderRepository>,
    products: Arc<dyn ProductRepository>,
    gateway: Arc<dyn PaymentGateway>,
    settlement: Settlement,
    clock: Arc<dyn Clock>,
    shipping_fee: Money,
}

impl OrderService {
    pub fn new(
        orders: Arc<dyn OrderRepository>,
        products: Arc<dyn ProductRepository>,
        gateway: Arc<dyn PaymentGateway>,
        clock: Arc<dyn Clock>,
        shipping_fee: Money,
    ) -> Self {
        Self {
            settlement: Settlement::new(orders.clone(), clock.clone()),
            orders,
            products,
            gateway,
            clock,
            shipping_fee,
        }
    }

    /// The shop's calendar day at `now`.
    fn shop_day(now: DateTime<Utc>) -> NaiveDate {
        (now + Duration::seconds(SHOP_UTC_OFFSET_SECONDS)).date_naive()
    }

    /// Loads an order and checks it belongs to `user` (404, then 403).
    async fn owned_order(&self, user: UserId, id: OrderId) -> Result<Order, OwnershipError> {
        let order = self
            .orders
            .find_by_id(id)
            .await
            .map_err(UnexpectedError::from)?
            .ok_or(OwnershipError::NotFound)?;
        if !order.is_owned_by(user) {
            return Err(OwnershipError::NotYours);
        }
        Ok(order)
    }
}

enum OwnershipError {
    NotFound,
    NotYours,
    Unexpected(UnexpectedError),
}

impl From<UnexpectedError> for OwnershipError {
    fn from(e: UnexpectedError) -> Self {
        Self::Unexpected(e)
    }
}
