//! How each step of the demo runs: bounded in time, printed with the time since the start,
//! and named when it fails, so a failure says where the story broke.

use std::future::Future;
use std::time::{Duration, Instant};

/// What a step can fail with: any layer's error, or something that did not happen in time.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long any one step (or any one wait within it) may take before the demo gives up.
pub(super) const STEP_LIMIT: Duration = Duration::from_secs(30);

/// The demo stopped at a step: its name and why.
#[derive(Debug)]
pub(crate) struct Failed {
    step: &'static str,
    error: Error,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "demo failed at step '{}': {}", self.step, self.error)
    }
}

impl std::error::Error for Failed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.error.as_ref())
    }
}

/// Runs the step `name` within [`STEP_LIMIT`]; its error, or its timeout, names it.
pub(super) async fn attempt<T>(
    name: &'static str,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Failed> {
    match tokio::time::timeout(STEP_LIMIT, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Failed { step: name, error }),
        Err(_) => Err(Failed {
            step: name,
            error: format!("it did not finish within {STEP_LIMIT:?}").into(),
        }),
    }
}

/// Prints one step, with the time since `since` (the demo's start).
pub(super) fn step(since: Instant, text: &str) {
    println!("[{:>7.1} ms] {text}", ms(since));
}

/// Milliseconds since `since`.
pub(super) fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
