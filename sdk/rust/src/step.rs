use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::bindings::latch::workflow::{steps, waits};
use crate::{Error, Result};

/// How often, and how far apart, a failing step is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles for each attempt after.
    pub initial_backoff_ms: u64,
    /// The longest wait between two attempts.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    /// Three attempts, one second apart, then two.
    fn default() -> Self {
        RetryPolicy { max_attempts: 3, initial_backoff_ms: 1_000, max_backoff_ms: 60_000 }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub fn once() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// The durable wait after failed attempt `attempt` (from 1).
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        let doublings = attempt.saturating_sub(1).min(32);
        self.initial_backoff_ms.saturating_mul(1u64 << doublings).min(self.max_backoff_ms)
    }
}

/// Why an attempt of a step failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepError {
    /// Worth another attempt, if the policy allows one.
    Retry(Error),
    /// Not worth retrying (a refused card, a bad request): the step fails at once.
    Fatal(Error),
}

impl From<Error> for StepError {
    /// Errors are retried unless marked fatal.
    fn from(error: Error) -> Self {
        StepError::Retry(error)
    }
}

/// Runs a named unit of work at most once per attempt, however often the run is
/// replayed: each attempt's output or error is recorded, and a replay reads it back.
/// A failed attempt is retried after a durable backoff (a restart meanwhile loses
/// nothing), until it succeeds, fails fatally, or runs out of attempts. `work` gets the
/// attempt number, from 1. Every attempt and its error show in the run's events.
///
/// A replay skips the body of an attempt that ran, so what the body does must reach the
/// rest of the workflow only through its output: not through variables it changes, nor
/// caches it fills (the clock and random source the engine hands the guest are set back
/// to the same state after the step either way).
pub fn step<T, F>(name: &str, policy: RetryPolicy, mut work: F) -> Result<T>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(u32) -> Result<T, StepError>,
{
    let mut attempt = 1;
    loop {
        let ended = match steps::recorded(name, attempt) {
            Some(ended) => ended,
            None => {
                let ended = match work(attempt) {
                    Ok(output) => steps::AttemptResult { outcome: Ok(serde_json::to_string(&output)?), fatal: false },
                    Err(StepError::Retry(error)) => steps::AttemptResult { outcome: Err(error.into()), fatal: false },
                    Err(StepError::Fatal(error)) => steps::AttemptResult { outcome: Err(error.into()), fatal: true },
                };
                steps::record_attempt(name, attempt, &ended);
                ended
            }
        };
        match ended.outcome {
            Ok(text) => return Ok(serde_json::from_str(&text)?),
            Err(error) if ended.fatal || attempt >= policy.max_attempts => return Err(error.into()),
            Err(_) => {
                waits::sleep(policy.backoff_ms(attempt));
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let policy = RetryPolicy { max_attempts: 10, initial_backoff_ms: 100, max_backoff_ms: 500 };
        let waits: Vec<u64> = (1..=5).map(|a| policy.backoff_ms(a)).collect();
        assert_eq!(waits, vec![100, 200, 400, 500, 500]);
    }
}
