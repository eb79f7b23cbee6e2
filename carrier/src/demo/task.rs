//! [`Task`]: work the demo runs beside a step (Bob's side, a server), which ends with the
//! step even when the step fails or runs out of time.

use tokio::task::JoinHandle;

use super::steps::Error;

/// A spawned task, aborted when dropped: nothing the demo starts outlives it.
pub(super) struct Task<T>(JoinHandle<Result<T, Error>>);

impl<T: Send + 'static> Task<T> {
    /// Runs `work` on the runtime (on another thread if one is free).
    pub(super) fn spawn(
        work: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Self {
        Task(tokio::spawn(work))
    }

    /// Waits for its result.
    pub(super) async fn join(mut self) -> Result<T, Error> {
        (&mut self.0).await?
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
