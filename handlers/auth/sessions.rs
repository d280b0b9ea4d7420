//! The verified-session cache: what `http::extract::resolve_session`
//! learned about a session token (its signature, its server-side session,
//! its user), kept for at most `REVOCATION_DELAY`, keyed by the whole token.
//! A hit costs no signature check and no store read, so an authenticated
//! read does one store round trip (its own query).
//!
//! The price is a bounded delay: a session revoked or an account deleted on
//! *another* instance (another Functions worker) is still accepted here for
//! at most `REVOCATION_DELAY`. On this instance, sign-out and account
//! deletion call `forget_session` / `forget_user` after the store's
//! revocation, which takes effect at once; a lookup that began before the
//! revocation cannot put its stale answer back (the generation check in
//! `put`). Entries never outlive the session's expiry or the token's `exp`.

use crate::domain::User;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a verified session is believed without asking the store again:
/// the longest a revocation on another instance takes to reach this one.
pub const REVOCATION_DELAY: Duration = Duration::seconds(5);

/// At most this many tokens are remembered; beyond it, expired entries are
/// dropped, and if none were, the whole cache is (it refills on demand).
pub const MAX_ENTRIES: usize = 10_000;

struct Entry {
    user: User,
    session_id: String,
    /// When the store last confirmed the session (the platform clock).
    confirmed_at: DateTime<Utc>,
    /// The server-side session's expiry (the platform clock).
    session_expires_at: DateTime<Utc>,
    /// The token's `exp` plus the verification leeway, in wall-clock seconds
    /// (the JWT check uses the wall clock too).
    token_valid_until: i64,
}

impl Entry {
    fn live(&self, now: DateTime<Utc>, wall_now: i64) -> bool {
        self.confirmed_at <= now
            && now < self.confirmed_at + REVOCATION_DELAY
            && now < self.session_expires_at
            && wall_now < self.token_valid_until
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Bumped by every `forget_*`: a `put` from a lookup that started before
    /// a revocation is dropped.
    generation: u64,
}

/// See the module documentation.
#[derive(Default)]
pub struct SessionCache {
    inner: Mutex<Inner>,
}

/// What a lookup needs to hand back to `put`.
#[derive(Debug, Clone, Copy)]
pub struct Generation(u64);

/// A verified session, ready to be cached.
pub struct Verified<'a> {
    pub token: &'a str,
    pub user: &'a User,
    pub session_id: &'a str,
    pub session_expires_at: DateTime<Utc>,
    /// The token's `exp` claim (seconds since the epoch).
    pub token_exp: i64,
}

impl SessionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a map that is still valid.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user and session id of a token verified less than
    /// `REVOCATION_DELAY` ago and still live, or `None` with the generation
    /// to hand to `put` after asking the store.
    pub fn get(&self, token: &str, now: DateTime<Utc>) -> Result<(User, String), Generation> {
        let wall_now = Utc::now().timestamp();
        let inner = self.lock();
        match inner.entries.get(token) {
            Some(e) if e.live(now, wall_now) => Ok((e.user.clone(), e.session_id.clone())),
            _ => Err(Generation(inner.generation)),
        }
    }

    /// Remember a session the store just confirmed, unless something was
    /// revoked since the lookup that began at `generation`.
    pub fn put(&self, seen: Generation, v: Verified<'_>, now: DateTime<Utc>) {
        let mut inner = self.lock();
        if inner.generation != seen.0 {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES && !inner.entries.contains_key(v.token) {
            let wall_now = Utc::now().timestamp();
            inner.entries.retain(|_, e| e.live(now, wall_now));
            if inner.entries.len() >= MAX_ENTRIES {
                inner.entries.clear();
            }
        }
        inner.entries.insert(
            v.token.to_string(),
            Entry {
                user: v.user.clone(),
                session_id: v.session_id.to_string(),
                confirmed_at: now,
                session_expires_at: v.session_expires_at,
                token_valid_until: v
                    .token_exp
                    .saturating_add(super::tokens::LEEWAY_SECONDS as i64),
            },
        );
    }

    /// Forget every token of this session (sign-out on this instance).
    pub fn forget_session(&self, session_id: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.retain(|_, e| e.session_id != session_id);
    }

    /// Forget every token of this user (account deletion on this instance).
    pub fn forget_user(&self, user_id: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.retain(|_, e| e.user.id != user_id);
    }

    /// How many tokens are remembered (tests, diagnostics).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            email: format!("{id}@example.com"),
            name: id.into(),
            password_hash: None,
            created_at: Utc::now(),
            unconfirmed: None,
        }
    }

    fn verified<'a>(token: &'a str, u: &'a User, sid: &'a str, now: DateTime<Utc>) -> Verified<'a> {
        Verified {
            token,
            user: u,
            session_id: sid,
            session_expires_at: now + Duration::hours(1),
            token_exp: (Utc::now() + Duration::hours(1)).timestamp(),
        }
    }

    #[test]
    fn a_hit_lasts_at_most_the_revocation_delay() {
        let cache = SessionCache::default();
        let now = Utc::now();
        let u = user("u1");
        let g = cache.get("t", now).unwrap_err();
        cache.put(g, verified("t", &u, "s1", now), now);
        assert_eq!(cache.get("t", now).unwrap().1, "s1");
        let almost = now + REVOCATION_DELAY - Duration::milliseconds(1);
        assert!(cache.get("t", almost).is_ok());
        assert!(cache.get("t", now + REVOCATION_DELAY).is_err());
        assert!(
            cache.get("t", now - Duration::seconds(1)).is_err(),
            "clock moved back"
        );
    }

    #[test]
    fn forgetting_is_immediate_and_beats_a_lookup_in_flight() {
        let cache = SessionCache::default();
        let now = Utc::now();
        let (a, b) = (user("a"), user("b"));
        let g = cache.get("ta", now).unwrap_err();
        cache.put(g, verified("ta", &a, "sa", now), now);
        let g = cache.get("tb", now).unwrap_err();
        cache.put(g, verified("tb", &b, "sb", now), now);
        cache.forget_session("sa");
        assert!(cache.get("ta", now).is_err());
        assert!(cache.get("tb", now).is_ok());
        cache.forget_user("b");
        assert!(cache.get("tb", now).is_err());
        // A lookup that started before a revocation does not cache its answer.
        let g = cache.get("ta", now).unwrap_err();
        cache.forget_session("other");
        cache.put(g, verified("ta", &a, "sa", now), now);
        assert!(cache.get("ta", now).is_err());
    }

    #[test]
    fn never_past_the_session_or_token_expiry() {
        let cache = SessionCache::default();
        let now = Utc::now();
        let u = user("u");
        let mut v = verified("t", &u, "s", now);
        v.session_expires_at = now + Duration::seconds(1);
        let g = cache.get("t", now).unwrap_err();
        cache.put(g, v, now);
        assert!(cache.get("t", now + Duration::seconds(1)).is_err());
        let mut v = verified("t2", &u, "s", now);
        v.token_exp = Utc::now().timestamp() - 60;
        let g = cache.get("t2", now).unwrap_err();
        cache.put(g, v, now);
        assert!(cache.get("t2", now).is_err());
    }

    #[test]
    fn bounded() {
        let cache = SessionCache::default();
        let now = Utc::now();
        let u = user("u");
        for i in 0..MAX_ENTRIES + 10 {
            let t = format!("t{i}");
            let g = cache.get(&t, now).unwrap_err();
            cache.put(g, verified(&t, &u, "s", now), now);
        }
        assert!(cache.len() <= MAX_ENTRIES);
    }
}
