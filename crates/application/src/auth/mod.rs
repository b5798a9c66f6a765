//! Accounts: register, log in, log out, and authenticate a request.

mod authenticate;
mod login;
mod logout;
mod register;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use domain::ports::{SessionRepository, UserRepository};
use domain::{Session, User};

use crate::payments::CustomerAccounts;
use crate::ports::{AccessToken, Clock, PasswordHasher, TokenIssuer};
use crate::UnexpectedError;

pub use authenticate::AuthenticateError;
pub use login::{LoginError, LoginInput};
pub use register::{RegisterError, RegisterInput};

/// A user together with the access token of the session just opened.
#[derive(Debug)]
pub struct SignedIn {
    pub user: User,
    pub token: AccessToken,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct AuthService {
    users: Arc<dyn UserRepository>,
    sessions: Arc<dyn SessionRepository>,
    hasher: Arc<dyn PasswordHasher>,
    tokens: Arc<dyn TokenIssuer>,
    clock: Arc<dyn Clock>,
    session_ttl: Duration,
    customers: CustomerAccounts,
}

impl AuthService {
    pub fn new(
        users: Arc<dyn UserRepository>,
        sessions: Arc<dyn SessionRepository>,
        hasher: Arc<dyn PasswordHasher>,
        tokens: Arc<dyn TokenIssuer>,
        clock: Arc<dyn Clock>,
        session_ttl: Duration,
        customers: CustomerAccounts,
    ) -> Self {
        Self {
            users,
            sessions,
            hasher,
            tokens,
            clock,
            session_ttl,
            customers,
        }
    }

    pub fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    /// Opens a session for `user` and mints its token.
    async fn open_session(&self, user: User) -> Result<SignedIn, UnexpectedError> {
        let now = self.clock.now();
        let session = Session {
            id: self.tokens.new_session_id(),
            user_id: user.id,
            created_at: now,
            expires_at: now + self.session_ttl,
        };
        self.sessions.insert(&session).await?;
        Ok(SignedIn {
            token: self.tokens.issue(&session),
            expires_at: session.expires_at,
            user,
        })
    }
}
