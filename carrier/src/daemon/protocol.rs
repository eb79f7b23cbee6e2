//! The control protocol of `carrier daemon`: JSON lines over the Unix socket
//! `DIR/control.sock`, shared by the daemon (server) and the `carrier` client commands.
//!
//! A client sends requests, one JSON object per line, each with a numeric `id` and a
//! `request` name; the daemon answers each with a reply carrying the same `id`. A client that
//! sent `watch` also gets events, lines with an `event` field and no `id`. docs/CONTROL.md
//! lists every request, reply and event.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The longest line either side accepts, newline excluded. A longer one is refused and the
/// connection closed, so a client cannot make the daemon buffer without bound.
pub(crate) const MAX_LINE_BYTES: usize = 1 << 20;

/// The longest line a client reads from its daemon. Replies are not held to
/// [`MAX_LINE_BYTES`]: `friend_requests` lists up to 256 requests whose hellos and infos
/// peers chose, `friend_list` every friend, and escaped, they may run past 1 MiB. The client
/// trusts its own daemon, but not without bound.
pub(crate) const MAX_REPLY_BYTES: usize = 64 << 20;

/// The most characters of a client's own text (a name, a serde complaint quoting a value) a
/// refusal repeats, so a reply stays far below [`MAX_LINE_BYTES`] whatever the request held.
pub(crate) const MAX_ECHO_CHARS: usize = 256;

/// The control socket's file name in the data directory.
pub(crate) const SOCKET_FILE: &str = "control.sock";

/// A request: its name is the JSON field `request`, its arguments the other fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub(crate) enum Request {
    /// The node's Carrier ID.
    Id,
    /// The node's Carrier address (ID, nospam, checksum), which friends need.
    Address,
    /// Where the node stands.
    Status,
    /// Sends a friend request.
    FriendAdd { address: String, hello: String },
    /// Accepts a pending request.
    FriendAccept { friend: String },
    /// Refuses a pending request.
    FriendRefuse { friend: String },
    /// Removes a friend.
    FriendRemove { friend: String },
    /// Blocks an ID.
    FriendBlock { friend: String },
    /// Unblocks an ID.
    FriendUnblock { friend: String },
    /// Sets a friend's local label.
    FriendLabel { friend: String, label: String },
    /// The friend list.
    FriendList,
    /// Pending requests both ways, and the block list.
    FriendRequests,
    /// Shows the node's presence, or sets it.
    Presence {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        set: Option<PresenceName>,
    },
    /// Shows the node's user info, or changes the fields given.
    Info {
        #[serde(default, flatten)]
        set: InfoFields,
    },
    /// Shows the nospam, or rotates it (a new address; the old one stops working).
    Nospam {
        #[serde(default)]
        rotate: bool,
    },
    /// Turns this connection into an event stream as well; with `replay`, the events since
    /// the daemon started (the latest 1,024) come first.
    Watch {
        #[serde(default)]
        replay: bool,
    },
    /// Stops the daemon.
    Stop,
    /// Diagnostics: the durable outbox's size.
    Outbox,
    /// Diagnostics: checks the mailboxes now.
    CheckMailboxes,
    /// Diagnostics: the live links and which of them this node dialled.
    Links,
    /// Accepts every pending and future request until the daemon stops.
    AutoAccept,
    /// Sends a friend a message: `text`, or the bytes of the file at the absolute path `file`
    /// (read by the daemon). Answered once the outbox has committed it.
    Send {
        friend: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
    /// The messages received and not yet acked, oldest first.
    Inbox,
    /// Acks a message the application handled: it is never raised again.
    Ack { message: String },
    /// Invites a friend to its `extension`; answered with the friend's reply.
    Invite {
        friend: String,
        extension: String,
        #[serde(default)]
        bundle: String,
        data: String,
    },
    /// Takes the invites for `extension` from now on (if given), and lists those pending.
    Invites {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extension: Option<String>,
    },
    /// Turns this connection into a byte pipe to a reliable stream of a session, once the
    /// reply is read: with `friend`, a session (bundle `pipe`) requested of that friend; with
    /// `listen`, the next session a friend requests for `pipe`.
    Pipe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        friend: Option<String>,
        #[serde(default)]
        listen: bool,
    },
    /// Offers the service `name` at `target` (`host:port`) to every friend, or to the
    /// friends in `only` (IDs or labels).
    Serve {
        name: String,
        target: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        only: Vec<String>,
    },
    /// Withdraws a service; connections open to it keep running.
    Unserve { name: String },
    /// The services offered.
    Services,
    /// Forwards `local` (default `127.0.0.1:0`) to `friend`'s `service` for as long as this
    /// connection stays open (answered by the connection).
    Forward {
        friend: String,
        service: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        local: Option<String>,
    },
    /// The forwardings open, with their connections and bytes.
    Forwards,
    /// Replies to a pending invite: `status` 0 confirms with `data`; any other refuses with
    /// a `reason`.
    Reply {
        invite: u64,
        status: i32,
        #[serde(default)]
        reason: String,
        #[serde(default)]
        data: String,
    },
}

/// Every request name, for telling an unknown request from bad arguments.
const REQUEST_NAMES: &[&str] = &[
    "id",
    "address",
    "status",
    "friend_add",
    "friend_accept",
    "friend_refuse",
    "friend_remove",
    "friend_block",
    "friend_unblock",
    "friend_label",
    "friend_list",
    "friend_requests",
    "presence",
    "info",
    "nospam",
    "watch",
    "stop",
    "outbox",
    "check_mailboxes",
    "links",
    "auto_accept",
    "send",
    "inbox",
    "ack",
    "invite",
    "invites",
    "reply",
    "pipe",
    "serve",
    "unserve",
    "services",
    "forward",
    "forwards",
];

/// A presence, as the protocol spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PresenceName {
    None,
    Away,
    Busy,
}

/// User-info fields; in a request, those present are set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InfoFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) gender: Option<String>,
}

/// A user's info in replies and events: every field, empty when unset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Info {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) phone: String,
    pub(crate) email: String,
    pub(crate) region: String,
    pub(crate) gender: String,
    pub(crate) avatar: bool,
}

/// One request line: the `id` the reply repeats, and the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RequestLine {
    pub(crate) id: u64,
    #[serde(flatten)]
    pub(crate) request: Request,
}

/// What the daemon says to a request: `ok` with a `result` object, or an `error`. `id` is
/// `null` only when the line it answers had no readable `id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub(crate) id: Option<u64>,
    pub(crate) ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorBody>,
}

impl Reply {
    /// A success.
    pub(crate) fn ok(id: u64, result: Value) -> Self {
        Reply {
            id: Some(id),
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A refusal.
    pub(crate) fn error(id: Option<u64>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Reply {
            id,
            ok: false,
            result: None,
            error: Some(ErrorBody {
                kind,
                message: message.into(),
            }),
        }
    }
}

/// Why a request was refused: a kind for programs, a message for people (it says what to do).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

/// The kinds of refusal, stable names for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorKind {
    /// The line is not a JSON object with a numeric `id` and a `request`.
    Malformed,
    /// The line is longer than [`MAX_LINE_BYTES`]; the connection is closed.
    TooLong,
    /// The connection ended in the middle of a line.
    Truncated,
    /// No such request.
    UnknownRequest,
    /// A known request with missing or wrong arguments.
    BadArguments,
    /// Not a valid Carrier address.
    InvalidAddress,
    /// The node's own address.
    Yourself,
    /// No friend or requester has that ID or label.
    UnknownFriend,
    /// Several friends have that label.
    AmbiguousLabel,
    /// A friend request with an empty hello.
    EmptyHello,
    /// A hello over the cap.
    HelloTooLong,
    /// A label over the cap.
    LabelTooLong,
    /// A user-info field over its cap.
    InfoTooLong,
    /// The ID is blocked.
    Blocked,
    /// A message of no bytes.
    EmptyMessage,
    /// A message over 5 MiB.
    MessageTooLarge,
    /// No message with that ID waits in the inbox (never received, or acked already).
    UnknownMessage,
    /// The file to send cannot be read.
    Unreadable,
    /// An invite's extension, bundle, data or reason over its cap.
    InviteTooLarge,
    /// Nobody on the friend's node takes invites for that extension.
    UnknownExtension,
    /// The friend holds as many unanswered invites as it takes.
    FriendBusy,
    /// The invite had no reply within its timeout.
    Timeout,
    /// No pending invite has that ID.
    UnknownInvite,
    /// The invite was replied to already.
    AlreadyReplied,
    /// No service of that name is offered here.
    UnknownService,
    /// A forwarding's local address is taken.
    AddressInUse,
    /// The friend refused (a session).
    Refused,
    /// The daemon is stopping: the request was not answered.
    Stopping,
    /// The daemon serves as many connections as it will; this one is closed.
    Busy,
    /// Anything else the node failed at (its database, its network).
    Failed,
}

/// An event, sent to connections that asked with `watch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    /// A friend request arrived.
    Request {
        from: String,
        hello: String,
        info: Info,
    },
    /// A peer accepted this node's request.
    Added { friend: String },
    /// A friend removed this node.
    Removed { friend: String },
    /// A friend's link is up.
    Connected { friend: String },
    /// A friend's link is gone.
    Disconnected { friend: String },
    /// A friend's link moved to another path on the same connection (hole punching, or a
    /// fallback to the relay).
    Path(PathEntry),
    /// A friend's presence changed.
    Presence {
        friend: String,
        presence: PresenceName,
    },
    /// A friend's user info changed.
    Info { friend: String, info: Info },
    /// The node's own connection to the network changed.
    Connection { status: ConnectionStatus },
    /// Where the node stands changed (public address, NAT mapping, reachability).
    Standing(Standing),
    /// A friend's message, committed to the inbox; raised again after a restart until acked.
    Message(MessageEntry),
    /// The friend's node committed a message this node sent: the end of its journey.
    Delivered { friend: String, id: String },
    /// A message waits in the friend's DHT mailbox: progress, not the end.
    Stored { friend: String, id: String },
    /// A message waits in the outbox (`offline`, `mailbox_full`, `too_large_for_mailbox`).
    Waiting {
        friend: String,
        id: String,
        reason: String,
    },
    /// A message will never be delivered (`removed`, `expired`).
    Failed {
        friend: String,
        id: String,
        reason: String,
    },
    /// An invite for an extension this daemon takes (`invites` registered it).
    Invite(InviteEntry),
    /// A session (a `pipe`'s) opened or closed (`state`: `opened`, `closed`).
    Session {
        friend: String,
        session: String,
        bundle: String,
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A forwarded connection or a refusal (`state`: `opened`, `closed`, `refused`, `denied`,
    /// `unreachable`).
    Forward(ForwardEntry),
    /// A session's stream reached a state (`connected`, `deactivated`, `closed`, `failed`).
    Stream {
        friend: String,
        session: String,
        stream: u32,
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// A forwarding's event: a connection opened or closed (`side`: `forwarding` here, or
/// `serving` a friend), a connection refused by the friend, a friend denied a service, a
/// service unreachable at its target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ForwardEntry {
    pub(crate) state: String,
    pub(crate) friend: String,
    pub(crate) service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) side: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) bytes_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) bytes_out: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

/// An invite received: in `invites`, and the `invite` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InviteEntry {
    /// What `reply` takes.
    pub(crate) id: u64,
    /// The inviter's Carrier ID.
    pub(crate) from: String,
    /// The extension it is addressed to.
    pub(crate) extension: String,
    /// The bundle, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) bundle: Option<String>,
    /// The bundle in hex, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) bundle_hex: Option<String>,
    /// The data, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<String>,
    /// The data in hex, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) data_hex: Option<String>,
}

/// A message received: in `inbox`, and the `message` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MessageEntry {
    /// The sender's Carrier ID.
    pub(crate) from: String,
    /// The message's ID (32 hex digits), for `ack`.
    pub(crate) id: String,
    /// The bytes, when they are UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<String>,
    /// The bytes in hex, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hex: Option<String>,
    /// How many bytes.
    pub(crate) size: usize,
    /// When the sender sent it (Unix milliseconds, the sender's clock).
    pub(crate) sent_at: u64,
    /// It waited for this node (sent while there was no link, or through the mailbox).
    pub(crate) offline: bool,
}

/// The node's own connection to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ConnectionStatus {
    /// It holds DHT contacts heard from recently.
    Online,
    /// Every contact went silent, or it has none.
    Offline,
}

/// Where the node stands, as peers and probes tell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Standing {
    /// `IP:port`, `IP:*` when the port varies per peer, or `null` before peers agree.
    pub(crate) public_address: Option<String>,
    /// `unknown`, `endpoint_independent` or `endpoint_dependent`.
    pub(crate) nat: String,
    /// `unknown`, `reachable` or `unreachable`.
    pub(crate) reachability: String,
    /// Whether the node serves the DHT.
    pub(crate) server: bool,
}

/// The result of `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Status {
    pub(crate) id: String,
    pub(crate) address: String,
    pub(crate) listen: String,
    pub(crate) connection: ConnectionStatus,
    pub(crate) dht_contacts: usize,
    #[serde(flatten)]
    pub(crate) standing: Standing,
    pub(crate) friends: usize,
    pub(crate) friends_online: usize,
    /// The relays this node is registered with (`IP:port`), as a NATed node: empty for a
    /// server.
    #[serde(default)]
    pub(crate) relays: Vec<String>,
    /// What this node relays for others, or `null` if it never relays.
    #[serde(default)]
    pub(crate) relaying: Option<Relaying>,
    /// The path of each friend's link, for the friends online.
    #[serde(default)]
    pub(crate) paths: Vec<PathEntry>,
}

/// A friend's link path, in `status` and the `path` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PathEntry {
    pub(crate) friend: String,
    /// `lan`, `p2p` or `relayed`.
    pub(crate) topology: String,
    /// This node's socket.
    pub(crate) local: String,
    /// The friend's address, or the relay's for a relayed path.
    pub(crate) remote: String,
}

impl PathEntry {
    pub(crate) fn new(
        friend: &carrier::dht::id::CarrierId,
        path: &carrier::friend::LinkPath,
    ) -> Self {
        PathEntry {
            friend: friend.to_string(),
            topology: path.topology.name().to_string(),
            local: path.local.to_string(),
            remote: path.remote().to_string(),
        }
    }
}

/// What a node relays for NATed nodes, in the result of `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Relaying {
    /// NATed nodes registered with it now.
    pub(crate) registrations: usize,
    /// Relay sessions open now.
    pub(crate) sessions: usize,
    /// Bytes it has forwarded since it started.
    pub(crate) forwarded_bytes: u64,
}

/// A friend in the result of `friend_list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FriendEntry {
    pub(crate) id: String,
    pub(crate) label: String,
    pub(crate) online: bool,
    pub(crate) presence: PresenceName,
    pub(crate) info: Info,
    pub(crate) since_unix_secs: u64,
}

/// A request received, in the result of `friend_requests`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IncomingEntry {
    pub(crate) from: String,
    pub(crate) hello: String,
    pub(crate) info: Info,
    pub(crate) received_unix_secs: u64,
}

/// A request sent, in the result of `friend_requests`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutgoingEntry {
    pub(crate) to: String,
    pub(crate) address: String,
    pub(crate) hello: String,
    pub(crate) sent_unix_secs: u64,
}

/// The result of `friend_requests`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Requests {
    pub(crate) incoming: Vec<IncomingEntry>,
    pub(crate) outgoing: Vec<OutgoingEntry>,
    pub(crate) blocked: Vec<String>,
}

/// Why a request line was not decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Longer than [`MAX_LINE_BYTES`].
    #[error("a line of {len} bytes exceeds the cap of {MAX_LINE_BYTES}")]
    TooLong {
        /// Its length, or as much of it as was read.
        len: usize,
    },
    /// Not JSON, not an object, or without a numeric `id` or a `request` name.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The request name is not one of the protocol's.
    #[error("unknown request `{name}`: see docs/CONTROL.md for the requests")]
    UnknownRequest {
        /// The line's `id`.
        id: u64,
        /// The name.
        name: String,
    },
    /// A known request whose arguments are missing or of the wrong type.
    #[error("bad arguments to `{name}`: {reason}")]
    BadArguments {
        /// The line's `id`.
        id: u64,
        /// The request's name.
        name: String,
        /// What serde said.
        reason: String,
    },
}

impl DecodeError {
    /// The reply that refuses the line.
    pub(crate) fn reply(&self) -> Reply {
        let (id, kind) = match self {
            DecodeError::TooLong { .. } => (None, ErrorKind::TooLong),
            DecodeError::Malformed(_) => (None, ErrorKind::Malformed),
            DecodeError::UnknownRequest { id, .. } => (Some(*id), ErrorKind::UnknownRequest),
            DecodeError::BadArguments { id, .. } => (Some(*id), ErrorKind::BadArguments),
        };
        Reply::error(id, kind, self.to_string())
    }
}

/// Decodes one request line (without its newline).
pub(crate) fn decode_request(line: &[u8]) -> Result<RequestLine, DecodeError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(DecodeError::TooLong { len: line.len() });
    }
    let value: Value =
        serde_json::from_slice(line).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let Some(object) = value.as_object() else {
        return Err(DecodeError::Malformed("a request is a JSON object".into()));
    };
    let Some(id) = object.get("id").and_then(Value::as_u64) else {
        return Err(DecodeError::Malformed(
            "a request needs a numeric `id` (an unsigned integer)".into(),
        ));
    };
    let Some(name) = object.get("request").and_then(Value::as_str) else {
        return Err(DecodeError::Malformed(
            "a request needs a `request` name (a string)".into(),
        ));
    };
    if !REQUEST_NAMES.contains(&name) {
        return Err(DecodeError::UnknownRequest {
            id,
            name: echo(name),
        });
    }
    let name = name.to_string();
    serde_json::from_value(value).map_err(|e| DecodeError::BadArguments {
        id,
        name,
        // serde quotes the offending value whole: a 1 MiB string would make a reply over
        // the cap, which the client refuses to read.
        reason: echo(&e.to_string()),
    })
}

/// A client's text as a reply repeats it: at most [`MAX_ECHO_CHARS`] characters, `…` marking
/// a cut.
pub(crate) fn echo(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LineError {
    /// Longer than the cap.
    #[error("a line exceeds the cap of {max} bytes")]
    TooLong {
        /// The cap.
        max: usize,
    },
    /// The stream ended in the middle of a line.
    #[error("the connection ended in the middle of a line")]
    Truncated,
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one request line into `line` (cleared first, newline dropped), holding at most
/// [`MAX_LINE_BYTES`]. `Ok(false)` at a clean end of the stream.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> Result<bool, LineError> {
    read_line_within(reader, line, MAX_LINE_BYTES).await
}

/// Reads one line into `line` (cleared first, newline dropped), holding at most `max` bytes.
/// `Ok(false)` at a clean end of the stream.
pub(crate) async fn read_line_within<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> Result<bool, LineError> {
    line.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return if line.is_empty() {
                Ok(false)
            } else {
                Err(LineError::Truncated)
            };
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(newline) => (newline, true),
            None => (available.len(), false),
        };
        if line.len() + take > max {
            return Err(LineError::TooLong { max });
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(if done { take + 1 } else { take });
        if done {
            return Ok(true);
        }
    }
}

/// One JSON value as a line, newline included.
pub(crate) fn encode_line<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these types cannot fail: their maps have string keys only.
    let mut line = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_with_arguments_round_trips() {
        let line = RequestLine {
            id: 7,
            request: Request::FriendAdd {
                address: "abc".into(),
                hello: "hi".into(),
            },
        };
        let encoded = encode_line(&line);
        assert_eq!(
            std::str::from_utf8(&encoded).unwrap(),
            "{\"id\":7,\"request\":\"friend_add\",\"address\":\"abc\",\"hello\":\"hi\"}\n"
        );
        assert_eq!(decode_request(&encoded[..encoded.len() - 1]).unwrap(), line);
    }

    #[test]
    fn info_fields_are_optional_and_flattened() {
        let decoded = decode_request(br#"{"id":1,"request":"info","name":"Alice"}"#).unwrap();
        assert_eq!(
            decoded.request,
            Request::Info {
                set: InfoFields {
                    name: Some("Alice".into()),
                    ..InfoFields::default()
                }
            }
        );
        let decoded = decode_request(br#"{"id":2,"request":"info"}"#).unwrap();
        assert_eq!(
            decoded.request,
            Request::Info {
                set: InfoFields::default()
            }
        );
    }

    #[test]
    fn each_bad_line_gets_its_typed_error() {
        assert!(matches!(
            decode_request(b"{not json"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_request(b"[1,2]"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_request(br#"{"request":"id"}"#),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_request(br#"{"id":-1,"request":"id"}"#),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(
            decode_request(br#"{"id":3,"request":"fly"}"#),
            Err(DecodeError::UnknownRequest {
                id: 3,
                name: "fly".into()
            })
        );
        assert!(matches!(
            decode_request(br#"{"id":4,"request":"friend_add","address":5}"#),
            Err(DecodeError::BadArguments { id: 4, .. })
        ));
        let long = vec![b' '; MAX_LINE_BYTES + 1];
        assert_eq!(
            decode_request(&long),
            Err(DecodeError::TooLong {
                len: MAX_LINE_BYTES + 1
            })
        );
    }

    #[test]
    fn the_refusal_of_a_line_names_its_id_when_it_had_one() {
        let error = decode_request(br#"{"id":3,"request":"fly"}"#).unwrap_err();
        let reply = error.reply();
        assert_eq!(reply.id, Some(3));
        assert_eq!(reply.error.unwrap().kind, ErrorKind::UnknownRequest);
        let reply = decode_request(b"nonsense").unwrap_err().reply();
        assert_eq!(reply.id, None);
        assert!(!reply.ok);
    }

    #[test]
    fn a_refusal_repeats_at_most_a_bounded_part_of_the_line() {
        // serde quotes an unknown variant whole; the refusal must not.
        let huge = "b".repeat(MAX_LINE_BYTES - 100);
        let line = format!(r#"{{"id":5,"request":"presence","set":"{huge}"}}"#);
        let reply = decode_request(line.as_bytes()).unwrap_err().reply();
        let encoded = encode_line(&reply);
        assert!(encoded.len() < 1024, "{} bytes", encoded.len());
        assert_eq!(reply.error.unwrap().kind, ErrorKind::BadArguments);
        let line = format!(r#"{{"id":6,"request":"{huge}"}}"#);
        assert!(encode_line(&decode_request(line.as_bytes()).unwrap_err().reply()).len() < 1024);
        assert_eq!(echo("short"), "short");
        let cut = echo(&"é".repeat(MAX_ECHO_CHARS + 1));
        assert_eq!(cut.chars().count(), MAX_ECHO_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn every_request_name_decodes_to_a_request() {
        for name in REQUEST_NAMES {
            let line = format!(
                r#"{{"id":1,"request":"{name}","friend":"x","label":"l","address":"a","hello":"h","message":"m","extension":"e","data":"d","invite":1,"status":0,"name":"n","target":"t","service":"s"}}"#
            );
            assert!(decode_request(line.as_bytes()).is_ok(), "{name}");
        }
    }

    /// The serde name of a unit-like value.
    fn name<T: Serialize>(value: &T, field: &str) -> String {
        let value = serde_json::to_value(value).unwrap();
        match value.get(field) {
            Some(name) => name.as_str().unwrap().to_string(),
            None => value.as_str().unwrap().to_string(),
        }
    }

    #[test]
    fn control_md_lists_every_request_error_kind_and_event() {
        let doc = include_str!("../../../docs/CONTROL.md");
        let section = |from: &str, to: &str| {
            let start = doc.find(from).unwrap();
            let end = start + doc[start..].find(to).unwrap();
            &doc[start..end]
        };
        let requests = section("## Requests", "## Events");
        for request in REQUEST_NAMES {
            assert!(requests.contains(&format!("| `{request}` |")), "{request}");
        }
        let kinds = section("### Error kinds", "## Events");
        for kind in [
            ErrorKind::Malformed,
            ErrorKind::TooLong,
            ErrorKind::Truncated,
            ErrorKind::UnknownRequest,
            ErrorKind::BadArguments,
            ErrorKind::InvalidAddress,
            ErrorKind::Yourself,
            ErrorKind::UnknownFriend,
            ErrorKind::AmbiguousLabel,
            ErrorKind::EmptyHello,
            ErrorKind::HelloTooLong,
            ErrorKind::LabelTooLong,
            ErrorKind::InfoTooLong,
            ErrorKind::Blocked,
            ErrorKind::EmptyMessage,
            ErrorKind::MessageTooLarge,
            ErrorKind::UnknownMessage,
            ErrorKind::Unreadable,
            ErrorKind::InviteTooLarge,
            ErrorKind::UnknownExtension,
            ErrorKind::FriendBusy,
            ErrorKind::Timeout,
            ErrorKind::UnknownInvite,
            ErrorKind::AlreadyReplied,
            ErrorKind::UnknownService,
            ErrorKind::AddressInUse,
            ErrorKind::Refused,
            ErrorKind::Stopping,
            ErrorKind::Busy,
            ErrorKind::Failed,
        ] {
            let kind = name(&kind, "");
            assert!(kinds.contains(&format!("`{kind}`")), "{kind}");
        }
        let events = section("## Events", "## The client commands");
        let friend = || "x".to_string();
        for event in [
            Event::Request {
                from: friend(),
                hello: friend(),
                info: Info::default(),
            },
            Event::Added { friend: friend() },
            Event::Removed { friend: friend() },
            Event::Connected { friend: friend() },
            Event::Disconnected { friend: friend() },
            Event::Path(PathEntry {
                friend: friend(),
                topology: friend(),
                local: friend(),
                remote: friend(),
            }),
            Event::Presence {
                friend: friend(),
                presence: PresenceName::Away,
            },
            Event::Info {
                friend: friend(),
                info: Info::default(),
            },
            Event::Connection {
                status: ConnectionStatus::Online,
            },
            Event::Standing(Standing {
                public_address: None,
                nat: friend(),
                reachability: friend(),
                server: true,
            }),
            Event::Message(MessageEntry {
                from: friend(),
                id: friend(),
                text: None,
                hex: None,
                size: 0,
                sent_at: 0,
                offline: false,
            }),
            Event::Delivered {
                friend: friend(),
                id: friend(),
            },
            Event::Stored {
                friend: friend(),
                id: friend(),
            },
            Event::Waiting {
                friend: friend(),
                id: friend(),
                reason: friend(),
            },
            Event::Failed {
                friend: friend(),
                id: friend(),
                reason: friend(),
            },
            Event::Session {
                friend: friend(),
                session: friend(),
                bundle: friend(),
                state: friend(),
                reason: None,
            },
            Event::Stream {
                friend: friend(),
                session: friend(),
                stream: 0,
                state: friend(),
                reason: None,
            },
            Event::Forward(ForwardEntry::default()),
            Event::Invite(InviteEntry {
                id: 1,
                from: friend(),
                extension: friend(),
                bundle: None,
                bundle_hex: None,
                data: None,
                data_hex: None,
            }),
        ] {
            let event = name(&event, "event");
            assert!(events.contains(&format!("| `{event}` |")), "{event}");
        }
        assert!(events.contains(r#"{"event":"lagged","missed":N}"#));
    }

    #[tokio::test]
    async fn lines_are_read_up_to_the_cap_and_a_half_line_is_truncated() {
        let mut input: &[u8] = b"{\"a\":1}\npartial";
        let mut line = Vec::new();
        assert!(read_line(&mut input, &mut line).await.unwrap());
        assert_eq!(line, b"{\"a\":1}");
        assert!(matches!(
            read_line(&mut input, &mut line).await,
            Err(LineError::Truncated)
        ));
        let mut empty: &[u8] = b"";
        assert!(!read_line(&mut empty, &mut line).await.unwrap());
        let mut long = vec![b'x'; MAX_LINE_BYTES + 1];
        long.push(b'\n');
        let mut input: &[u8] = &long;
        assert!(matches!(
            read_line(&mut input, &mut line).await,
            Err(LineError::TooLong {
                max: MAX_LINE_BYTES
            })
        ));
        let mut exact = vec![b'x'; MAX_LINE_BYTES];
        exact.push(b'\n');
        let mut input: &[u8] = &exact;
        assert!(read_line(&mut input, &mut line).await.unwrap());
        assert_eq!(line.len(), MAX_LINE_BYTES);
    }
}
