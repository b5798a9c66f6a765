use domain::{Order, OrderId, OrderStatus, RepositoryError, UserId, ValidationError};

use super::{OrderService, OwnershipError};
use crate::UnexpectedError;

const MAX_REASON_CHARS: usize = 500;
/// A cancel that lost a race re-reads the order and decides again; a few
/// rounds are enough because every round means the status moved forward.
const MAX_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum CancelOrderError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("order not found")]
    NotFound,
    #[error("this order belongs to another user")]
    PermissionDenied,
    #[error("an order that is {0} cannot be cancelled")]
    CannotCancel(OrderStatus),
    #[error(transparent)]
    Unexpected(#[from] UnexpectedError),
}

impl From<OwnershipError> for CancelOrderError {
    fn from(e: OwnershipError) -> Self {
        match e {
            OwnershipError::NotFound => Self::NotFound,
            OwnershipError::NotYours => Self::PermissionDenied,
            OwnershipError::Unexpected(e) => Self::Unexpected(e),
        }
    }
}

impl OrderService {
    /// Cancels an order that has not been paid.
    #[tracing::instrument(skip_all, fields(user_id = %user, order_id = %id))]
    pub async fn cancel_order(
        &self,
        user: UserId,
        id: OrderId,
        reason: Option<String>,
    ) -> Result<Order, CancelOrderError> {
        let reason = reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
        {
            return Err(ValidationError::new(
                "reason",
                format!("must be at most {MAX_REASON_CHARS} characters"),
            )
            .into());
        }
        for _ in 0..MAX_ATTEMPTS {
            let mut order = self.owned_order(user, id).await?;
            let now = self.clock.now();
            order
                .cancel(now, reason.clone())
                .map_err(|e| CancelOrderError::CannotCancel(e.from))?;
            match self.orders.save_state(&mut order, now).await {
                Ok(()) => {
                    tracing::info!("order cancelled");
                    return Ok(order);
                }
                Err(RepositoryError::Conflict) => continue,
                Err(other) => return Err(UnexpectedError::from(other).into()),
            }
        }
        Err(UnexpectedError(anyhow::anyhow!(
            "order {id} kept changing while it was being cancelled"
        ))
        .into())
    }
}
