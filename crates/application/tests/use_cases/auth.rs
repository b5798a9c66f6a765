use application::auth::{AuthenticateError, LoginError, LoginInput, RegisterError, RegisterInput};
use application::ports::TokenIssuer;
use chrono::Duration;
use domain::{Session, ValidationError};

use crate::support::{assert_injected, session_ttl, t0, World};

const EMAIL: &str = "taro@example.jp";
const PASSWORD: &str = "correct horse battery";

fn registration(email: &str, password: &str, name: Option<&str>) -> RegisterInput {
    RegisterInput {
        email: email.to_string(),
        password: password.to_string(),
        name: name.map(str::to_string),
    }
}

fn credentials(email: &str, password: &str) -> LoginInput {
    LoginInput {
        email: email.to_string(),
        password: password.to_string(),
    }
}

/// A world with one registered user; returns that user's first access token.
async fn registered() -> (World, String) {
    let world = World::new();
    let signed_in = world
        .auth()
        .register(registration(EMAIL, PASSWORD, None))
        .await
        .unwrap();
    (world, signed_in.token.expose().to_string())
}

#[track_caller]
fn assert_invalid(result: Result<impl std::fmt::Debug, RegisterError>, field: &str) {
    match result {
        Err(RegisterError::Invalid(ValidationError { field: f, .. })) => assert_eq!(f, field),
        other => panic!("expected Invalid({field}), got {other:?}"),
    }
}

// ---------------------------------------------------------------- register

#[tokio::test]
async fn register_stores_the_user_and_opens_a_session() {
    let world = World::new();

    let signed_in = world
        .auth()
        .register(registration(
            "  Taro@Example.JP ",
            PASSWORD,
            Some("  山田 太郎 "),
        ))
        .await
        .unwrap();

    let users = world.users.all();
    assert_eq!(users.len(), 1);
    let stored = &users[0];
    assert_eq!(stored.id, signed_in.user.id);
    assert_eq!(stored.email.as_str(), EMAIL);
    assert_eq!(stored.name.as_ref().map(|n| n.as_str()), Some("山田 太郎"));
    assert_eq!(stored.password_hash.as_str(), format!("hashed:{PASSWORD}"));
    assert_eq!(stored.created_at, t0());
    assert_eq!(signed_in.user.email.as_str(), EMAIL);
    assert_eq!(world.hasher.hash_calls(), 1);

    assert_eq!(signed_in.expires_at, t0() + session_ttl());
    let session_id = world
        .tokens
        .verify(signed_in.token.expose(), t0())
        .expect("the token verifies");
    let session = world
        .sessions
        .get(&session_id)
        .expect("a session was stored");
    assert_eq!(session.session.user_id, stored.id);
    assert_eq!(session.session.created_at, t0());
    assert_eq!(session.session.expires_at, t0() + session_ttl());
    assert_eq!(session.revoked_at, None);

    let me = world
        .auth()
        .authenticate(signed_in.token.expose())
        .await
        .unwrap();
    assert_eq!(me.id, stored.id);
}

#[tokio::test]
async fn register_rejects_a_malformed_email() {
    let world = World::new();
    let result = world
        .auth()
        .register(registration("taro.example.jp", PASSWORD, None))
        .await;
    assert_invalid(result, "email");
    assert!(world.users.all().is_empty());
}

#[tokio::test]
async fn register_rejects_a_short_password_before_hashing_it() {
    let world = World::new();
    let result = world
        .auth()
        .register(registration(EMAIL, "1234567", None))
        .await;
    assert_invalid(result, "password");
    assert_eq!(world.hasher.hash_calls(), 0);
    assert!(world.users.all().is_empty());
}

#[tokio::test]
async fn register_rejects_a_name_longer_than_100_characters() {
    let world = World::new();
    let long_name = "名".repeat(101);
    let result = world
        .auth()
        .register(registration(EMAIL, PASSWORD, Some(&long_name)))
        .await;
    assert_invalid(result, "name");
    assert!(world.users.all().is_empty());
}

#[tokio::test]
async fn register_refuses_an_email_that_is_already_taken() {
    let (world, _) = registered().await;

    let result = world
        .auth()
        .register(registration(" TARO@example.JP", "another password", None))
        .await;

    assert!(
        matches!(result, Err(RegisterError::EmailTaken)),
        "{result:?}"
    );
    assert_eq!(world.users.all().len(), 1);
    assert_eq!(world.sessions.count(), 1);
}

#[tokio::test]
async fn register_reports_a_storage_failure_as_unexpected() {
    let world = World::new();
    world.users.failing.set(true);

    let result = world
        .auth()
        .register(registration(EMAIL, PASSWORD, None))
        .await;

    match result {
        Err(RegisterError::Unexpected(e)) => assert_injected(&e),
        other => panic!("expected Unexpected, got {other:?}"),
    }
    assert_eq!(world.sessions.count(), 0);
}

#[tokio::test]
async fn register_reports_a_failing_session_store_as_unexpected() {
    let world = World::new();
    world.sessions.failing.set(true);

    let result = world
        .auth()
        .register(registration(EMAIL, PASSWORD, None))
        .await;

    match result {
        Err(RegisterError::Unexpected(e)) => assert_injected(&e),
        other => panic!("expected Unexpected, got {other:?}"),
    }
}

#[tokio::test]
async fn register_reports_a_hasher_failure_as_unexpected() {
    let world = World::new();
    world.hasher.set_failing(true);

    let result = world
        .auth()
        .register(registration(EMAIL, PASSWORD, None))
        .await;

    assert!(
        matches!(result, Err(RegisterError::Unexpected(_))),
        "{result:?}"
    );
    assert!(world.users.all().is_empty());
}

// ---------------------------------------------------------------- login

#[tokio::test]
async fn login_with_the_right_password_opens_a_new_session() {
    let (world, first_token) = registered().await;
    world.clock.advance(Duration::minutes(5));

    let signed_in = world
        .auth()
        .login(credentials(" Taro@Example.jp ", PASSWORD))
        .await
        .unwrap();

    assert_eq!(signed_in.user.email.as_str(), EMAIL);
    assert_ne!(signed_in.token.expose(), first_token);
    assert_eq!(
        signed_in.expires_at,
        t0() + Duration::minutes(5) + session_ttl()
    );
    assert_eq!(world.sessions.count(), 2);
    assert_eq!(world.hasher.verify_calls(), 1);
    let me = world
        .auth()
        .authenticate(signed_in.token.expose())
        .await
        .unwrap();
    assert_eq!(me.id, signed_in.user.id);
}

#[tokio::test]
async fn login_with_a_wrong_password_is_refused() {
    let (world, _) = registered().await;

    let result = world
        .auth()
        .login(credentials(EMAIL, "wrong password"))
        .await;

    assert!(
        matches!(result, Err(LoginError::InvalidCredentials)),
        "{result:?}"
    );
    assert_eq!(world.hasher.verify_calls(), 1);
    assert_eq!(world.sessions.count(), 1, "no new session");
}

#[tokio::test]
async fn login_with_an_unknown_email_still_verifies_a_password_once() {
    let (world, _) = registered().await;

    let result = world
        .auth()
        .login(credentials("hanako@example.jp", PASSWORD))
        .await;

    assert!(
        matches!(result, Err(LoginError::InvalidCredentials)),
        "{result:?}"
    );
    // Timing equalisation: as much hashing work as for a registered email.
    assert_eq!(world.hasher.verify_calls(), 1);
    assert_eq!(world.sessions.count(), 1, "no new session");
}

#[tokio::test]
async fn login_with_a_malformed_email_is_refused_after_one_verification() {
    let (world, _) = registered().await;

    let result = world
        .auth()
        .login(credentials("not an email", PASSWORD))
        .await;

    assert!(
        matches!(result, Err(LoginError::InvalidCredentials)),
        "{result:?}"
    );
    assert_eq!(world.hasher.verify_calls(), 1);
}

#[tokio::test]
async fn login_reports_a_storage_failure_as_unexpected() {
    let (world, _) = registered().await;
    world.users.failing.set(true);

    let result = world.auth().login(credentials(EMAIL, PASSWORD)).await;

    match result {
        Err(LoginError::Unexpected(e)) => assert_injected(&e),
        other => panic!("expected Unexpected, got {other:?}"),
    }
}

// ---------------------------------------------------------------- authenticate / logout

#[tokio::test]
async fn authenticate_returns_the_token_owner() {
    let (world, token) = registered().await;
    world.clock.advance(session_ttl() - Duration::seconds(1));

    let user = world.auth().authenticate(&token).await.unwrap();

    assert_eq!(user.email.as_str(), EMAIL);
    assert_eq!(user.id, world.users.all()[0].id);
}

#[tokio::test]
async fn authenticate_refuses_a_garbage_token() {
    let (world, _) = registered().await;

    for garbage in ["", "garbage", "tok:", "tok:sess-1", "tok:sess-1:soon"] {
        let result = world.auth().authenticate(garbage).await;
        assert!(
            matches!(result, Err(AuthenticateError::Unauthenticated)),
            "{garbage:?}: {result:?}"
        );
    }
}

#[tokio::test]
async fn authenticate_refuses_an_expired_token() {
    let (world, token) = registered().await;
    world.clock.advance(session_ttl() + Duration::seconds(1));

    let result = world.auth().authenticate(&token).await;

    assert!(
        matches!(result, Err(AuthenticateError::Unauthenticated)),
        "{result:?}"
    );
}

#[tokio::test]
async fn authenticate_refuses_a_live_token_whose_session_expired() {
    let (world, token) = registered().await;
    let session_id = world.tokens.verify(&token, t0()).unwrap();
    // A well-formed token that outlives its session: only the session row can refuse it.
    let long_lived = world.tokens.issue(&Session {
        id: session_id,
        user_id: world.users.all()[0].id,
        created_at: t0(),
        expires_at: t0() + session_ttl() * 10,
    });
    world.clock.advance(session_ttl() + Duration::seconds(1));

    let result = world.auth().authenticate(long_lived.expose()).await;

    assert!(
        matches!(result, Err(AuthenticateError::Unauthenticated)),
        "{result:?}"
    );
}

#[tokio::test]
async fn authenticate_refuses_a_token_after_logout() {
    let (world, token) = registered().await;
    world.clock.advance(Duration::minutes(1));

    world.auth().logout(&token).await.unwrap();
    let result = world.auth().authenticate(&token).await;

    assert!(
        matches!(result, Err(AuthenticateError::Unauthenticated)),
        "{result:?}"
    );
    let session_id = world.tokens.verify(&token, t0()).unwrap();
    let session = world.sessions.get(&session_id).unwrap();
    assert_eq!(session.revoked_at, Some(t0() + Duration::minutes(1)));
}

#[tokio::test]
async fn authenticate_reports_a_storage_failure_as_unexpected() {
    let (world, token) = registered().await;
    world.sessions.failing.set(true);

    let result = world.auth().authenticate(&token).await;

    match result {
        Err(AuthenticateError::Unexpected(e)) => assert_injected(&e),
        other => panic!("expected Unexpected, got {other:?}"),
    }
}

#[tokio::test]
async fn logout_with_a_garbage_token_is_a_no_op() {
    let (world, token) = registered().await;

    world.auth().logout("garbage").await.unwrap();

    assert_eq!(world.sessions.revoked_count(), 0);
    assert!(world.auth().authenticate(&token).await.is_ok());
}

#[tokio::test]
async fn logout_twice_is_fine() {
    let (world, token) = registered().await;

    world.auth().logout(&token).await.unwrap();
    world.auth().logout(&token).await.unwrap();

    assert_eq!(world.sessions.revoked_count(), 1);
}

#[tokio::test]
async fn logout_reports_a_storage_failure_as_unexpected() {
    let (world, token) = registered().await;
    world.sessions.failing.set(true);

    let error = world.auth().logout(&token).await.unwrap_err();

    assert_injected(&error);
}
