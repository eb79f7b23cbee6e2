//! The messages part of the daemon: `send`, `inbox` and `ack`, and the messenger's events as
//! protocol events.

use carrier::id::CarrierId;
use carrier::msg::{
    FailReason, Message, MessageEvent, MessageId, MsgError, WaitReason, MAX_MESSAGE_BYTES,
};
use serde_json::{json, Value};

use super::node::{DaemonNode, Refusal};
use super::protocol::{echo, ErrorKind, Event, MessageEntry};

impl DaemonNode {
    /// `send`: `text`, or the file at `file`, to `friend`.
    pub(super) async fn send_message(
        &self,
        friend: &str,
        text: Option<String>,
        file: Option<String>,
    ) -> Result<Value, Refusal> {
        let to = self.friend(friend)?;
        let bytes = match (text, file) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(path)) => read_file(&path).await?,
            _ => {
                return Err((
                    ErrorKind::BadArguments,
                    "give the message as either `text` or `file`".into(),
                ))
            }
        };
        let id = self.messenger.send(&to, &bytes).await.map_err(refusal)?;
        Ok(json!({ "friend": to.to_string(), "id": id.to_hex(), "size": bytes.len() }))
    }

    /// `inbox`: the messages received and not yet acked.
    pub(super) async fn inbox(&self) -> Result<Value, Refusal> {
        let messenger = self.messenger.clone();
        // A read of the database: off the async runtime's threads.
        let messages = tokio::task::spawn_blocking(move || messenger.inbox())
            .await
            .map_err(|e| (ErrorKind::Failed, format!("reading the inbox failed: {e}")))?
            .map_err(refusal)?;
        let messages: Vec<MessageEntry> = messages.iter().map(entry).collect();
        Ok(json!({ "messages": messages }))
    }

    /// `ack`: the message `id` was handled.
    pub(super) async fn ack(&self, id: &str) -> Result<Value, Refusal> {
        let Some(message) = MessageId::from_hex(id.trim()) else {
            return Err((
                ErrorKind::BadArguments,
                format!(
                    "{} is not a message ID: one is 32 hex digits, as `carrier inbox` shows",
                    echo(id)
                ),
            ));
        };
        self.messenger.ack(message).await.map_err(refusal)?;
        Ok(json!({ "id": message.to_hex() }))
    }
}

/// Reads a file to send (off the async runtime's threads), refusing one over the cap
/// without reading it.
async fn read_file(path: &str) -> Result<Vec<u8>, Refusal> {
    let unreadable = |e: std::io::Error| {
        (
            ErrorKind::Unreadable,
            format!("cannot read {}: {e}", echo(path)),
        )
    };
    let owned = path.to_string();
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Result<Vec<u8>, u64>> {
        use std::io::Read;
        let file = std::fs::File::open(&owned)?;
        let length = file.metadata()?.len();
        if length > MAX_MESSAGE_BYTES as u64 {
            return Ok(Err(length));
        }
        // Read one byte past the cap, in case the file grew since.
        let mut bytes = Vec::new();
        file.take(MAX_MESSAGE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)?;
        Ok(Ok(bytes))
    })
    .await
    .map_err(|e| (ErrorKind::Failed, format!("reading the file failed: {e}")))?
    .map_err(unreadable)?;
    match read {
        Ok(bytes) if bytes.len() <= MAX_MESSAGE_BYTES => Ok(bytes),
        Ok(bytes) => Err(too_large(bytes.len() as u64)),
        Err(length) => Err(too_large(length)),
    }
}

fn too_large(length: u64) -> Refusal {
    refusal(MsgError::TooLarge {
        len: usize::try_from(length).unwrap_or(usize::MAX),
        max: MAX_MESSAGE_BYTES,
    })
}

/// A message as the protocol shows it.
pub(super) fn entry(message: &Message) -> MessageEntry {
    let (text, hex) = match std::str::from_utf8(&message.bytes) {
        Ok(text) => (Some(text.to_string()), None),
        Err(_) => (None, Some(to_hex(&message.bytes))),
    };
    MessageEntry {
        from: message.from.to_string(),
        id: message.id.to_hex(),
        text,
        hex,
        size: message.bytes.len(),
        sent_at: message.sent_at,
        offline: message.offline,
    }
}

pub(super) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    hex
}

/// Turns one of the messenger's events into a protocol event, and logs it.
pub(super) fn message_event(node: &DaemonNode, event: MessageEvent) {
    {
        let text = |to: &CarrierId, id: &MessageId| (to.to_string(), id.to_hex());
        let event = match event {
            MessageEvent::Message(message) => {
                tracing::info!(from = %message.from, id = %message.id.to_hex(), size = message.bytes.len(), "message");
                Event::Message(entry(&message))
            }
            MessageEvent::Delivered { to, id } => {
                let (friend, id) = text(&to, &id);
                tracing::debug!(%friend, %id, "message delivered");
                Event::Delivered { friend, id }
            }
            MessageEvent::Stored { to, id } => {
                let (friend, id) = text(&to, &id);
                Event::Stored { friend, id }
            }
            MessageEvent::Waiting { to, id, reason } => {
                let (friend, id) = text(&to, &id);
                Event::Waiting {
                    friend,
                    id,
                    reason: wait_reason(reason).into(),
                }
            }
            MessageEvent::Failed { to, id, reason } => {
                let (friend, id) = text(&to, &id);
                tracing::info!(%friend, %id, reason = fail_reason(reason), "message failed");
                Event::Failed {
                    friend,
                    id,
                    reason: fail_reason(reason).into(),
                }
            }
            other => {
                tracing::debug!("message event not reported: {other:?}");
                return;
            }
        };
        node.send(event);
    }
}

fn wait_reason(reason: WaitReason) -> &'static str {
    match reason {
        WaitReason::Offline => "offline",
        WaitReason::MailboxFull => "mailbox_full",
        WaitReason::TooLargeForMailbox => "too_large_for_mailbox",
        _ => "other",
    }
}

fn fail_reason(reason: FailReason) -> &'static str {
    match reason {
        FailReason::Removed => "removed",
        FailReason::Expired => "expired",
        _ => "other",
    }
}

/// What the messenger's refusal tells the user.
fn refusal(error: MsgError) -> Refusal {
    let message = error.to_string();
    match error {
        MsgError::Yourself => (ErrorKind::Yourself, message),
        MsgError::NotAFriend(_) => (
            ErrorKind::UnknownFriend,
            format!("{message}: see `carrier friend list`"),
        ),
        MsgError::Empty => (ErrorKind::EmptyMessage, message),
        MsgError::TooLarge { .. } => (
            ErrorKind::MessageTooLarge,
            format!("{message}: send larger data on a stream"),
        ),
        MsgError::UnknownMessage(_) => (
            ErrorKind::UnknownMessage,
            format!("{message}: see `carrier inbox`"),
        ),
        MsgError::Closed => (ErrorKind::Stopping, message),
        _ => (ErrorKind::Failed, message),
    }
}
