use super::AuthService;
use crate::UnexpectedError;

impl AuthService {
    /// Revokes the session behind `token`. A token that is already invalid
    /// has nothing to revoke, which is not an error: logging out is idempotent.
    #[tracing::instrument(skip_all)]
    pub async fn logout(&self, token: &str) -> Result<(), UnexpectedError> {
        let now = self.clock.now();
        if let Some(session_id) = self.tokens.verify(token, now) {
            self.sessions.revoke(&session_id, now).await?;
        }
        Ok(())
    }
}
