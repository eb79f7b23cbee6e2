//! The control socket's server: one task per connection, requests answered in order, events
//! streamed to connections that asked with `watch`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, watch, Semaphore};

use super::node::DaemonNode;
use super::protocol::{
    decode_request, encode_line, read_line, ErrorKind, Event, LineError, Reply, Request,
    RequestLine,
};
use super::streams;

/// Lines queued for one connection's writer; a client that reads nothing holds up only
/// itself.
const OUTGOING_LINES: usize = 256;

/// Connections served at once; one more is told `busy` and closed. Each may hold a request
/// line of up to 1 MiB and [`OUTGOING_LINES`] queued lines: this bounds the daemon's memory
/// whatever its clients do.
pub(crate) const MAX_CONNECTIONS: usize = 128;

/// The requests being answered, so that stopping lets them finish (a while) and refuses new
/// ones, instead of shutting the node down under them.
#[derive(Clone)]
pub(crate) struct Gate {
    state: Arc<watch::Sender<GateState>>,
}

#[derive(Default)]
struct GateState {
    closed: bool,
    inside: usize,
}

/// A request being answered; it leaves the gate when dropped.
pub(crate) struct Pass {
    state: Arc<watch::Sender<GateState>>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.state
            .send_modify(|s| s.inside = s.inside.saturating_sub(1));
    }
}

impl Gate {
    /// An open gate.
    pub(crate) fn new() -> Self {
        Gate {
            state: Arc::new(watch::Sender::new(GateState::default())),
        }
    }

    /// A pass for one request, or `None` once the daemon is stopping.
    pub(crate) fn enter(&self) -> Option<Pass> {
        let mut entered = false;
        self.state.send_modify(|s| {
            if !s.closed {
                s.inside += 1;
                entered = true;
            }
        });
        entered.then(|| Pass {
            state: self.state.clone(),
        })
    }

    /// Lets no request in any more, and waits until those inside are answered, for at most
    /// `grace`; whether they all were.
    pub(crate) async fn close(&self, grace: Duration) -> bool {
        self.state.send_modify(|s| s.closed = true);
        let mut state = self.state.subscribe();
        tokio::time::timeout(grace, async move {
            state.wait_for(|s| s.inside == 0).await.is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

/// Accepts connections until `stop` turns true.
pub(crate) async fn serve(
    listener: UnixListener,
    node: Arc<DaemonNode>,
    stop: watch::Sender<bool>,
    gate: Gate,
) {
    let mut stopped = stop.subscribe();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let served = connection(stream, node.clone(), stop.clone(), gate.clone());
                        tokio::spawn(async move {
                            served.await;
                            drop(slot);
                        });
                    }
                    Err(_) => {
                        // One short line into the fresh socket's empty buffer: it never
                        // waits; if it does not go, the close alone tells.
                        let refusal = Reply::error(
                            None,
                            ErrorKind::Busy,
                            format!(
                                "the daemon serves {MAX_CONNECTIONS} connections already: close \
                                 one (a forgotten `carrier watch`?) and try again"
                            ),
                        );
                        let _ = stream.try_write(&encode_line(&refusal));
                    }
                },
                Err(e) => {
                    tracing::warn!("control socket: accept failed: {e}");
                    // Out of file descriptors, say: give the others time to close.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            () = until_stopped(&mut stopped) => return,
        }
    }
}

async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before any other await.
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// A line for a connection's writer, with the pass of the request it answers.
type Line = (Vec<u8>, Option<Pass>);

/// One client: reads requests, queues replies (and events once it watches) for its writer.
async fn connection(
    stream: UnixStream,
    node: Arc<DaemonNode>,
    stop: watch::Sender<bool>,
    gate: Gate,
) {
    let (read, mut write) = stream.into_split();
    let (outgoing, mut queue) = mpsc::channel::<Line>(OUTGOING_LINES);
    // Gives the write half back once the queue closed: to be shut down, or to become a
    // pipe's.
    let writer = tokio::spawn(async move {
        while let Some((line, pass)) = queue.recv().await {
            let written = write.write_all(&line).await;
            // A reply's request counts as answered once the reply is written.
            drop(pass);
            if written.is_err() {
                break;
            }
        }
        write
    });
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let mut watcher: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let mut pass = None;
        let reply = match read_line(&mut reader, &mut line).await {
            Ok(true) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Ok(true) => match decode_request(&line) {
                Err(refused) => refused.reply(),
                Ok(RequestLine {
                    id,
                    request: Request::Watch { replay },
                }) => {
                    // Subscribed before the reply is queued, sent after it: the client sees
                    // its `ok` first and misses nothing from then on.
                    let (events, history) = node.subscribe();
                    let _ = outgoing
                        .send((encode_line(&Reply::ok(id, json!({}))), None))
                        .await;
                    if watcher.is_none() {
                        if replay {
                            for event in &history {
                                let _ = outgoing.send((encode_line(event), None)).await;
                            }
                        }
                        watcher = Some(tokio::spawn(forward(events, outgoing.clone())));
                    }
                    continue;
                }
                Ok(RequestLine {
                    id,
                    request: Request::Pipe { friend, listen },
                }) if watcher.is_none() => match node.open_pipe(friend, listen).await {
                    Err((kind, message)) => Reply::error(Some(id), kind, message),
                    Ok((result, session, stream)) => {
                        // The reply goes first; then the connection carries the pipe's bytes
                        // (the client sends its own only after reading the reply).
                        let _ = outgoing
                            .send((encode_line(&Reply::ok(id, result.clone())), None))
                            .await;
                        drop(outgoing);
                        if let Ok(write) = writer.await {
                            streams::splice(&node, reader, write, (&result, session, stream)).await;
                        }
                        return;
                    }
                },
                Ok(RequestLine {
                    id,
                    request:
                        Request::Forward {
                            friend,
                            service,
                            local,
                        },
                }) if watcher.is_none() => {
                    match node.open_forward(&friend, &service, local.as_deref()).await {
                        Err((kind, message)) => Reply::error(Some(id), kind, message),
                        Ok((result, key)) => {
                            let _ = outgoing
                                .send((encode_line(&Reply::ok(id, result)), None))
                                .await;
                            // The forwarding runs while the client holds the connection.
                            while let Ok(true) = read_line(&mut reader, &mut line).await {}
                            node.close_forward(key);
                            break;
                        }
                    }
                }
                Ok(RequestLine {
                    id,
                    request: Request::Stop,
                }) => {
                    tracing::info!("stop requested on the control socket");
                    // The reply holds a pass, so the daemon stops once it is written; the
                    // signal goes first, so a client that reads nothing (its queue full)
                    // still stops it, after the grace.
                    let pass = gate.enter();
                    let _ = stop.send(true);
                    let _ = outgoing
                        .send((encode_line(&Reply::ok(id, json!({}))), pass))
                        .await;
                    // The connection stays open until the process exits, so the client knows
                    // when the daemon is gone (and its lock free).
                    std::future::pending::<()>().await;
                    return;
                }
                Ok(RequestLine { id, request }) => match gate.enter() {
                    None => Reply::error(
                        Some(id),
                        ErrorKind::Stopping,
                        "the daemon is stopping: send it again once a daemon runs on this \
                         directory (`carrier daemon --data DIR`)",
                    ),
                    // The pass goes with the reply, until it is written.
                    Some(entered) => {
                        pass = Some(entered);
                        match node.handle(request).await {
                            Ok(result) => Reply::ok(id, result),
                            Err((kind, message)) => Reply::error(Some(id), kind, message),
                        }
                    }
                },
            },
            Ok(false) => break,
            Err(too_long @ LineError::TooLong { .. }) => {
                let _ = outgoing
                    .send((
                        encode_line(&Reply::error(
                            None,
                            ErrorKind::TooLong,
                            too_long.to_string() + "; closing the connection",
                        )),
                        None,
                    ))
                    .await;
                break;
            }
            Err(LineError::Truncated) => {
                let _ = outgoing
                    .send((
                        encode_line(&Reply::error(
                            None,
                            ErrorKind::Truncated,
                            LineError::Truncated.to_string(),
                        )),
                        None,
                    ))
                    .await;
                break;
            }
            Err(LineError::Io(e)) => {
                tracing::debug!("control connection failed: {e}");
                break;
            }
        };
        if outgoing.send((encode_line(&reply), pass)).await.is_err() {
            break;
        }
    }
    // The end of the client's side ends its watch too: a closed connection shows only when
    // written to, and an idle watch would otherwise hold its task until the next event.
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    drop(outgoing);
    if let Ok(mut write) = writer.await {
        let _ = write.shutdown().await;
    }
}

/// Forwards events to one connection until it stops reading.
async fn forward(mut events: broadcast::Receiver<Event>, outgoing: mpsc::Sender<Line>) {
    loop {
        let line = match events.recv().await {
            Ok(event) => encode_line(&event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                encode_line(&json!({ "event": "lagged", "missed": missed }))
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if outgoing.send((line, None)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn closing_waits_for_the_requests_inside_and_lets_no_new_one_in() {
        let gate = Gate::new();
        let pass = gate.enter().unwrap();
        let closing = tokio::spawn({
            let gate = gate.clone();
            async move { gate.close(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(gate.enter().is_none(), "no request enters a closing gate");
        assert!(!closing.is_finished(), "a request is still inside");
        drop(pass);
        assert!(closing.await.unwrap(), "every request was answered");
    }

    #[tokio::test(start_paused = true)]
    async fn closing_gives_up_on_a_request_that_never_ends() {
        let gate = Gate::new();
        let _stuck = gate.enter().unwrap();
        let start = tokio::time::Instant::now();
        assert!(!gate.close(Duration::from_secs(5)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_idle_gate_closes_at_once() {
        let gate = Gate::new();
        drop(gate.enter().unwrap());
        assert!(gate.close(Duration::from_secs(5)).await);
        assert!(gate.enter().is_none());
    }
}
