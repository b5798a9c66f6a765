use domain::User;

use super::AuthService;
use crate::UnexpectedError;

#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    /// Missing, malformed, forged, expired or revoked: the client is told
    /// only that it must log in.
    #[error("authentication required")]
    Unauthenticated,
    #[error(transparent)]
    Unexpected(#[from] UnexpectedError),
}

impl AuthService {
    /// The user a request's access token belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<User, AuthenticateError> {
        let now = self.clock.now();
        let session_id = self
            .tokens
            .verify(token, now)
            .ok_or(AuthenticateError::Unauthenticated)?;
        self.sessions
            .find_active_user(&session_id, now)
            .await
            .map_err(UnexpectedError::from)?
            .ok_or(AuthenticateError::Unauthenticated)
    }
}
