//! The sessions part of the daemon: `pipe`, a control connection turned into a byte pipe to
//! a reliable stream of a session (`carrier pipe FRIEND` / `carrier pipe --listen`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use carrier::stream::{
    status, Session, SessionRequest, Sessions, Stream, StreamError, StreamKind, StreamMode,
    StreamState,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::node::{DaemonNode, Refusal};
use super::protocol::{echo, ErrorKind, Event};

/// The bundle `pipe` sessions are requested for.
pub(super) const PIPE_BUNDLE: &str = "pipe";

/// The `pipe` requests of friends, for the `pipe --listen`s that wait. Registered when the
/// daemon starts, so a friend that kept a pipe's session through this daemon's restart has
/// its resume taken by the next listener (a resume waits for one, within its time); a fresh
/// request while no listener waits is refused at once, as netcat's connection would be.
pub(super) struct PipeRequests {
    /// Listeners waiting now.
    waiting: AtomicUsize,
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<SessionRequest>>,
}

/// A listener counted among those waiting while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PipeRequests {
    /// Takes the [`PIPE_BUNDLE`] requests of `sessions` from now on.
    pub(super) fn start(sessions: &Sessions) -> Result<Arc<PipeRequests>, StreamError> {
        let mut requests = sessions.handle(PIPE_BUNDLE)?;
        let (queue, taken) = mpsc::unbounded_channel();
        let desk = Arc::new(PipeRequests {
            waiting: AtomicUsize::new(0),
            queue: tokio::sync::Mutex::new(taken),
        });
        let weak = Arc::downgrade(&desk);
        tokio::spawn(async move {
            while let Some(request) = requests.recv().await {
                let Some(desk) = weak.upgrade() else { break };
                if request.is_resume() || desk.waiting.load(Ordering::SeqCst) > 0 {
                    // Unsent only when the daemon stops: the request refuses itself.
                    let _ = queue.send(request);
                } else {
                    let reason = "no handler takes bundle \"pipe\": nobody listens";
                    // The friend may be gone; its request then times out there.
                    let _ = request.refuse(status::NO_HANDLER, reason).await;
                }
            }
        });
        Ok(desk)
    }

    fn wait(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(&self.waiting)
    }
}

impl DaemonNode {
    /// Opens a pipe's session and stream: requested of `friend`, or (with `listen`) the next
    /// one a friend requests for [`PIPE_BUNDLE`]. The reply's result, the session (held for
    /// as long as the pipe runs) and the stream.
    pub(super) async fn open_pipe(
        &self,
        friend: Option<String>,
        listen: bool,
    ) -> Result<(Value, Session, Stream), Refusal> {
        match (friend, listen) {
            (Some(friend), false) => {
                let to = self.friend(&friend)?;
                let session = self
                    .sessions
                    .request(&to, PIPE_BUNDLE)
                    .await
                    .map_err(refusal)?;
                let stream = session
                    .add_stream(StreamKind::Application, StreamMode::Reliable)
                    .await
                    .map_err(refusal)?;
                tracing::info!(friend = %to, session = session.id(), "pipe opened");
                let result = json!({ "friend": to.to_string(), "session": format!("{:016x}", session.id()) });
                Ok((result, session, stream))
            }
            (None, true) => {
                // One listener at a time takes the pipe requests; the next waits its turn.
                let _waiting = self.pipe_requests.wait();
                let mut taking = self.pipe_requests.queue.lock().await;
                loop {
                    let request = taking.recv().await.ok_or_else(|| {
                        (ErrorKind::Stopping, "the daemon is stopping".to_string())
                    })?;
                    let peer = request.peer();
                    let resumed = request.is_resume();
                    let Ok(session) = request.accept().await else {
                        continue;
                    };
                    let Some(stream) = session.accept_stream().await else {
                        continue;
                    };
                    tracing::info!(friend = %peer, session = session.id(), resumed, "pipe accepted");
                    let result = json!({
                        "friend": peer.to_string(),
                        "session": format!("{:016x}", session.id()),
                        "resumed": resumed,
                    });
                    return Ok((result, session, stream));
                }
            }
            _ => Err((
                ErrorKind::BadArguments,
                "pipe takes a friend or listen, one of the two".into(),
            )),
        }
    }
}

/// The `stream` event of a stream's state.
fn stream_event(session: &Session, stream: u32, state: &StreamState) -> Event {
    let (name, reason) = match state {
        StreamState::Initialized => ("initialized", None),
        StreamState::TransportReady => ("transport_ready", None),
        StreamState::Connecting => ("connecting", None),
        StreamState::Connected => ("connected", None),
        StreamState::Deactivated => ("deactivated", None),
        StreamState::Closed => ("closed", None),
        StreamState::Failed(reason) => ("failed", Some(reason.clone())),
    };
    Event::Stream {
        friend: session.peer().to_string(),
        session: format!("{:016x}", session.id()),
        stream,
        state: name.to_string(),
        reason,
    }
}

fn session_event(session: &Session, state: &str, reason: Option<String>) -> Event {
    Event::Session {
        friend: session.peer().to_string(),
        session: format!("{:016x}", session.id()),
        bundle: session.bundle().to_string(),
        state: state.to_string(),
        reason,
    }
}

/// Copies the connection's bytes to the stream and the stream's to the connection until
/// both directions ended; each direction's end is passed on as a half-close. Reports the
/// session (`opened`, or `resumed` for a session a friend kept through this daemon's
/// restart, as the pipe's `result` says) and its stream as events, and closes the session at
/// the end.
pub(super) async fn splice(
    node: &DaemonNode,
    mut from_client: impl AsyncBufRead + Unpin,
    mut to_client: impl AsyncWrite + Unpin,
    (result, session, stream): (&Value, Session, Stream),
) {
    let opened = if result["resumed"] == json!(true) {
        "resumed"
    } else {
        "opened"
    };
    node.send(session_event(&session, opened, None));
    let id = stream.id();
    node.send(stream_event(&session, id, &stream.state()));
    let (mut from_net, mut to_net) = tokio::io::split(stream);
    let up = async {
        let copied = tokio::io::copy_buf(&mut from_client, &mut to_net).await;
        // The client ended its input (or went): the friend reads the end.
        let _ = to_net.shutdown().await;
        copied
    };
    let down = async {
        let copied = tokio::io::copy(&mut from_net, &mut to_client).await;
        let _ = to_client.shutdown().await;
        copied
    };
    let (up, down) = tokio::join!(up, down);
    tracing::info!(?up, ?down, "pipe ended");
    let stream = from_net.unsplit(to_net);
    node.send(stream_event(&session, id, &stream.state()));
    drop(stream);
    let reason = "the pipe ended";
    // Closed by the other side already: nothing to tell it.
    let _ = session.close(reason).await;
    node.send(session_event(&session, "closed", Some(reason.to_string())));
}

/// What a session's refusal tells the user.
fn refusal(error: StreamError) -> Refusal {
    let message = error.to_string();
    let kind = match error {
        StreamError::UnknownFriend(_) | StreamError::NotAFriend(_) => ErrorKind::UnknownFriend,
        StreamError::Timeout(_) => ErrorKind::Timeout,
        StreamError::Closed => ErrorKind::Stopping,
        StreamError::Invalid(_) => ErrorKind::BadArguments,
        _ => ErrorKind::Failed,
    };
    (kind, echo(&message))
}
