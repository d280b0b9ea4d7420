//! Quotas: environments per user, running environments per user and in total.
//! Kept as small documents of reservations (id -> when reserved) updated with
//! conditional writes through the `Store`, so parallel requests on any
//! backend and any number of instances can never exceed them. Adding or
//! removing an id is idempotent. When a limit is reached, reservations older
//! than `PRUNE_AFTER` whose environment no longer needs the slot are pruned,
//! so a crash between a reservation and its use heals itself; younger ones
//! may belong to a request still in flight and are left alone.

use crate::domain::DesiredState;
use crate::store::update::{Change, Retries, update_document};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A reservation this old without its environment is a leftover.
pub const PRUNE_AFTER: Duration = Duration::minutes(2);

type Reservations = BTreeMap<String, DateTime<Utc>>;

/// What a reservation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A new environment: an environment slot and a running slot.
    NewEnvironment,
    /// An existing environment being started: a running slot.
    Running,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub environments_per_user: usize,
    pub running_per_user: usize,
    pub running_total: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("{0}")]
    Exceeded(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserSlots {
    #[serde(default)]
    environments: Reservations,
    #[serde(default)]
    running: Reservations,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct GlobalSlots {
    /// `userId/environmentId` entries.
    #[serde(default)]
    running: Reservations,
}

const GLOBAL_KEY: &str = "quota:global";

fn user_key(user_id: &str) -> String {
    format!("quota:user:{user_id}")
}

/// Read-modify-write a slots document (`store::update`); `f` says whether
/// it changed anything.
async fn update<T, F>(store: &dyn Store, key: &str, mut f: F) -> Result<(), QuotaError>
where
    T: Default + Serialize + serde::de::DeserializeOwned + Send,
    F: FnMut(&mut T) -> Result<bool, QuotaError> + Send,
{
    let change = |slots: &mut T| f(slots).map(Change::from);
    update_document(store, key, Retries::HOT_DOCUMENT, change, |_| None).await
}

/// Does environment `id` of `user` still hold its slot (exists; and, for a
/// running slot, still wants to run)?
async fn still_needs(
    store: &dyn Store,
    user: &str,
    id: &str,
    running: bool,
) -> Result<bool, StoreError> {
    Ok(match store.environment(user, id).await? {
        None => false,
        Some(v) => !running || v.value.desired_state == DesiredState::Running,
    })
}

/// Reservations found to be leftovers, to remove before trying again.
#[derive(Debug, Default)]
struct Stale {
    environments: Vec<String>,
    running: Vec<String>,
}

impl Stale {
    /// Remove these ids; did anything go?
    fn remove_from(&self, environments: &mut Reservations, running: &mut Reservations) -> bool {
        let a = remove_all(environments, &self.environments);
        let b = remove_all(running, &self.running);
        a || b
    }
}

/// Remove every one of `ids`; did any go?
fn remove_all(slots: &mut Reservations, ids: &[String]) -> bool {
    let before = slots.len();
    for id in ids {
        slots.remove(id);
    }
    slots.len() != before
}

async fn read_slots<T: Default + serde::de::DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<T, StoreError> {
    Ok(match store.document(key).await? {
        Some(v) => serde_json::from_value(v.value).unwrap_or_default(),
        None => T::default(),
    })
}

async fn prune_user(
    store: &dyn Store,
    user: &str,
    slots: &UserSlots,
    now: DateTime<Utc>,
) -> Result<Stale, StoreError> {
    let mut stale = Stale::default();
    for (id, at) in &slots.environments {
        if *at + PRUNE_AFTER < now && !still_needs(store, user, id, false).await? {
            stale.environments.push(id.clone());
        }
    }
    for (id, at) in &slots.running {
        if *at + PRUNE_AFTER < now && !still_needs(store, user, id, true).await? {
            stale.running.push(id.clone());
        }
    }
    Ok(stale)
}

impl Limits {
    /// Reserve what `slot` needs: the user's slots first, then the
    /// platform-wide one; if that is full, the user's slots taken here go back.
    pub async fn reserve(
        &self,
        store: &dyn Store,
        user: &str,
        id: &str,
        slot: Slot,
        now: DateTime<Utc>,
    ) -> Result<(), QuotaError> {
        let new_env = slot == Slot::NewEnvironment;
        self.reserve_user(store, user, id, new_env, now).await?;
        if let Err(e) = self.reserve_global(store, user, id, now).await {
            update::<UserSlots, _>(store, &user_key(user), |s| {
                let running = s.running.remove(id).is_some();
                Ok((new_env && s.environments.remove(id).is_some()) || running)
            })
            .await
            .ok();
            return Err(e);
        }
        Ok(())
    }

    /// Reserve the user's slots; when over a limit, drop slots held by
    /// environments that are gone (older than `PRUNE_AFTER`) and try once more.
    async fn reserve_user(
        &self,
        store: &dyn Store,
        user: &str,
        id: &str,
        new_env: bool,
        now: DateTime<Utc>,
    ) -> Result<(), QuotaError> {
        let key = user_key(user);
        let first = self
            .try_reserve_user(store, &key, id, new_env, now, &Stale::default())
            .await;
        if !matches!(first, Err(QuotaError::Exceeded(_))) {
            return first;
        }
        let slots: UserSlots = read_slots(store, &key).await?;
        let stale = prune_user(store, user, &slots, now).await?;
        if stale.environments.is_empty() && stale.running.is_empty() {
            return first;
        }
        self.try_reserve_user(store, &key, id, new_env, now, &stale)
            .await
    }

    async fn try_reserve_user(
        &self,
        store: &dyn Store,
        key: &str,
        id: &str,
        new_env: bool,
        now: DateTime<Utc>,
        stale: &Stale,
    ) -> Result<(), QuotaError> {
        update::<UserSlots, _>(store, key, |s| {
            let pruned = stale.remove_from(&mut s.environments, &mut s.running);
            let has_env = s.environments.contains_key(id);
            let has_run = s.running.contains_key(id);
            if new_env && !has_env && s.environments.len() >= self.environments_per_user {
                return Err(QuotaError::Exceeded(format!(
                    "you already have {} environments; delete one first",
                    self.environments_per_user
                )));
            }
            if !has_run && s.running.len() >= self.running_per_user {
                return Err(QuotaError::Exceeded(format!(
                    "you already have {} running environments; stop one first",
                    self.running_per_user
                )));
            }
            if new_env {
                s.environments.entry(id.to_string()).or_insert(now);
            }
            s.running.entry(id.to_string()).or_insert(now);
            Ok(pruned || !(has_run && (has_env || !new_env)))
        })
        .await
    }

    /// Reserve the platform-wide running slot; when full, drop entries of
    /// environments that no longer need one and try once more.
    async fn reserve_global(
        &self,
        store: &dyn Store,
        user: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), QuotaError> {
        let entry = format!("{user}/{id}");
        let first = self.try_reserve_global(store, &entry, now, &[]).await;
        if !matches!(first, Err(QuotaError::Exceeded(_))) {
            return first;
        }
        let slots: GlobalSlots = read_slots(store, GLOBAL_KEY).await?;
        let mut stale = Vec::new();
        for (e, at) in &slots.running {
            let (u, i) = e.split_once('/').unwrap_or((e, ""));
            if *at + PRUNE_AFTER < now && !still_needs(store, u, i, true).await? {
                stale.push(e.clone());
            }
        }
        if stale.is_empty() {
            return first;
        }
        self.try_reserve_global(store, &entry, now, &stale).await
    }

    async fn try_reserve_global(
        &self,
        store: &dyn Store,
        entry: &str,
        now: DateTime<Utc>,
        stale: &[String],
    ) -> Result<(), QuotaError> {
        update::<GlobalSlots, _>(store, GLOBAL_KEY, |s| {
            let pruned = remove_all(&mut s.running, stale);
            if s.running.contains_key(entry) {
                return Ok(pruned);
            }
            if s.running.len() >= self.running_total {
                return Err(QuotaError::Exceeded(
                    "the platform is at its limit of running environments; try again later".into(),
                ));
            }
            s.running.insert(entry.to_string(), now);
            Ok(true)
        })
        .await
    }

    /// Give back the running slot (and with `forget`, the environment slot).
    pub async fn release(
        &self,
        store: &dyn Store,
        user: &str,
        id: &str,
        forget: bool,
    ) -> Result<(), QuotaError> {
        update::<UserSlots, _>(store, &user_key(user), |s| {
            let a = s.running.remove(id).is_some();
            let b = forget && s.environments.remove(id).is_some();
            Ok(a || b)
        })
        .await?;
        let entry = format!("{user}/{id}");
        update::<GlobalSlots, _>(store, GLOBAL_KEY, |s| {
            Ok(s.running.remove(&entry).is_some())
        })
        .await
    }
}
