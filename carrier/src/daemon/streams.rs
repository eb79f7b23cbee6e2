//! The sessions part of the daemon: `pipe`, a control connection turned into a byte pipe to
//! a reliable stream of a session (`carrier pipe FRIEND` / `carrier pipe --listen`).

use carrier::stream::{Session, Stream, StreamError, StreamKind, StreamMode, StreamState};
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt};

use super::node::{DaemonNode, Refusal};
use super::protocol::{echo, ErrorKind, Event};

/// The bundle `pipe` sessions are requested for.
pub(super) const PIPE_BUNDLE: &str = "pipe";

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
                let mut requests = self.pipe_requests.lock().await;
                if requests.is_none() {
                    *requests = Some(self.sessions.handle(PIPE_BUNDLE).map_err(refusal)?);
                }
                let Some(taking) = requests.as_mut() else {
                    return Err((ErrorKind::Failed, "no pipe handler".into()));
                };
                loop {
                    let request = taking.recv().await.ok_or_else(|| {
                        (ErrorKind::Stopping, "the daemon is stopping".to_string())
                    })?;
                    let peer = request.peer();
                    let Ok(session) = request.accept().await else {
                        continue;
                    };
                    let Some(stream) = session.accept_stream().await else {
                        continue;
                    };
                    tracing::info!(friend = %peer, session = session.id(), "pipe accepted");
                    let result = json!({ "friend": peer.to_string(), "session": format!("{:016x}", session.id()) });
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
/// session and its stream as events, and closes the session at the end.
pub(super) async fn splice(
    node: &DaemonNode,
    mut from_client: impl AsyncBufRead + Unpin,
    mut to_client: impl AsyncWrite + Unpin,
    session: Session,
    stream: Stream,
) {
    node.send(session_event(&session, "opened", None));
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
