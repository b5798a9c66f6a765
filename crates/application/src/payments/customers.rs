use std::collections::BTreeMap;
use std::sync::Arc;

use domain::ports::UserRepository;
use domain::User;

use crate::ports::payment_gateway::{GatewayError, IdempotencyKey, NewCustomer, PaymentGateway};
use crate::UnexpectedError;

#[derive(Debug, thiserror::Error)]
pub enum EnsureCustomerError {
    #[error(transparent)]
    Provider(#[from] GatewayError),
    #[error(transparent)]
    Unexpected(#[from] UnexpectedError),
}

/// Gives every user exactly one Stripe Customer.
///
/// The idempotency key is the user's id, so concurrent or retried creations
/// get the same Customer from Stripe; the database keeps the first id
/// recorded, so even a provider that ignores idempotency keys cannot leave
/// a user with two.
#[derive(Clone)]
pub struct CustomerAccounts {
    users: Arc<dyn UserRepository>,
    gateway: Arc<dyn PaymentGateway>,
}

impl CustomerAccounts {
    pub fn new(users: Arc<dyn UserRepository>, gateway: Arc<dyn PaymentGateway>) -> Self {
        Self { users, gateway }
    }

    /// The user's Customer id, creating the Customer if there is none yet.
    #[tracing::instrument(skip_all, fields(user_id = %user.id))]
    pub async fn ensure(&self, user: &User) -> Result<String, EnsureCustomerError> {
        if let Some(id) = &user.stripe_customer_id {
            return Ok(id.clone());
        }
        // Another request may have created it since `user` was read.
        if let Some(id) = self
            .users
            .find_by_id(user.id)
            .await
            .map_err(UnexpectedError::from)?
            .and_then(|u| u.stripe_customer_id)
        {
            return Ok(id);
        }
        let request = NewCustomer {
            email: user.email.to_string(),
            name: user.name.as_ref().map(|n| n.as_str().to_string()),
            metadata: BTreeMap::from([("kessai_user_id".to_string(), user.id.to_string())]),
        };
        let key = IdempotencyKey::new(format!("kessai-user-{}-customer", user.id));
        let customer = self.gateway.create_customer(&request, &key).await?;
        let recorded = self
            .users
            .set_stripe_customer(user.id, &customer.id)
            .await
            .map_err(UnexpectedError::from)?;
        if recorded != customer.id {
            tracing::warn!(
                unused_customer = %customer.id,
                customer = %recorded,
                "another request recorded a Customer first; this one stays unused"
            );
        } else {
            tracing::info!(customer = %recorded, "stripe customer created");
        }
        Ok(recorded)
    }
}
