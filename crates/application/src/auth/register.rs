use domain::{DisplayName, Email, NewUser, PlainPassword, RepositoryError, ValidationError};

use super::{AuthService, SignedIn};
use crate::UnexpectedError;

#[derive(Debug, Clone)]
pub struct RegisterInput {
    pub email: String,
    pub password: String,
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("this email is already registered")]
    EmailTaken,
    #[error(transparent)]
    Unexpected(#[from] UnexpectedError),
}

impl AuthService {
    /// Creates an account and signs it in.
    ///
    /// The password is hashed before we look at the email, so registering an
    /// existing address takes as long as a new one.
    #[tracing::instrument(skip_all)]
    pub async fn register(&self, input: RegisterInput) -> Result<SignedIn, RegisterError> {
        let email = Email::parse(&input.email)?;
        let password = PlainPassword::parse(input.password)?;
        let name = DisplayName::parse(input.name)?;
        let password_hash = self.hasher.hash(&password).await.map_err(UnexpectedError)?;
        let new_user = NewUser {
            email,
            name,
            password_hash,
        };
        let mut user = match self.users.insert(new_user, self.clock.now()).await {
            Ok(user) => user,
            Err(RepositoryError::EmailTaken) => return Err(RegisterError::EmailTaken),
            Err(other) => return Err(UnexpectedError::from(other).into()),
        };
        tracing::info!(user_id = %user.id, "user registered");
        // Every user gets a Stripe Customer. If Stripe is down the account
        // still exists; the Customer is created when it is first needed.
        match self.customers.ensure(&user).await {
            Ok(customer) => user.stripe_customer_id = Some(customer),
            Err(error) => {
                tracing::warn!(user_id = %user.id, %error, "could not create the Stripe customer now; will retry at checkout");
            }
        }
        Ok(self.open_session(user).await?)
    }
}
