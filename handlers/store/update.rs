//! The one read-modify-write loop. Every conditional write in the control
//! plane that may lose a race (environments, quota documents, rate-limit
//! windows, the reconcile job's steps) goes through `retry_races`: read with
//! the ETag, decide, write conditionally, and on a lost race read again and
//! decide again — bounded, with a little jitter so racers spread out.
//! `update_environment` and `update_document` are the two common shapes.

use super::{Etag, Store, StoreError, Versioned};
use crate::domain::Environment;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How one attempt ended.
#[derive(Debug)]
pub enum Attempt<T> {
    Done(T),
    /// A conditional write lost a race (or the record vanished between the
    /// read and the write): read again and decide again.
    Raced,
}

/// How many times to read again after a lost race.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries(pub u32);

impl Retries {
    /// One record that few writers touch (an environment, a rate-limit window).
    pub const RECORD: Retries = Retries(20);
    /// A document many requests write at once (the platform-wide quota).
    pub const HOT_DOCUMENT: Retries = Retries(200);
}

/// Maps a conditional write's result: a stale ETag, or a record deleted
/// since it was read, is `Raced` (read again to see what is there now);
/// anything else is passed on.
pub fn raced<T>(r: Result<T, StoreError>) -> Result<Attempt<T>, StoreError> {
    match r {
        Ok(v) => Ok(Attempt::Done(v)),
        Err(StoreError::PreconditionFailed | StoreError::NotFound) => Ok(Attempt::Raced),
        Err(e) => Err(e),
    }
}

/// Run `attempt` on `state` until it is `Done`, at most `retries` times;
/// after that the record is `StoreError::Contended`. (The state is passed in
/// rather than captured so the attempt's future may borrow it and still be
/// `Send`.)
pub async fn retry_races<S, T, E, F>(
    retries: Retries,
    state: &mut S,
    mut attempt: F,
) -> Result<T, E>
where
    F: for<'a> FnMut(&'a mut S) -> BoxFuture<'a, Result<Attempt<T>, E>>,
    E: From<StoreError>,
{
    for n in 0..retries.0 {
        match attempt(state).await? {
            Attempt::Done(v) => return Ok(v),
            Attempt::Raced if n == 0 => {}
            Attempt::Raced => {
                // Lost again: back off a little, jittered, growing slowly.
                let ms = rand::random::<u64>() % (2 + u64::from(n.min(20)));
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
        }
    }
    Err(StoreError::Contended.into())
}

/// What an update closure decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing to write.
    Unchanged,
    /// Write the value back.
    Write,
}

impl From<bool> for Change {
    fn from(changed: bool) -> Self {
        if changed {
            Change::Write
        } else {
            Change::Unchanged
        }
    }
}

/// The record after an update, and whether this call wrote it.
#[derive(Debug, Clone)]
pub struct Updated {
    pub env: Environment,
    pub etag: Etag,
    pub written: bool,
}

/// Read-modify-write one environment. `f` sees the current record (again
/// after every lost race) and says whether it changed it; an environment that
/// does not exist (or vanishes meanwhile) is `StoreError::NotFound`.
pub async fn update_environment<E, F>(
    store: &dyn Store,
    user_id: &str,
    id: &str,
    f: F,
) -> Result<Updated, E>
where
    F: FnMut(&mut Environment) -> Result<Change, E> + Send,
    E: From<StoreError> + Send,
{
    update_seen_environment(store, user_id, id, None, f).await
}

/// `update_environment`, starting from a version the caller has just read
/// (`seen`, e.g. in a scan) instead of reading it again: the write is
/// conditional on its ETag, so if it is stale the race is lost and the loop
/// reads the current record as usual. `f` deciding "unchanged" on `seen` is
/// final, so pass only a version whose "unchanged" would hold for a newer
/// one too (the sweep's idle stop: not idle then is not idle now).
pub async fn update_seen_environment<E, F>(
    store: &dyn Store,
    user_id: &str,
    id: &str,
    seen: Option<Versioned<Environment>>,
    f: F,
) -> Result<Updated, E>
where
    F: FnMut(&mut Environment) -> Result<Change, E> + Send,
    E: From<StoreError> + Send,
{
    let mut state = (store, user_id, id, f, seen);
    retry_races(
        Retries::RECORD,
        &mut state,
        |(store, user_id, id, f, seen)| {
            Box::pin(async move {
                let Versioned { value, etag } = match seen.take() {
                    Some(v) => v,
                    None => store
                        .environment(user_id, id)
                        .await?
                        .ok_or(StoreError::NotFound)?,
                };
                let mut env = value;
                if f(&mut env)? == Change::Unchanged {
                    return Ok(Attempt::Done(Updated {
                        env,
                        etag,
                        written: false,
                    }));
                }
                Ok(match raced(store.replace_environment(&env, &etag).await)? {
                    Attempt::Done(etag) => Attempt::Done(Updated {
                        env,
                        etag,
                        written: true,
                    }),
                    Attempt::Raced => Attempt::Raced,
                })
            })
        },
    )
    .await
}

/// Read-modify-write a JSON document (absent, or no longer parseable, is
/// `T::default()`). `f` says whether it changed the value; a written
/// document expires at `expires(&value)` (`None`: never).
pub async fn update_document<T, E, F, X>(
    store: &dyn Store,
    key: &str,
    retries: Retries,
    f: F,
    expires: X,
) -> Result<(), E>
where
    T: Default + Serialize + DeserializeOwned + Send,
    F: FnMut(&mut T) -> Result<Change, E> + Send,
    X: Fn(&T) -> Option<DateTime<Utc>> + Send,
    E: From<StoreError> + Send,
{
    let mut state = (store, key, f, expires);
    retry_races(retries, &mut state, |(store, key, f, expires)| {
        Box::pin(async move {
            let current = store.document(key).await?;
            let mut value: T = current
                .as_ref()
                .and_then(|c| serde_json::from_value(c.value.clone()).ok())
                .unwrap_or_default();
            if f(&mut value)? == Change::Unchanged {
                return Ok(Attempt::Done(()));
            }
            let json = serde_json::to_value(&value)
                .map_err(|e| StoreError::Unavailable(anyhow::anyhow!(e)))?;
            let if_match = current.as_ref().map(|c| &c.etag);
            Ok(
                match store
                    .put_document(key, &json, if_match, expires(&value))
                    .await
                {
                    Ok(_) => Attempt::Done(()),
                    // A create that met another create is a lost race too.
                    Err(StoreError::PreconditionFailed | StoreError::Conflict(_)) => Attempt::Raced,
                    Err(e) => return Err(e.into()),
                },
            )
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lost_race_is_read_again_and_decided_again() {
        let mut calls = 0u32;
        let got: Result<u32, StoreError> = retry_races(Retries(5), &mut calls, |calls| {
            Box::pin(async move {
                *calls += 1;
                Ok(if *calls < 3 {
                    Attempt::Raced
                } else {
                    Attempt::Done(*calls)
                })
            })
        })
        .await;
        assert_eq!(got.unwrap(), 3);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_end_as_contended() {
        let mut calls = 0u32;
        let got: Result<(), StoreError> = retry_races(Retries(4), &mut calls, |calls| {
            Box::pin(async move {
                *calls += 1;
                Ok(Attempt::Raced)
            })
        })
        .await;
        assert!(matches!(got, Err(StoreError::Contended)));
        assert_eq!(calls, 4);
    }

    #[tokio::test]
    async fn an_error_ends_the_loop_at_once() {
        let mut calls = 0u32;
        let got: Result<(), StoreError> = retry_races(Retries(4), &mut calls, |calls| {
            Box::pin(async move {
                *calls += 1;
                Err(StoreError::NotFound)
            })
        })
        .await;
        assert!(matches!(got, Err(StoreError::NotFound)));
        assert_eq!(calls, 1);
    }

    #[test]
    fn only_a_stale_etag_or_a_vanished_record_is_a_race() {
        assert!(matches!(
            raced::<()>(Err(StoreError::PreconditionFailed)),
            Ok(Attempt::Raced)
        ));
        assert!(matches!(
            raced::<()>(Err(StoreError::NotFound)),
            Ok(Attempt::Raced)
        ));
        assert!(matches!(
            raced::<()>(Err(StoreError::Conflict("name".into()))),
            Err(StoreError::Conflict(_))
        ));
    }
}
