//! The `Store` contract, written once against `Arc<dyn Store>` and run
//! against every backend: SQLite (a file in a temp folder; fast tier) and
//! Cosmos DB (the patched Cosmos-compatible server on loopback, a fresh
//! database per test; full tier).

use chrono::{Duration, Utc};
use dev8::auth::ratelimit::{self, Decision, Limit};
use dev8::domain::{
    AuditOutcome, AuditRecord, Environment, HomeMode, Identity, Lease, NewEnvironment, Session,
    Status, Template, User, new_id,
};
use dev8::quota::{Limits, QuotaError, Slot};
use dev8::store::{
    AuditCursor, CONFLICT_EMAIL, CONFLICT_ENVIRONMENT_NAME, CONFLICT_IDENTITY, SqliteStore, Store,
    StoreError,
};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

type S = Arc<dyn Store>;

/// A SQLite store in `dir` (the test keeps the folder until it ends).
fn sqlite_store(dir: &std::path::Path) -> S {
    Arc::new(SqliteStore::open(&dir.join("dev8.db")).expect("opening SQLite"))
}

/// Every behaviour, run once per backend.
macro_rules! behaviours {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("temp dir");
                    super::$name(super::sqlite_store(dir.path())).await
                }
            )*
        }
        mod cosmos {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "full tier: needs the Cosmos-compatible server"]
                async fn $name() {
                    super::$name(crate::peers::cosmos::cosmos_store().await).await
                }
            )*
        }
    };
}

behaviours!(
    users_email_is_unique_and_deleting_frees_it,
    users_are_updated_in_place,
    sessions_revoke_one_and_all,
    password_hash_is_replaced,
    environment_ids_and_names_conflict,
    repository_dotfiles_and_clone_error_round_trip,
    home_mode_round_trips_and_a_record_without_one_is_a_share,
    environment_names_are_unique_regardless_of_case,
    stale_etag_is_precondition_failed,
    lease_two_writers_one_wins,
    quota_counter_holds_under_contention,
    listing_is_most_recently_used_first,
    active_environments_are_transitional_or_running,
    environments_are_counted_by_status,
    documents_conditional_writes_expiry_and_purge,
    rate_limit_counters,
    identities_are_unique_by_issuer_and_subject,
    audit_records_are_idempotent_per_user_and_paged,
    audit_records_of_one_environment_are_paged_newest_first,
    secrets_are_per_user_by_name_and_replaced_in_place,
);

fn secret(user_id: &str, name: &str, sealed: &str) -> dev8::domain::StoredSecret {
    dev8::domain::StoredSecret {
        user_id: user_id.into(),
        name: name.into(),
        sealed: sealed.into(),
        updated_at: chrono::Utc::now(),
    }
}

async fn secrets_are_per_user_by_name_and_replaced_in_place(s: S) {
    let (a, b) = (new_id(), new_id());
    s.put_secret(&secret(&a, "TOKEN", "v1.one")).await.unwrap();
    s.put_secret(&secret(&a, "API_KEY", "v1.two"))
        .await
        .unwrap();
    s.put_secret(&secret(&b, "TOKEN", "v1.bobs")).await.unwrap();
    // A put of an existing name replaces it: still two, by name.
    s.put_secret(&secret(&a, "TOKEN", "v1.three"))
        .await
        .unwrap();
    let mine = s.secrets(&a).await.unwrap();
    let pairs: Vec<(&str, &str)> = mine
        .iter()
        .map(|x| (x.name.as_str(), x.sealed.as_str()))
        .collect();
    assert_eq!(pairs, [("API_KEY", "v1.two"), ("TOKEN", "v1.three")]);
    assert_eq!(s.secrets(&b).await.unwrap()[0].sealed, "v1.bobs");
    // Only the owner's name is deleted; a missing one is NotFound.
    s.delete_secret(&a, "TOKEN").await.unwrap();
    assert!(matches!(
        s.delete_secret(&a, "TOKEN").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.secrets(&b).await.unwrap().len(), 1);
    assert_eq!(s.secrets(&a).await.unwrap().len(), 1);
    assert!(s.secrets(&new_id()).await.unwrap().is_empty());
}

fn user(email: &str) -> User {
    User {
        id: new_id(),
        email: email.into(),
        name: "Test".into(),
        password_hash: Some("$argon2id$x".into()),
        created_at: Utc::now(),
        unconfirmed: None,
    }
}

fn env(user_id: &str, name: &str) -> Environment {
    let spec = NewEnvironment {
        name: name.into(),
        base_image: Template::Node,
        cpu_cores: 1,
        memory_gb: 2,
        storage_gb: 20,
        idle_timeout_minutes: 30,
        repository: None,
        dotfiles_repository: None,
        home_mode: Default::default(),
    };
    Environment::new(new_id(), user_id.into(), spec, Utc::now())
}

fn session(user_id: &str) -> Session {
    let now = Utc::now();
    Session {
        id: new_id(),
        user_id: user_id.into(),
        created_at: now,
        expires_at: now + Duration::hours(12),
        revoked: false,
    }
}

fn is_conflict(r: Result<impl std::fmt::Debug, StoreError>, what: Option<&str>) -> bool {
    match r {
        Err(StoreError::Conflict(w)) => what.is_none_or(|x| x == w),
        _ => false,
    }
}

async fn users_are_updated_in_place(s: S) {
    let mut a = user("a@example.com");
    a.renew_confirmation(Utc::now());
    s.insert_user(&a).await.unwrap();
    let link = a.unconfirmed.clone().unwrap().link_id;
    assert!(a.confirm(&link, Utc::now()));
    a.name = "Renamed".into();
    s.update_user(&a).await.unwrap();
    let stored = s.user(&a.id).await.unwrap().unwrap();
    assert_eq!(stored, a);
    assert!(stored.is_confirmed());
    assert_eq!(
        s.user_by_email("a@example.com").await.unwrap(),
        Some(a.clone())
    );

    // The email is the unique key: an update cannot move it.
    let mut moved = a.clone();
    moved.email = "b@example.com".into();
    assert!(is_conflict(
        s.update_user(&moved).await,
        Some(CONFLICT_EMAIL)
    ));
    assert_eq!(s.user(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.user_by_email("b@example.com").await.unwrap(), None);

    // A deleted account is not brought back.
    s.delete_user(&a.id).await.unwrap();
    assert!(matches!(s.update_user(&a).await, Err(StoreError::NotFound)));
    assert_eq!(s.user(&a.id).await.unwrap(), None);
    assert_eq!(s.user_by_email("a@example.com").await.unwrap(), None);
}

async fn users_email_is_unique_and_deleting_frees_it(s: S) {
    let a = user("a@example.com");
    s.insert_user(&a).await.unwrap();
    assert_eq!(s.user(&a.id).await.unwrap().as_ref(), Some(&a));
    assert_eq!(
        s.user_by_email("a@example.com").await.unwrap().as_ref(),
        Some(&a)
    );
    assert_eq!(s.user_by_email("b@example.com").await.unwrap(), None);
    assert_eq!(s.user("nobody").await.unwrap(), None);

    let dup = user("a@example.com");
    assert!(
        is_conflict(s.insert_user(&dup).await, Some(CONFLICT_EMAIL)),
        "a duplicate email is a conflict"
    );
    assert_eq!(
        s.user(&dup.id).await.unwrap(),
        None,
        "the losing insert leaves nothing behind"
    );
    let mut same_id = user("c@example.com");
    same_id.id = a.id.clone();
    assert!(
        is_conflict(s.insert_user(&same_id).await, None),
        "a duplicate id is a conflict"
    );
    assert_eq!(s.user_by_email("c@example.com").await.unwrap(), None);

    s.delete_user(&a.id).await.unwrap();
    assert_eq!(s.user(&a.id).await.unwrap(), None);
    assert_eq!(s.user_by_email("a@example.com").await.unwrap(), None);
    s.delete_user(&a.id).await.unwrap();
    let again = user("a@example.com");
    s.insert_user(&again).await.unwrap();
    assert_eq!(
        s.user_by_email("a@example.com")
            .await
            .unwrap()
            .map(|u| u.id),
        Some(again.id)
    );
}

async fn password_hash_is_replaced(s: S) {
    let a = user(&format!("{}@example.com", new_id()));
    s.insert_user(&a).await.unwrap();
    s.set_password_hash(&a.id, "$argon2id$new").await.unwrap();
    let read = s.user(&a.id).await.unwrap().unwrap();
    assert_eq!(read.password_hash.as_deref(), Some("$argon2id$new"));
    assert_eq!(
        (read.email, read.name),
        (a.email.clone(), a.name),
        "nothing else changes"
    );
    assert_eq!(
        s.user_by_email(&a.email)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .as_deref(),
        Some("$argon2id$new")
    );
    assert!(matches!(
        s.set_password_hash(&new_id(), "$argon2id$x").await,
        Err(StoreError::NotFound)
    ));
}

async fn sessions_revoke_one_and_all(s: S) {
    let (s1, s2, s3) = (session("u1"), session("u1"), session("u2"));
    for x in [&s1, &s2, &s3] {
        s.insert_session(x).await.unwrap();
    }
    assert!(
        is_conflict(s.insert_session(&s1).await, None),
        "a duplicate session id is a conflict"
    );
    assert_eq!(s.session(&s1.id).await.unwrap().as_ref(), Some(&s1));
    assert_eq!(s.session("missing").await.unwrap(), None);

    s.revoke_session(&s1.id).await.unwrap();
    assert!(s.session(&s1.id).await.unwrap().unwrap().revoked);
    assert!(!s.session(&s2.id).await.unwrap().unwrap().revoked);
    s.revoke_session("missing").await.unwrap();

    let kept = session("u1");
    s.insert_session(&kept).await.unwrap();
    s.revoke_user_sessions("u1", Some(&kept.id)).await.unwrap();
    assert!(s.session(&s2.id).await.unwrap().unwrap().revoked);
    assert!(
        !s.session(&kept.id).await.unwrap().unwrap().revoked,
        "the session named to keep stays"
    );
    s.revoke_user_sessions("u1", None).await.unwrap();
    assert!(s.session(&kept.id).await.unwrap().unwrap().revoked);
    assert!(
        !s.session(&s3.id).await.unwrap().unwrap().revoked,
        "another user's session stays"
    );
}

async fn environment_ids_and_names_conflict(s: S) {
    let e1 = env("u1", "app");
    let etag = s.insert_environment(&e1).await.unwrap();
    let read = s.environment("u1", &e1.id).await.unwrap().unwrap();
    assert_eq!((&read.value, &read.etag), (&e1, &etag));
    assert_eq!(
        s.environment("u2", &e1.id).await.unwrap(),
        None,
        "another user's id reads as missing"
    );

    assert!(
        is_conflict(
            s.insert_environment(&env("u1", "app")).await,
            Some(CONFLICT_ENVIRONMENT_NAME)
        ),
        "names are unique per user"
    );
    s.insert_environment(&env("u2", "app"))
        .await
        .expect("the same name is fine for another user");
    let mut same_id = env("u1", "other");
    same_id.id = e1.id.clone();
    assert!(
        is_conflict(s.insert_environment(&same_id).await, None),
        "a duplicate id is a conflict"
    );

    let e2 = env("u1", "second");
    let e2_etag = s.insert_environment(&e2).await.unwrap();
    let mut renamed = e2.clone();
    renamed.name = "app".into();
    assert!(
        is_conflict(
            s.replace_environment(&renamed, &e2_etag).await,
            Some(CONFLICT_ENVIRONMENT_NAME)
        ),
        "renaming onto a taken name is a conflict"
    );
    // After deletion the name is free again.
    s.delete_environment("u1", &e1.id, &etag).await.unwrap();
    s.insert_environment(&env("u1", "app"))
        .await
        .expect("a deleted environment's name can be reused");
}

async fn repository_dotfiles_and_clone_error_round_trip(s: S) {
    let mut e = env("u1", "from-repo");
    e.repository = Some(dev8::domain::Repository {
        url: "https://github.com/dev8/app.git".into(),
        git_ref: Some("feature/x".into()),
    });
    e.dotfiles_repository = Some("https://github.com/ada/dotfiles".into());
    let etag = s.insert_environment(&e).await.unwrap();
    let read = s.environment("u1", &e.id).await.unwrap().unwrap();
    assert_eq!(read.value, e);
    assert!(e.note_clone_error("fatal: repository not found"));
    s.replace_environment(&e, &etag).await.unwrap();
    let read = s.environment("u1", &e.id).await.unwrap().unwrap();
    assert_eq!(
        read.value.clone_error.as_deref(),
        Some("fatal: repository not found")
    );
    assert_eq!(read.value, e);
}

/// A record written before home modes existed has no `homeMode`: a share
/// record is written exactly so (the field is left out), and reads back as
/// a share; a snapshot record keeps its mode.
async fn home_mode_round_trips_and_a_record_without_one_is_a_share(s: S) {
    let old = env("u1", "from-before");
    assert_eq!(old.home_mode, HomeMode::Share);
    let doc = serde_json::to_value(&old).unwrap();
    assert!(doc.get("homeMode").is_none(), "{doc}");
    s.insert_environment(&old).await.unwrap();
    let read = s.environment("u1", &old.id).await.unwrap().unwrap();
    assert_eq!(read.value.home_mode, HomeMode::Share);
    let mut new = env("u1", "snapshotted");
    new.home_mode = HomeMode::Snapshot;
    s.insert_environment(&new).await.unwrap();
    let read = s.environment("u1", &new.id).await.unwrap().unwrap();
    assert_eq!(read.value.home_mode, HomeMode::Snapshot);
    assert_eq!(read.value, new);
}

async fn environment_names_are_unique_regardless_of_case(s: S) {
    let user = format!("u-{}", new_id());
    let web = env(&user, "Web-App");
    let web_etag = s.insert_environment(&web).await.unwrap();
    for look_alike in ["web-app", "WEB-APP"] {
        assert!(
            is_conflict(
                s.insert_environment(&env(&user, look_alike)).await,
                Some(CONFLICT_ENVIRONMENT_NAME)
            ),
            "{look_alike} differs from Web-App only in case"
        );
    }
    s.insert_environment(&env(&format!("{user}-other"), "web-app"))
        .await
        .expect("another user may use the name in any case");
    // Unicode lower case, not only ASCII.
    s.insert_environment(&env(&user, "Ärger")).await.unwrap();
    assert!(is_conflict(
        s.insert_environment(&env(&user, "ärger")).await,
        Some(CONFLICT_ENVIRONMENT_NAME)
    ));

    let other = env(&user, "other");
    let other_etag = s.insert_environment(&other).await.unwrap();
    let mut onto = other.clone();
    onto.name = "wEB-aPP".into();
    assert!(
        is_conflict(
            s.replace_environment(&onto, &other_etag).await,
            Some(CONFLICT_ENVIRONMENT_NAME)
        ),
        "renaming onto a look-alike is a conflict"
    );
    let mut recased = web.clone();
    recased.name = "web-app".into();
    let web_etag = s
        .replace_environment(&recased, &web_etag)
        .await
        .expect("an environment may change the case of its own name");
    let mut moved = recased.clone();
    moved.name = "fresh".into();
    let web_etag = s.replace_environment(&moved, &web_etag).await.unwrap();
    let other_etag = s
        .replace_environment(&onto, &other_etag)
        .await
        .expect("a name given up by a rename is free in any case");
    assert!(
        is_conflict(
            s.insert_environment(&env(&user, "FRESH")).await,
            Some(CONFLICT_ENVIRONMENT_NAME)
        ),
        "the new name is held"
    );
    // A write that keeps the name never trips over it.
    let mut touched = onto.clone();
    touched.idle_timeout_minutes = 45;
    let other_etag = s.replace_environment(&touched, &other_etag).await.unwrap();
    s.delete_environment(&user, &other.id, &other_etag)
        .await
        .unwrap();
    s.delete_environment(&user, &web.id, &web_etag)
        .await
        .unwrap();
    s.insert_environment(&env(&user, "WEB-app"))
        .await
        .expect("a deleted environment's name is free in any case");
    s.insert_environment(&env(&user, "Fresh"))
        .await
        .expect("and so is a deleted one's new name");
}

async fn stale_etag_is_precondition_failed(s: S) {
    let mut e = env("u1", "app");
    let v1 = s.insert_environment(&e).await.unwrap();
    e.status = Status::Running;
    let v2 = s.replace_environment(&e, &v1).await.unwrap();
    assert_ne!(v1, v2);
    assert_eq!(
        s.environment("u1", &e.id)
            .await
            .unwrap()
            .unwrap()
            .value
            .status,
        Status::Running
    );

    e.status = Status::Stopping;
    assert!(matches!(
        s.replace_environment(&e, &v1).await,
        Err(StoreError::PreconditionFailed)
    ));
    assert!(matches!(
        s.delete_environment("u1", &e.id, &v1).await,
        Err(StoreError::PreconditionFailed)
    ));
    assert_eq!(
        s.environment("u1", &e.id)
            .await
            .unwrap()
            .unwrap()
            .value
            .status,
        Status::Running,
        "nothing applied"
    );

    s.delete_environment("u1", &e.id, &v2).await.unwrap();
    assert!(matches!(
        s.delete_environment("u1", &e.id, &v2).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.replace_environment(&e, &v2).await,
        Err(StoreError::NotFound)
    ));
}

async fn lease_two_writers_one_wins(s: S) {
    let e = env("u1", "app");
    let etag = s.insert_environment(&e).await.unwrap();
    let take = |owner: &'static str| {
        let (s, mut e, etag) = (s.clone(), e.clone(), etag.clone());
        tokio::spawn(async move {
            e.lease = Some(Lease {
                owner: owner.into(),
                until: Utc::now() + Duration::seconds(30),
            });
            s.replace_environment(&e, &etag).await.map(|_| owner)
        })
    };
    let (a, b) = (take("a"), take("b"));
    let results = [a.await.unwrap(), b.await.unwrap()];
    let winners: Vec<&str> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins: {results:?}");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(StoreError::PreconditionFailed)))
    );
    let stored = s.environment("u1", &e.id).await.unwrap().unwrap();
    assert_eq!(
        stored.value.lease.map(|l| l.owner).as_deref(),
        Some(winners[0])
    );
}

async fn quota_counter_holds_under_contention(s: S) {
    let limits = Limits {
        environments_per_user: 5,
        running_per_user: 5,
        running_total: 50,
    };
    let mut ids = Vec::new();
    for i in 0..20 {
        let e = env("u1", &format!("env-{i}"));
        s.insert_environment(&e).await.unwrap();
        ids.push(e.id);
    }
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (s, id) = (s.clone(), id.clone());
            tokio::spawn(async move {
                limits
                    .reserve(s.as_ref(), "u1", &id, Slot::NewEnvironment, Utc::now())
                    .await
            })
        })
        .collect();
    let mut granted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => granted += 1,
            Err(QuotaError::Exceeded(_)) => {}
            Err(e) => panic!("unexpected quota error: {e:?}"),
        }
    }
    assert_eq!(
        granted, 5,
        "20 parallel reservations never exceed the limit of 5"
    );
    let doc = s
        .document("quota:user:u1")
        .await
        .unwrap()
        .expect("the counter document exists");
    assert_eq!(slots(&doc.value["environments"]), Some(5));
    let global = s
        .document("quota:global")
        .await
        .unwrap()
        .expect("the global counter exists");
    assert_eq!(slots(&global.value["running"]), Some(5));
}

/// How many slots a quota document's set (or id -> time map) holds.
fn slots(v: &serde_json::Value) -> Option<usize> {
    v.as_array()
        .map(Vec::len)
        .or_else(|| v.as_object().map(|o| o.len()))
}

async fn listing_is_most_recently_used_first(s: S) {
    let t0 = Utc::now() - Duration::hours(1);
    let mut old = env("u1", "old");
    old.last_activity_at = t0;
    old.created_at = t0;
    let mut recent = env("u1", "recent");
    recent.last_activity_at = t0 + Duration::minutes(30);
    recent.created_at = t0;
    // Same activity as `old`, created later: comes before it.
    let mut newer = env("u1", "newer");
    newer.last_activity_at = t0;
    newer.created_at = t0 + Duration::minutes(1);
    for e in [&old, &recent, &newer, &env("u2", "someone-else")] {
        s.insert_environment(e).await.unwrap();
    }
    let names: Vec<String> = s
        .environments("u1")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value.name)
        .collect();
    assert_eq!(names, ["recent", "newer", "old"]);

    // Activity moves an environment to the front; ETags in the list are current.
    let listed = s.environments("u1").await.unwrap();
    let mut o = listed
        .iter()
        .find(|v| v.value.name == "old")
        .unwrap()
        .clone();
    o.value.last_activity_at = Utc::now();
    s.replace_environment(&o.value, &o.etag)
        .await
        .expect("the listed ETag is current");
    let names: Vec<String> = s
        .environments("u1")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value.name)
        .collect();
    assert_eq!(names, ["old", "recent", "newer"]);
    assert!(s.environments("nobody").await.unwrap().is_empty());
}

async fn active_environments_are_transitional_or_running(s: S) {
    let mut expected = BTreeSet::new();
    for (i, status) in Status::ALL.into_iter().enumerate() {
        let mut e = env(if i % 2 == 0 { "u1" } else { "u2" }, status.as_str());
        e.status = status;
        s.insert_environment(&e).await.unwrap();
        if status.is_transitional() || status == Status::Running {
            expected.insert(e.id.clone());
        }
    }
    let active = s.active_environments().await.unwrap();
    let got: BTreeSet<String> = active.iter().map(|v| v.value.id.clone()).collect();
    assert_eq!(got, expected);
    // The sweep writes back with the ETags it read.
    let first = &active[0];
    let mut e = first.value.clone();
    e.status = Status::Error;
    s.replace_environment(&e, &first.etag)
        .await
        .expect("a sweep's ETag is current");
    assert_eq!(
        s.active_environments().await.unwrap().len(),
        expected.len() - 1
    );
}

async fn environments_are_counted_by_status(s: S) {
    let count = |counts: Vec<(Status, u64)>, status: Status| {
        counts
            .iter()
            .filter(|(st, _)| *st == status)
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    assert_eq!(
        s.environment_counts()
            .await
            .unwrap()
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>(),
        0
    );
    // Two users (two partitions), three running, one in error.
    for (i, status) in [
        Status::Running,
        Status::Running,
        Status::Error,
        Status::Running,
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = env(if i % 2 == 0 { "u1" } else { "u2" }, &format!("e{i}"));
        e.status = status;
        s.insert_environment(&e).await.unwrap();
    }
    let counts = s.environment_counts().await.unwrap();
    assert_eq!(count(counts.clone(), Status::Running), 3, "{counts:?}");
    assert_eq!(count(counts.clone(), Status::Error), 1, "{counts:?}");
    assert_eq!(count(counts.clone(), Status::Stopped), 0, "{counts:?}");
    let distinct: BTreeSet<&str> = counts.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        distinct.len(),
        counts.len(),
        "one entry per status: {counts:?}"
    );
}

async fn documents_conditional_writes_expiry_and_purge(s: S) {
    let now = Utc::now();
    assert_eq!(s.document("marker").await.unwrap(), None);
    let v1 = s
        .put_document("marker", &json!({"at": 1}), None, None)
        .await
        .unwrap();
    assert!(is_conflict(
        s.put_document("marker", &json!({"at": 2}), None, None)
            .await,
        Some("marker")
    ));
    let v2 = s
        .put_document("marker", &json!({"at": 2}), Some(&v1), None)
        .await
        .unwrap();
    assert!(matches!(
        s.put_document("marker", &json!({"at": 3}), Some(&v1), None)
            .await,
        Err(StoreError::PreconditionFailed)
    ));
    let read = s.document("marker").await.unwrap().unwrap();
    assert_eq!((read.value, read.etag), (json!({"at": 2}), v2));

    // Keys with characters a Cosmos id may not hold.
    let odd = "one-time:a/b?c#d\\e%f";
    s.put_document(odd, &json!(true), None, None).await.unwrap();
    assert_eq!(
        s.document(odd).await.unwrap().map(|v| v.value),
        Some(json!(true))
    );

    // Expiry: purged by the sweep once past.
    s.put_document("soon", &json!(1), None, Some(now + Duration::hours(1)))
        .await
        .unwrap();
    s.put_document("later", &json!(2), None, Some(now + Duration::hours(2)))
        .await
        .unwrap();
    assert!(s.document("soon").await.unwrap().is_some());
    assert_eq!(s.purge_expired_documents(now).await.unwrap(), 0);
    assert_eq!(
        s.purge_expired_documents(now + Duration::minutes(90))
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.document("soon").await.unwrap(), None);
    assert!(s.document("later").await.unwrap().is_some());
    assert!(
        s.document("marker").await.unwrap().is_some(),
        "documents without expiry are never purged"
    );
    assert_eq!(
        s.purge_expired_documents(now + Duration::hours(3))
            .await
            .unwrap(),
        1
    );

    // A document already past its expiry reads as missing and its key can be
    // created again (Cosmos hides it by TTL before it is physically removed).
    s.put_document(
        "gone",
        &json!(1),
        None,
        Some(Utc::now() - Duration::seconds(1)),
    )
    .await
    .unwrap();
    assert_eq!(s.document("gone").await.unwrap(), None);
    s.put_document(
        "gone",
        &json!(2),
        None,
        Some(Utc::now() + Duration::hours(1)),
    )
    .await
    .expect("re-created");
    assert_eq!(
        s.document("gone").await.unwrap().map(|v| v.value),
        Some(json!(2))
    );
}

async fn rate_limit_counters(s: S) {
    let limit = Limit {
        max: 3,
        window: Duration::minutes(1),
    };
    let now = Utc::now();
    for _ in 0..3 {
        assert_eq!(
            ratelimit::hit(s.as_ref(), "signin", "a@example.com", limit, now)
                .await
                .unwrap(),
            Decision::Allowed
        );
    }
    assert!(matches!(
        ratelimit::hit(s.as_ref(), "signin", "a@example.com", limit, now).await.unwrap(),
        Decision::Limited { retry_after_secs } if (1..=60).contains(&retry_after_secs)
    ));
    assert_eq!(
        ratelimit::hit(s.as_ref(), "signin", "b@example.com", limit, now)
            .await
            .unwrap(),
        Decision::Allowed,
        "keys count separately"
    );
    let later = now + Duration::seconds(61);
    assert_eq!(
        ratelimit::hit(s.as_ref(), "signin", "a@example.com", limit, later)
            .await
            .unwrap(),
        Decision::Allowed
    );

    // Parallel hits on one window: exactly `max` get through.
    let limit = Limit {
        max: 5,
        window: Duration::minutes(10),
    };
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                ratelimit::hit(s.as_ref(), "addr", "127.0.0.1", limit, now).await
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() == Decision::Allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5);
}

fn identity(user_id: &str, issuer: &str, subject: &str) -> Identity {
    Identity {
        id: new_id(),
        user_id: user_id.into(),
        provider: "oidc".into(),
        issuer: issuer.into(),
        subject: subject.into(),
        email: Some("a@x.io".into()),
        email_verified: true,
        created_at: Utc::now(),
    }
}

async fn identities_are_unique_by_issuer_and_subject(s: S) {
    let (a, b) = (new_id(), new_id());
    let first = identity(&a, "https://idp.example", "sub-1");
    s.insert_identity(&first).await.unwrap();
    // The same (issuer, subject) for anyone is a conflict; another subject or issuer is not.
    match s
        .insert_identity(&identity(&b, "https://idp.example", "sub-1"))
        .await
    {
        Err(StoreError::Conflict(w)) => assert_eq!(w, CONFLICT_IDENTITY),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let second = identity(&a, "https://idp.example", "sub-2");
    s.insert_identity(&second).await.unwrap();
    s.insert_identity(&identity(&b, "https://other.example", "sub-1"))
        .await
        .unwrap();
    let found = s
        .identity_by_subject("https://idp.example", "sub-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id.as_str(), found.user_id.as_str()),
        (first.id.as_str(), a.as_str())
    );
    assert!(
        s.identity_by_subject("https://idp.example", "nobody")
            .await
            .unwrap()
            .is_none()
    );
    let mine: Vec<String> = s
        .identities(&a)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(mine, vec![first.id.clone(), second.id.clone()]);
    // Another user cannot delete it; the owner can, and then the subject is free again.
    assert!(matches!(
        s.delete_identity(&b, &first.id).await,
        Err(StoreError::NotFound)
    ));
    s.delete_identity(&a, &first.id).await.unwrap();
    assert!(
        s.identity_by_subject("https://idp.example", "sub-1")
            .await
            .unwrap()
            .is_none()
    );
    s.insert_identity(&identity(&b, "https://idp.example", "sub-1"))
        .await
        .unwrap();
}

async fn audit_records_are_idempotent_per_user_and_paged(s: S) {
    let (a, b) = (new_id(), new_id());
    let t0 = Utc::now();
    let record = |user: &str, n: i64| AuditRecord {
        id: format!("rec-{user}-{n}"),
        user_id: user.into(),
        at: t0 + Duration::seconds(n),
        action: "environment.start".into(),
        outcome: AuditOutcome::Success,
        environment_id: Some("e1".into()),
        client_address: Some("127.0.0.1".into()),
        detail: None,
        idle_timeout_minutes: None,
        reason: None,
        desired_state: None,
    };
    for n in 0..5 {
        s.insert_audit(&record(&a, n)).await.unwrap();
    }
    // A redelivered job writes the same id again: success, and no second record.
    s.insert_audit(&record(&a, 4)).await.unwrap();
    s.insert_audit(&record(&b, 9)).await.unwrap();
    let page1 = s.audit_records(&a, None, None, 3).await.unwrap();
    let ids: Vec<&str> = page1.iter().map(|r| r.id.as_str()).collect();
    let (r4, r3, r2) = (
        format!("rec-{a}-4"),
        format!("rec-{a}-3"),
        format!("rec-{a}-2"),
    );
    assert_eq!(
        ids,
        vec![r4.as_str(), r3.as_str(), r2.as_str()],
        "newest first"
    );
    let last = page1.last().unwrap();
    let cursor = AuditCursor {
        at: last.at,
        id: last.id.clone(),
    };
    let page2 = s.audit_records(&a, None, Some(&cursor), 3).await.unwrap();
    assert_eq!(page2.len(), 2);
    assert!(
        page2.iter().all(|r| r.user_id == a),
        "only the caller's records"
    );
    assert_eq!(s.audit_records(&b, None, None, 10).await.unwrap().len(), 1);
}

async fn audit_records_of_one_environment_are_paged_newest_first(s: S) {
    let (a, b) = (new_id(), new_id());
    let (e1, e2) = (new_id(), new_id());
    let t0 = Utc::now();
    let record = |user: &str, env: Option<&str>, n: i64| AuditRecord {
        id: format!("rec-{n:02}"),
        user_id: user.into(),
        at: t0 + Duration::seconds(n),
        action: "environment.start".into(),
        outcome: AuditOutcome::Success,
        environment_id: env.map(str::to_string),
        client_address: None,
        detail: None,
        idle_timeout_minutes: (n == 4).then_some(45),
        reason: None,
        desired_state: None,
    };
    // e1 gets 0, 2, 4, 6; e2 and the account itself the odd ones; another
    // user's records name e1 too (ids are only unique per partition).
    for n in 0..8 {
        let env = match n {
            n if n % 2 == 0 => Some(e1.as_str()),
            1 | 5 => Some(e2.as_str()),
            _ => None,
        };
        s.insert_audit(&record(&a, env, n)).await.unwrap();
    }
    s.insert_audit(&record(&a, Some(&e1), 6)).await.unwrap();
    s.insert_audit(&AuditRecord {
        id: "rec-other".into(),
        ..record(&b, Some(&e1), 9)
    })
    .await
    .unwrap();
    let ids = |rs: &[AuditRecord]| rs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    let page1 = s.audit_records(&a, Some(&e1), None, 3).await.unwrap();
    assert_eq!(ids(&page1), ["rec-06", "rec-04", "rec-02"], "newest first");
    assert_eq!(page1[1].idle_timeout_minutes, Some(45), "fields survive");
    let last = page1.last().unwrap();
    let cursor = AuditCursor {
        at: last.at,
        id: last.id.clone(),
    };
    let page2 = s
        .audit_records(&a, Some(&e1), Some(&cursor), 3)
        .await
        .unwrap();
    assert_eq!(ids(&page2), ["rec-00"]);
    let other = s.audit_records(&a, Some(&e2), None, 10).await.unwrap();
    assert_eq!(ids(&other), ["rec-05", "rec-01"]);
    assert_eq!(s.audit_records(&a, None, None, 10).await.unwrap().len(), 8);
    let bs = s.audit_records(&b, Some(&e1), None, 10).await.unwrap();
    assert_eq!(ids(&bs), ["rec-other"], "only the user's own partition");
    assert!(
        s.audit_records(&a, Some(&new_id()), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The SQLite history query is answered from the (environment, time) index,
/// not by scanning the user's whole log.
#[test]
fn sqlite_reads_an_environment_history_through_its_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dev8.db");
    drop(SqliteStore::open(&path).expect("opening SQLite"));
    let c = rusqlite::Connection::open(&path).unwrap();
    let mut plan = c
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            dev8::store::ENVIRONMENT_AUDIT_SQL
        ))
        .unwrap();
    let rows: Vec<String> = plan
        .query_map(rusqlite::params!["e", "u", "t", "i", 10], |r| r.get(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let plan = rows.join("; ");
    assert!(
        plan.contains("USING INDEX audit_by_environment_recent"),
        "{plan}"
    );
    assert!(!plan.contains("TEMP B-TREE"), "no sort step: {plan}");
}

/// Look-alike names written before names were compared regardless of case
/// (a row put in the file directly, as an older version could) keep working:
/// the environment is read, listed and written with its name unchanged.
#[tokio::test]
async fn sqlite_look_alike_names_from_before_keep_working() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = sqlite_store(dir.path());
    let lower = env("u1", "web-app");
    s.insert_environment(&lower).await.unwrap();
    let mut upper = env("u1", "Web-App");
    let doc = serde_json::to_string(&upper).unwrap();
    let c = rusqlite::Connection::open(dir.path().join("dev8.db")).unwrap();
    c.execute(
        "INSERT INTO environments (id, user_id, name, status, last_activity_at, created_at, version, doc)
         VALUES (?1, 'u1', 'Web-App', 'stopped', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', 1, ?2)",
        rusqlite::params![upper.id, doc],
    )
    .unwrap();
    drop(c);
    assert_eq!(s.environments("u1").await.unwrap().len(), 2);
    upper.idle_timeout_minutes = 60;
    s.replace_environment(&upper, &"1".to_string())
        .await
        .expect("a write that keeps a look-alike name succeeds");
    upper.name = "WEB-APP".into();
    assert!(
        is_conflict(
            s.replace_environment(&upper, &"2".to_string()).await,
            Some(CONFLICT_ENVIRONMENT_NAME)
        ),
        "but a new name is checked"
    );
}
