use chrono::{Duration, SubsecRound, Utc};
use domain::{Session, SessionId};
use test_support::Backend;

use crate::{t0, Harness};

backend_tests! {
    single: [
        insert_and_find_active,
        expired_session_is_not_active,
        revoked_session_is_not_active,
        unknown_session_is_none,
        active_session_user_follows_expiry_and_revocation,
    ],
    multi: [],
}

fn assert_same_session(found: &Session, expected: &Session) {
    assert_eq!(found.id, expected.id);
    assert_eq!(found.user_id, expected.user_id);
    assert_eq!(found.created_at, expected.created_at);
    assert_eq!(found.expires_at, expected.expires_at);
}

fn session(id: &str, user: domain::UserId, created_at: chrono::DateTime<Utc>) -> Session {
    Session {
        id: SessionId::new(id),
        user_id: user,
        created_at,
        expires_at: created_at + Duration::hours(12),
    }
}

async fn insert_and_find_active(backend: Backend) {
    let h = Harness::new(backend).await;
    let user = h.user("session@example.jp").await;
    // The clock as the application reads it, cut to what both databases keep.
    let now = Utc::now().trunc_subsecs(6);
    let s = session("sess-0123456789abcdef", user.id, now);
    h.repos.sessions.insert(&s).await.unwrap();

    let found = h
        .repos
        .sessions
        .find_active(&s.id, now + Duration::minutes(1))
        .await
        .unwrap()
        .expect("active session");
    assert_same_session(&found, &s);

    // A second session of the same user is independent.
    let other = session("sess-fedcba9876543210", user.id, now + Duration::seconds(5));
    h.repos.sessions.insert(&other).await.unwrap();
    let found_other = h
        .repos
        .sessions
        .find_active(&other.id, now + Duration::minutes(1))
        .await
        .unwrap()
        .unwrap();
    assert_same_session(&found_other, &other);
    let found = h
        .repos
        .sessions
        .find_active(&s.id, now + Duration::minutes(1))
        .await
        .unwrap()
        .unwrap();
    assert_same_session(&found, &s);
}

async fn expired_session_is_not_active(backend: Backend) {
    let h = Harness::new(backend).await;
    let user = h.user("expiry@example.jp").await;
    let s = session("sess-expiring", user.id, t0());
    h.repos.sessions.insert(&s).await.unwrap();
    let find = |at| {
        let sessions = h.repos.sessions.clone();
        let id = s.id.clone();
        async move { sessions.find_active(&id, at).await.unwrap() }
    };

    assert!(find(s.expires_at - Duration::microseconds(1))
        .await
        .is_some());
    assert!(
        find(s.expires_at).await.is_none(),
        "a session has expired at expires_at"
    );
    assert!(find(s.expires_at + Duration::seconds(1)).await.is_none());
    assert!(find(s.expires_at + Duration::days(30)).await.is_none());
    // Expiry is a matter of `now`, nothing was changed.
    let found = find(s.created_at).await.expect("still active earlier");
    assert_same_session(&found, &s);
}

async fn revoked_session_is_not_active(backend: Backend) {
    let h = Harness::new(backend).await;
    let user = h.user("logout@example.jp").await;
    let sessions = &h.repos.sessions;
    let s = session("sess-to-revoke", user.id, t0());
    let kept = session("sess-to-keep", user.id, t0());
    sessions.insert(&s).await.unwrap();
    sessions.insert(&kept).await.unwrap();
    let during = t0() + Duration::minutes(10);

    sessions
        .revoke(&s.id, t0() + Duration::minutes(5))
        .await
        .unwrap();
    assert!(sessions.find_active(&s.id, during).await.unwrap().is_none());

    // Revoking again is fine and changes nothing.
    sessions
        .revoke(&s.id, t0() + Duration::minutes(6))
        .await
        .unwrap();
    assert!(sessions.find_active(&s.id, during).await.unwrap().is_none());

    // The other session of the same user is still usable.
    let found = sessions
        .find_active(&kept.id, during)
        .await
        .unwrap()
        .expect("other session still active");
    assert_same_session(&found, &kept);

    // Revoking a session that never existed is not an error.
    sessions
        .revoke(&SessionId::new("sess-never-existed"), during)
        .await
        .unwrap();
    assert!(sessions
        .find_active(&kept.id, during)
        .await
        .unwrap()
        .is_some());
}

async fn unknown_session_is_none(backend: Backend) {
    let h = Harness::new(backend).await;
    let sessions = &h.repos.sessions;
    assert!(sessions
        .find_active(&SessionId::new("sess-unknown"), t0())
        .await
        .unwrap()
        .is_none());

    let user = h.user("unknown-session@example.jp").await;
    sessions
        .insert(&session("sess-known", user.id, t0()))
        .await
        .unwrap();
    for id in ["sess-unknown", "sess-know", "sess-known ", "SESS-KNOWN", ""] {
        assert!(
            sessions
                .find_active(&SessionId::new(id), t0() + Duration::minutes(1))
                .await
                .unwrap()
                .is_none(),
            "{id:?} matched sess-known"
        );
    }
}

/// The one-query lookup behind every authenticated request answers exactly
/// as `find_active` followed by `users.find_by_id` would.
async fn active_session_user_follows_expiry_and_revocation(backend: Backend) {
    let h = Harness::new(backend).await;
    let alice = h.user("alice@example.jp").await;
    let bob = h.user("bob@example.jp").await;
    let sessions = &h.repos.sessions;
    let a = session("sess-alice", alice.id, t0());
    let b = session("sess-bob", bob.id, t0());
    sessions.insert(&a).await.unwrap();
    sessions.insert(&b).await.unwrap();
    let during = t0() + Duration::minutes(1);

    let found = sessions
        .find_active_user(&a.id, during)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(format!("{found:?}"), format!("{alice:?}"));
    let found = sessions
        .find_active_user(&b.id, during)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(format!("{found:?}"), format!("{bob:?}"));

    assert!(sessions
        .find_active_user(&a.id, a.expires_at)
        .await
        .unwrap()
        .is_none());
    assert!(sessions
        .find_active_user(&SessionId::new("sess-unknown"), during)
        .await
        .unwrap()
        .is_none());
    sessions.revoke(&a.id, during).await.unwrap();
    assert!(sessions
        .find_active_user(&a.id, during)
        .await
        .unwrap()
        .is_none());
    assert!(sessions
        .find_active_user(&b.id, during)
        .await
        .unwrap()
        .is_some());
}
