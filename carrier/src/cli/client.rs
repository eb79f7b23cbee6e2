//! The client side of the control socket: finds the daemon of a data directory and sends it
//! requests.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::daemon::protocol::{
    encode_line, read_line_within, ErrorBody, Reply, Request, RequestLine, MAX_REPLY_BYTES,
};
use crate::daemon::socket_path;

/// Why a command failed, and so its exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The node refused the request, or failed at it (exit 1).
    Refused(ErrorBody),
    /// The command line is wrong (exit 2).
    Usage(String),
    /// No daemon serves the data directory (exit 3).
    NoDaemon(String),
    /// The daemon went away mid-request, or another local failure (exit 1).
    Failed(String),
}

impl Failure {
    /// The documented exit code.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Failure::Refused(_) | Failure::Failed(_) => 1,
            Failure::Usage(_) => 2,
            Failure::NoDaemon(_) => 3,
        }
    }

    /// What to tell the user.
    pub(crate) fn message(&self) -> &str {
        match self {
            Failure::Refused(body) => &body.message,
            Failure::Usage(m) | Failure::NoDaemon(m) | Failure::Failed(m) => m,
        }
    }
}

/// A connection to a daemon.
pub(crate) struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    line: Vec<u8>,
}

/// The data directory: `--data`, else `CARRIER_DATA`.
pub(crate) fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf, Failure> {
    flag.or_else(|| std::env::var_os("CARRIER_DATA").map(PathBuf::from))
        .filter(|dir| !dir.as_os_str().is_empty())
        .ok_or_else(|| {
            Failure::Usage(
                "which node? give its data directory with `--data DIR` or the environment \
                 variable CARRIER_DATA"
                    .into(),
            )
        })
}

impl Client {
    /// Connects to the daemon serving `data`.
    pub(crate) async fn connect(data: &Path) -> Result<Client, Failure> {
        let socket = socket_path(data).map_err(|e| Failure::Usage(e.to_string()))?;
        let dir = data.display();
        let stream = UnixStream::connect(&socket)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    Failure::NoDaemon(format!(
                        "no daemon on {dir}: start one with `carrier daemon --data {dir}`"
                    ))
                }
                _ => Failure::NoDaemon(format!(
                    "cannot reach the daemon on {dir} ({e}): is it yours? start one with \
                 `carrier daemon --data {dir}`"
                )),
            })?;
        Ok(Client::over(stream))
    }

    /// A client on a connected stream.
    fn over(stream: UnixStream) -> Client {
        let (read, writer) = stream.into_split();
        Client {
            reader: BufReader::new(read),
            writer,
            next_id: 1,
            line: Vec::new(),
        }
    }

    /// The connection's halves, for a pipe: the reader keeps what it read ahead.
    pub(crate) fn into_parts(self) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf) {
        (self.reader, self.writer)
    }

    /// Sends a request without waiting for its reply; its ID.
    pub(crate) async fn send(&mut self, request: Request) -> Result<u64, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        self.writer
            .write_all(&encode_line(&RequestLine { id, request }))
            .await
            .map_err(gone)?;
        Ok(id)
    }

    /// The next line from the daemon, as JSON; `None` when it closed the connection.
    pub(crate) async fn next_line(&mut self) -> Result<Option<Value>, Failure> {
        match read_line_within(&mut self.reader, &mut self.line, MAX_REPLY_BYTES).await {
            Ok(true) => serde_json::from_slice(&self.line).map(Some).map_err(|e| {
                Failure::Failed(format!("the daemon sent a line that is not JSON: {e}"))
            }),
            Ok(false) => Ok(None),
            Err(e) => Err(gone(e)),
        }
    }

    /// The daemon's refusal of this connection (`busy`, say), when it closed the connection
    /// with one before reading a request: its line is still there to read.
    async fn refusal_of_connection(&mut self) -> Option<Failure> {
        let line = tokio::time::timeout(std::time::Duration::from_secs(1), self.next_line())
            .await
            .ok()?
            .ok()??;
        let reply: Reply = serde_json::from_value(line).ok()?;
        match (reply.id, reply.error) {
            (None, Some(error)) => Some(Failure::Refused(error)),
            _ => None,
        }
    }

    /// Sends a request and waits for its reply (events before it are skipped); the result.
    pub(crate) async fn request(&mut self, request: Request) -> Result<Value, Failure> {
        let id = match self.send(request).await {
            Ok(id) => id,
            Err(failure) => return Err(self.refusal_of_connection().await.unwrap_or(failure)),
        };
        loop {
            let Some(line) = self.next_line().await? else {
                return Err(Failure::Failed(
                    "the daemon closed the connection before answering: see its log".into(),
                ));
            };
            if line.get("event").is_some() {
                continue;
            }
            let reply: Reply = serde_json::from_value(line)
                .map_err(|e| Failure::Failed(format!("the daemon's reply is unreadable: {e}")))?;
            // `id: null` refuses the connection itself (`busy`, say): it is the answer too.
            if reply.id.is_some() && reply.id != Some(id) {
                continue;
            }
            return match (reply.ok, reply.error) {
                (true, _) => Ok(reply.result.unwrap_or(Value::Null)),
                (false, Some(error)) => Err(Failure::Refused(error)),
                (false, None) => Err(Failure::Failed(
                    "the daemon refused without a reason".into(),
                )),
            };
        }
    }
}

fn gone(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(format!("the connection to the daemon failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::protocol::{ErrorKind, MAX_LINE_BYTES};
    use serde_json::json;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_reply_longer_than_a_request_line_is_read_whole() {
        let (ours, mut daemon) = UnixStream::pair().unwrap();
        let mut client = Client::over(ours);
        // 300 requests with hellos of escaped control bytes, as peers may send them.
        let hello = "\u{1}".repeat(1024);
        let incoming: Vec<_> = (0..300).map(|_| json!({ "hello": hello })).collect();
        let reply = encode_line(&Reply::ok(1, json!({ "incoming": incoming })));
        assert!(reply.len() > MAX_LINE_BYTES);
        let answer = tokio::spawn(async move {
            let mut request = [0u8; 64];
            let _ = daemon.read(&mut request).await.unwrap();
            daemon.write_all(&reply).await.unwrap();
            daemon
        });
        let result = client.request(Request::FriendRequests).await.unwrap();
        assert_eq!(result["incoming"].as_array().unwrap().len(), 300);
        drop(answer.await.unwrap());
    }

    #[tokio::test]
    async fn a_refusal_of_the_connection_is_the_answer_to_the_request() {
        let (ours, mut daemon) = UnixStream::pair().unwrap();
        let mut client = Client::over(ours);
        let busy = encode_line(&Reply::error(None, ErrorKind::Busy, "128 connections"));
        daemon.write_all(&busy).await.unwrap();
        // Read after the refusal was written, or (below) after the daemon closed.
        let answer = tokio::spawn(async move {
            let mut request = [0u8; 64];
            let _ = daemon.read(&mut request).await;
        });
        match client.request(Request::Id).await {
            Err(Failure::Refused(body)) => assert_eq!(body.kind, ErrorKind::Busy),
            other => panic!("{other:?}"),
        }
        answer.await.unwrap();

        let (ours, mut daemon) = UnixStream::pair().unwrap();
        let mut client = Client::over(ours);
        daemon.write_all(&busy).await.unwrap();
        drop(daemon);
        match client.request(Request::Id).await {
            Err(Failure::Refused(body)) => assert_eq!(body.kind, ErrorKind::Busy),
            other => panic!("{other:?}"),
        }
    }
}
