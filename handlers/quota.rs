//! Quotas: environments per user, running environments per user and in total.
//! Kept as small id-set documents updated with conditional writes through the
//! `Store`, so parallel requests on any backend and any number of instances
//! can never exceed them. Adding or removing an id is idempotent; ids whose
//! environment no longer needs the slot are pruned when a limit is reached,
//! so a crash between a reservation and its use heals itself.

use crate::domain::DesiredState;
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

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
    environments: BTreeSet<String>,
    #[serde(default)]
    running: BTreeSet<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct GlobalSlots {
    /// `userId/environmentId` entries.
    #[serde(default)]
    running: BTreeSet<String>,
}

const GLOBAL_KEY: &str = "quota:global";

fn user_key(user_id: &str) -> String {
    format!("quota:user:{user_id}")
}

/// Read-modify-write a document until the conditional write lands.
async fn update<T, F>(store: &dyn Store, key: &str, mut f: F) -> Result<(), QuotaError>
where
    T: Default + Serialize + serde::de::DeserializeOwned,
    F: FnMut(&mut T) -> Result<bool, QuotaError>,
{
    for attempt in 0..200u32 {
        let current = store.document(key).await?;
        let mut value: T = match &current {
            Some(v) => serde_json::from_value(v.value.clone()).unwrap_or_default(),
            None => T::default(),
        };
        if !f(&mut value)? {
            return Ok(());
        }
        let json = serde_json::to_value(&value).expect("slots serialise");
        match store
            .put_document(key, &json, current.as_ref().map(|c| &c.etag), None)
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::PreconditionFailed | StoreError::Conflict(_)) => {
                // Lost a race: back off a little (jittered) and read again.
                let jitter = rand::random::<u64>() % (2 + u64::from(attempt.min(20)));
                tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Unavailable(anyhow::anyhow!("quota document {key} too contended")).into())
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

async fn prune_user(
    store: &dyn Store,
    user: &str,
    slots: &UserSlots,
) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let mut stale_envs = Vec::new();
    let mut stale_running = Vec::new();
    for id in &slots.environments {
        if !still_needs(store, user, id, false).await? {
            stale_envs.push(id.clone());
        }
    }
    for id in &slots.running {
        if !still_needs(store, user, id, true).await? {
            stale_running.push(id.clone());
        }
    }
    Ok((stale_envs, stale_running))
}

impl Limits {
    /// Reserve an environment slot (and a running slot) for a new environment.
    pub async fn reserve_new(
        &self,
        store: &dyn Store,
        user: &str,
        id: &str,
    ) -> Result<(), QuotaError> {
        self.reserve_user(store, user, id, true).await?;
        if let Err(e) = self.reserve_global(store, user, id).await {
            self.release(store, user, id, true).await.ok();
            return Err(e);
        }
        Ok(())
    }

    /// Reserve a running slot for an existing environment being started.
    pub async fn reserve_running(
        &self,
        store: &dyn Store,
        user: &str,
        id: &str,
    ) -> Result<(), QuotaError> {
        self.reserve_user(store, user, id, false).await?;
        if let Err(e) = self.reserve_global(store, user, id).await {
            update::<UserSlots, _>(store, &user_key(user), |s| Ok(s.running.remove(id)))
                .await
                .ok();
            return Err(e);
        }
        Ok(())
    }

    async fn reserve_user(
        &self,
        store: &dyn Store,
        user: &str,
        id: &str,
        new_env: bool,
    ) -> Result<(), QuotaError> {
        let key = user_key(user);
        let mut pruned: Option<(Vec<String>, Vec<String>)> = None;
        loop {
            let mut over = false;
            let result = update::<UserSlots, _>(store, &key, |s| {
                if let Some((envs, running)) = &pruned {
                    envs.iter().for_each(|e| {
                        s.environments.remove(e);
                    });
                    running.iter().for_each(|e| {
                        s.running.remove(e);
                    });
                }
                let has_env = s.environments.contains(id);
                let has_run = s.running.contains(id);
                if new_env && !has_env && s.environments.len() >= self.environments_per_user {
                    over = true;
                    return Err(QuotaError::Exceeded(format!(
                        "you already have {} environments; delete one first",
                        self.environments_per_user
                    )));
                }
                if !has_run && s.running.len() >= self.running_per_user {
                    over = true;
                    return Err(QuotaError::Exceeded(format!(
                        "you already have {} running environments; stop one first",
                        self.running_per_user
                    )));
                }
                if new_env {
                    s.environments.insert(id.to_string());
                }
                s.running.insert(id.to_string());
                Ok(!(has_run && (has_env || !new_env)))
            })
            .await;
            match result {
                Err(QuotaError::Exceeded(_)) if over && pruned.is_none() => {
                    // Before refusing, drop slots held by environments that are gone.
                    let slots: UserSlots = match store.document(&key).await? {
                        Some(v) => serde_json::from_value(v.value).unwrap_or_default(),
                        None => UserSlots::default(),
                    };
                    let stale = prune_user(store, user, &slots).await?;
                    if stale.0.is_empty() && stale.1.is_empty() {
                        return result;
                    }
                    pruned = Some(stale);
                }
                other => return other,
            }
        }
    }

    async fn reserve_global(
        &self,
        store: &dyn Store,
        user: &str,
        id: &str,
    ) -> Result<(), QuotaError> {
        let entry = format!("{user}/{id}");
        let mut pruned: Option<Vec<String>> = None;
        loop {
            let mut over = false;
            let result = update::<GlobalSlots, _>(store, GLOBAL_KEY, |s| {
                if let Some(stale) = &pruned {
                    stale.iter().for_each(|e| {
                        s.running.remove(e);
                    });
                }
                if s.running.contains(&entry) {
                    return Ok(pruned.is_some());
                }
                if s.running.len() >= self.running_total {
                    over = true;
                    return Err(QuotaError::Exceeded(
                        "the platform is at its limit of running environments; try again later"
                            .into(),
                    ));
                }
                s.running.insert(entry.clone());
                Ok(true)
            })
            .await;
            match result {
                Err(QuotaError::Exceeded(_)) if over && pruned.is_none() => {
                    let slots: GlobalSlots = match store.document(GLOBAL_KEY).await? {
                        Some(v) => serde_json::from_value(v.value).unwrap_or_default(),
                        None => GlobalSlots::default(),
                    };
                    let mut stale = Vec::new();
                    for e in &slots.running {
                        let (u, i) = e.split_once('/').unwrap_or((e, ""));
                        if !still_needs(store, u, i, true).await? {
                            stale.push(e.clone());
                        }
                    }
                    if stale.is_empty() {
                        return result;
                    }
                    pruned = Some(stale);
                }
                other => return other,
            }
        }
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
            let a = s.running.remove(id);
            let b = forget && s.environments.remove(id);
            Ok(a || b)
        })
        .await?;
        let entry = format!("{user}/{id}");
        update::<GlobalSlots, _>(store, GLOBAL_KEY, |s| Ok(s.running.remove(&entry))).await
    }
}
