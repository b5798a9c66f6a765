use domain::{Email, PlainPassword};

use super::{AuthService, SignedIn};
use crate::UnexpectedError;

#[derive(Debug, Clone)]
pub struct LoginInput {
    pub email: String,
    pub password: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Deliberately one variant for "no such user" and "wrong password".
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error(transparent)]
    Unexpected(#[from] UnexpectedError),
}

impl AuthService {
    /// Checks the credentials and opens a session. Every path runs one
    /// password verification, so timing does not reveal registered emails.
    #[tracing::instrument(skip_all)]
    pub async fn login(&self, input: LoginInput) -> Result<SignedIn, LoginError> {
        let user = match Email::parse(&input.email) {
            Ok(email) => self
                .users
                .find_by_email(&email)
                .await
                .map_err(UnexpectedError::from)?,
            Err(_) => None,
        };
        let password = PlainPassword::unchecked(input.password);
        let verified = self
            .hasher
            .verify(&password, user.as_ref().map(|u| &u.password_hash))
            .await
            .map_err(UnexpectedError)?;
        match user {
            Some(user) if verified => Ok(self.open_session(user).await?),
            _ => Err(LoginError::InvalidCredentials),
        }
    }
}
