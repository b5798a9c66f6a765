use domain::{DisplayName, Email, RepositoryError, User, UserId};
use test_support::Backend;

use crate::{new_user, t0, Harness, HASH};

backend_tests! {
    single: [
        insert_and_find_round_trip,
        duplicate_email_is_email_taken,
        unknown_user_is_none,
    ],
    multi: [],
}

fn assert_same_user(found: &User, expected: &User) {
    assert_eq!(found.id, expected.id);
    assert_eq!(found.email, expected.email);
    assert_eq!(found.name, expected.name);
    assert_eq!(found.password_hash, expected.password_hash);
    assert_eq!(
        found.password_hash.as_str(),
        expected.password_hash.as_str()
    );
    assert_eq!(found.stripe_customer_id, expected.stripe_customer_id);
    assert_eq!(found.created_at, expected.created_at);
}

async fn insert_and_find_round_trip(backend: Backend) {
    let h = Harness::new(backend).await;
    let users = &h.repos.users;
    let created_at = t0();

    let taro = users
        .insert(
            new_user("  Taro.Yamada@Example.JP ", Some(" 山田 太郎 ")),
            created_at,
        )
        .await
        .unwrap();
    assert!(taro.id.get() > 0);
    assert_eq!(taro.email.as_str(), "taro.yamada@example.jp");
    assert_eq!(
        taro.name.as_ref().map(DisplayName::as_str),
        Some("山田 太郎")
    );
    assert_eq!(taro.password_hash.as_str(), HASH);
    assert_eq!(taro.stripe_customer_id, None);
    // Microseconds survive on both databases.
    assert_eq!(taro.created_at, created_at);

    let by_id = users.find_by_id(taro.id).await.unwrap().expect("by id");
    assert_same_user(&by_id, &taro);
    assert_eq!(by_id.created_at, created_at);

    // Looked up through another spelling of the same address.
    let by_email = users
        .find_by_email(&Email::parse("TARO.YAMADA@example.jp").unwrap())
        .await
        .unwrap()
        .expect("by email");
    assert_same_user(&by_email, &taro);

    // A second user without a name gets its own id and keeps `None`.
    let later = created_at + chrono::Duration::seconds(90);
    let hanako = users
        .insert(new_user("hanako@example.jp", None), later)
        .await
        .unwrap();
    assert_ne!(hanako.id, taro.id);
    assert_eq!(hanako.name, None);
    assert_eq!(hanako.created_at, later);
    let found = users.find_by_id(hanako.id).await.unwrap().unwrap();
    assert_same_user(&found, &hanako);
    assert_eq!(found.name, None);

    // And the first one is still found as before.
    let again = users.find_by_id(taro.id).await.unwrap().unwrap();
    assert_same_user(&again, &taro);
}

async fn duplicate_email_is_email_taken(backend: Backend) {
    let h = Harness::new(backend).await;
    let users = &h.repos.users;
    let first = users
        .insert(new_user("dup@example.jp", Some("First")), t0())
        .await
        .unwrap();

    // Same address after normalisation, different everything else.
    let mut second = new_user(" DUP@Example.jp", Some("Second"));
    second.password_hash = domain::PasswordHash::new("$argon2id$other".into());
    let err = users.insert(second, t0()).await.unwrap_err();
    assert!(
        matches!(err, RepositoryError::EmailTaken),
        "expected EmailTaken, got {err:?}"
    );

    // The stored user is untouched.
    let stored = users
        .find_by_email(&Email::parse("dup@example.jp").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_same_user(&stored, &first);
    assert_eq!(stored.name.as_ref().map(DisplayName::as_str), Some("First"));

    // The failure left the table usable.
    let other = users
        .insert(new_user("other@example.jp", None), t0())
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
}

async fn unknown_user_is_none(backend: Backend) {
    let h = Harness::new(backend).await;
    let users = &h.repos.users;
    let nobody = Email::parse("nobody@example.jp").unwrap();
    assert!(users.find_by_id(UserId::new(1)).await.unwrap().is_none());
    assert!(users.find_by_email(&nobody).await.unwrap().is_none());

    let someone = h.user("someone@example.jp").await;
    assert!(users
        .find_by_id(UserId::new(someone.id.get() + 1))
        .await
        .unwrap()
        .is_none());
    assert!(users.find_by_id(UserId::new(-1)).await.unwrap().is_none());
    assert!(users.find_by_email(&nobody).await.unwrap().is_none());
    // A prefix of a stored address is not a match.
    assert!(users
        .find_by_email(&Email::parse("someone@example.j").unwrap())
        .await
        .unwrap()
        .is_none());
}
