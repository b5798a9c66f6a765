use domain::{Order, OrderId, UserId};

use super::{OrderService, OwnershipError};
use crate::UnexpectedError;

#[derive(Debug, thiserror::Error)]
pub enum GetOrderError {
    #[error("order not found")]
    NotFound,
    #[error("this order belongs to another user")]
    PermissionDenied,
    #[error(transparent)]
    Unexpected(#[from] UnexpectedError),
}

impl From<OwnershipError> for GetOrderError {
    fn from(e: OwnershipError) -> Self {
        match e {
            OwnershipError::NotFound => Self::NotFound,
            OwnershipError::NotYours => Self::PermissionDenied,
            OwnershipError::Unexpected(e) => Self::Unexpected(e),
        }
    }
}

impl OrderService {
    /// The user's own orders, newest first.
    pub async fn list_orders(&self, user: UserId) -> Result<Vec<Order>, UnexpectedError> {
        Ok(self.orders.list_for_user(user).await?)
    }

    pub async fn get_order(&self, user: UserId, id: OrderId) -> Result<Order, GetOrderError> {
        Ok(self.owned_order(user, id).await?)
    }
}
