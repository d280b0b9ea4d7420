//! The clock a test app runs on, chosen with `Clock` and moved through
//! `TestClock` (`app.clock.advance(..)`).

use chrono::{DateTime, Duration, Utc};
use dev8::clock::ManualClock;
use std::sync::{Arc, Mutex};

/// Which clock the app gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Stands still until the test moves it (the default): jobs are driven by
    /// hand, nothing waits for real time.
    Manual,
    /// The wall clock plus an offset the test moves forward: for apps whose
    /// peers keep real time (processes, real queues) while leases, queue
    /// delays and idle timeouts still follow the test's clock.
    Offset,
}

/// The wall clock plus an offset that only grows.
#[derive(Debug, Default, Clone)]
pub struct OffsetClock(Arc<Mutex<Duration>>);

impl OffsetClock {
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl dev8::clock::Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.0.lock().unwrap()
    }
}

/// The app's clock as the test holds it.
#[derive(Debug, Clone)]
pub enum TestClock {
    Manual(ManualClock),
    Offset(OffsetClock),
}

impl TestClock {
    pub fn new(kind: Clock) -> Self {
        match kind {
            Clock::Manual => TestClock::Manual(ManualClock::default()),
            Clock::Offset => TestClock::Offset(OffsetClock::default()),
        }
    }

    pub fn kind(&self) -> Clock {
        match self {
            TestClock::Manual(_) => Clock::Manual,
            TestClock::Offset(_) => Clock::Offset,
        }
    }

    /// Move the app's time forward.
    pub fn advance(&self, by: Duration) {
        match self {
            TestClock::Manual(c) => c.advance(by),
            TestClock::Offset(c) => c.advance(by),
        }
    }

    /// What the app takes for now.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            TestClock::Manual(c) => dev8::clock::Clock::now(c),
            TestClock::Offset(c) => dev8::clock::Clock::now(c),
        }
    }
}

impl dev8::clock::Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        TestClock::now(self)
    }
}
