//! A faithful, stateful stand-in for the `Compute` port (the real backends
//! need code-server or Azure). Resources per environment move through the
//! states a real backend reports; calls are counted so tests can assert
//! that duplicates made one set of resources; failures can be injected.

use async_trait::async_trait;
use dev8::compute::{AgentParams, Compute, ComputeError, ComputeResult};
use dev8::domain::{Environment, Observed, StepNote, steps};
use dev8::frontdoor::Doors;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeState {
    /// Coming up: becomes Running after this many more observations.
    Starting(u32),
    Running,
    Stopped,
}

#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Starts that found nothing and created resources.
    pub creates: u32,
    pub starts: u32,
    pub stops: u32,
    pub deletes: u32,
}

#[derive(Default)]
struct Inner {
    resources: HashMap<String, FakeState>,
    counts: HashMap<String, Counts>,
    /// Observations a start takes to become Running.
    boot_polls: u32,
    /// Fail every call transiently while set.
    down: bool,
    /// Refuse starts permanently with this reason.
    refuse_start: Option<String>,
    /// Real time a start call takes (to make deliveries overlap).
    start_delay: Duration,
    agent_tokens: HashMap<String, String>,
    /// The user secrets the last start handed the agent (name, value).
    agent_secrets: HashMap<String, Vec<(String, String)>>,
}

#[derive(Default)]
pub struct FakeCompute {
    inner: Mutex<Inner>,
    /// `serve`'s front door over this backend. The fake starts no agent
    /// processes, so no door ever opens: every environment address answers
    /// the not-running page, as with local compute before an agent listens.
    doors: Arc<Doors>,
}

impl FakeCompute {
    pub fn set_boot_polls(&self, n: u32) {
        self.inner.lock().unwrap().boot_polls = n;
    }
    pub fn set_down(&self, down: bool) {
        self.inner.lock().unwrap().down = down;
    }
    pub fn refuse_starts(&self, reason: Option<&str>) {
        self.inner.lock().unwrap().refuse_start = reason.map(str::to_string);
    }
    pub fn set_start_delay(&self, d: Duration) {
        self.inner.lock().unwrap().start_delay = d;
    }
    pub fn counts(&self, id: &str) -> Counts {
        self.inner
            .lock()
            .unwrap()
            .counts
            .get(id)
            .cloned()
            .unwrap_or_default()
    }
    pub fn state(&self, id: &str) -> Option<FakeState> {
        self.inner.lock().unwrap().resources.get(id).cloned()
    }
    /// Simulate drift: the resources vanish outside Dev8.
    pub fn vanish(&self, id: &str) {
        self.inner.lock().unwrap().resources.remove(id);
    }
    pub fn resource_count(&self) -> usize {
        self.inner.lock().unwrap().resources.len()
    }
    pub fn agent_token(&self, id: &str) -> Option<String> {
        self.inner.lock().unwrap().agent_tokens.get(id).cloned()
    }
    /// The user secrets the environment's last start handed its agent.
    pub fn agent_secrets(&self, id: &str) -> Option<Vec<(String, String)>> {
        self.inner.lock().unwrap().agent_secrets.get(id).cloned()
    }

    fn check(&self) -> ComputeResult<()> {
        if self.inner.lock().unwrap().down {
            return Err(ComputeError::Transient(anyhow::anyhow!(
                "fake compute is down"
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Compute for FakeCompute {
    fn front_door(&self) -> Option<Arc<Doors>> {
        Some(self.doors.clone())
    }

    async fn observe(&self, env: &Environment) -> ComputeResult<Observed> {
        self.check()?;
        let mut i = self.inner.lock().unwrap();
        let observed = match i.resources.get_mut(&env.id) {
            None => Observed::Absent,
            Some(FakeState::Stopped) => Observed::Stopped,
            Some(FakeState::Running) => Observed::Running {
                ide_url: format!("http://e-{}.localhost/", env.id),
            },
            Some(s @ FakeState::Starting(_)) => {
                if let FakeState::Starting(n) = s {
                    if *n == 0 {
                        *s = FakeState::Running;
                        return Ok(Observed::Running {
                            ide_url: format!("http://e-{}.localhost/", env.id),
                        });
                    }
                    *n -= 1;
                }
                // Up but not answering yet, as a real backend names it.
                Observed::Starting(Some(StepNote::new(steps::WAITING_FOR_IDE)))
            }
        };
        Ok(observed)
    }

    async fn start(
        &self,
        env: &Environment,
        agent: &AgentParams,
    ) -> ComputeResult<serde_json::Value> {
        self.check()?;
        let delay = self.inner.lock().unwrap().start_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut i = self.inner.lock().unwrap();
        if let Some(reason) = &i.refuse_start {
            return Err(ComputeError::Permanent(reason.clone()));
        }
        let polls = i.boot_polls;
        let existed = i.resources.contains_key(&env.id);
        let c = i.counts.entry(env.id.clone()).or_default();
        c.starts += 1;
        if !existed {
            c.creates += 1;
        }
        i.agent_tokens
            .insert(env.id.clone(), agent.agent_token.clone());
        let secrets = agent
            .user_secrets
            .iter()
            .map(|(n, v)| {
                (
                    n.clone(),
                    secrecy::ExposeSecret::expose_secret(v).to_string(),
                )
            })
            .collect();
        i.agent_secrets.insert(env.id.clone(), secrets);
        let state = i
            .resources
            .entry(env.id.clone())
            .or_insert(FakeState::Stopped);
        if *state == FakeState::Stopped {
            *state = FakeState::Starting(polls);
        }
        Ok(serde_json::json!({"fake": env.id}))
    }

    async fn stop(&self, env: &Environment) -> ComputeResult<()> {
        self.check()?;
        let mut i = self.inner.lock().unwrap();
        i.counts.entry(env.id.clone()).or_default().stops += 1;
        if let Some(s) = i.resources.get_mut(&env.id) {
            *s = FakeState::Stopped;
        }
        Ok(())
    }

    async fn delete(&self, env: &Environment) -> ComputeResult<()> {
        self.check()?;
        let mut i = self.inner.lock().unwrap();
        i.counts.entry(env.id.clone()).or_default().deletes += 1;
        i.resources.remove(&env.id);
        Ok(())
    }
}
