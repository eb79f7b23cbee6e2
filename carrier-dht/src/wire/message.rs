//! The RPC messages carried, encrypted, inside DHT packets, and their strict decoder.

use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::wire::bounded::{BoundedBytes, BoundedVec};
use crate::wire::error::WireError;
use crate::wire::key::Key;
use crate::wire::mailbox_item::MAX_PAGE_ITEMS;
use crate::wire::mailbox_item::{DeleteSecret, ItemId, MailboxItem};
use crate::wire::record::{PeerRecord, Value};
use crate::wire::token::Token;

/// Nodes per bucket, replicas per value, and contacts per reply.
pub const K: usize = 8;
/// Most padding a request carries (padding lets an unproven address get a full reply within
/// the 3x amplification limit).
pub const MAX_PADDING_BYTES: usize = 512;

/// A server as listed in replies: its key and the address it answered on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Contact {
    /// The node's key (its Carrier ID bytes).
    pub id: Key,
    /// Its UDP address.
    pub addr: SocketAddr,
}

/// What a packet carries once decrypted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A question.
    Request(Request),
    /// An answer to a request.
    Response(Response),
}

/// A request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Transaction ID, echoed by the response; with the sender, the replay-cache key.
    pub txid: u64,
    /// Sender's Unix time in milliseconds; refused outside the receiver's clock-skew window.
    pub unix_ms: u64,
    /// The last token the receiver gave us, proving our address.
    pub token: Option<Token>,
    /// What is asked.
    pub body: RequestBody,
    /// Zeros, so the request is large enough for its reply under the amplification limit.
    pub padding: BoundedBytes<MAX_PADDING_BYTES>,
}

/// What a request asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestBody {
    /// Are you there?
    Ping,
    /// The K closest servers you know to `target`.
    FindNode {
        /// The key looked up.
        target: Key,
    },
    /// The value under `key`, or the K closest servers you know to it.
    FindValue {
        /// The key looked up.
        key: Key,
    },
    /// Store this value (needs a valid token).
    StoreValue {
        /// The value; its key follows from it.
        value: Value,
        /// Compare-and-swap: store only if the current sequence number is this one.
        cas: Option<u64>,
    },
    /// Store my signed peer record (needs a valid token).
    AnnouncePeer {
        /// The sender's own record.
        record: PeerRecord,
    },
    /// The peer record of `id`, or the K closest servers you know to it.
    FindPeer {
        /// The node looked for.
        id: Key,
    },
    /// Store this item in mailbox `key` (needs a valid token).
    StoreMailboxItem {
        /// The mailbox key.
        key: Key,
        /// The item; its ID follows from it.
        item: MailboxItem,
    },
    /// The items of mailbox `key` after `after`, one page of them.
    FetchMailbox {
        /// The mailbox key.
        key: Key,
        /// The last item ID of the previous page.
        after: Option<ItemId>,
    },
    /// Delete item `id` of mailbox `key`, which `secret` proves the right to (needs a valid
    /// token).
    DeleteMailboxItem {
        /// The mailbox key.
        key: Key,
        /// The item.
        id: ItemId,
        /// Its `d`, whose hash the item carries.
        secret: DeleteSecret,
    },
    /// Have a node I never contacted send me a [`RequestBody::Probe`] at the address you see
    /// me at (needs a valid token; only servers help).
    ProbeMe {
        /// Echoed by the probe, so the asker can tell it from any other packet.
        nonce: ProbeNonce,
    },
    /// Send a [`RequestBody::Probe`] to the node `id` at `addr`, on behalf of the node that
    /// asked the sender for one (needs a valid token; only servers ask and help).
    ProbeFor {
        /// The node to probe.
        id: Key,
        /// The address the sender saw it at.
        addr: SocketAddr,
        /// The asker's nonce.
        nonce: ProbeNonce,
    },
    /// The unsolicited probe itself: if it arrives from an address the receiver never sent
    /// to, the receiver is reachable from outside.
    Probe {
        /// The asker's nonce.
        nonce: ProbeNonce,
    },
}

/// A probe's random nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProbeNonce(pub [u8; 16]);

/// A response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The request's transaction ID.
    pub txid: u64,
    /// The address the request was seen from, so nodes learn their public address.
    pub your_addr: SocketAddr,
    /// A token for `your_addr`, to be echoed in later requests.
    pub token: Token,
    /// The answer.
    pub body: ResponseBody,
}

/// What a response answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseBody {
    /// Answer to ping.
    Pong,
    /// Closest servers known to the target.
    Nodes(BoundedVec<Contact, K>),
    /// The value asked for.
    Value(Value),
    /// The peer record asked for.
    Peer(PeerRecord),
    /// The value or record was stored.
    Stored,
    /// The request was refused.
    Refused(Refusal),
    /// A page of a mailbox's items, in ID order.
    MailboxPage {
        /// The items.
        items: BoundedVec<MailboxItem, MAX_PAGE_ITEMS>,
        /// Whether more items follow the last one.
        more: bool,
    },
    /// The mailbox item is deleted (now, or earlier by someone who showed its secret).
    Deleted,
    /// The probe asked for is on its way (to a helper, or to the node).
    ProbeSent,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The request needs a token for the sender's address: retry with the one in this response.
    #[error("a token proving the address is required")]
    TokenRequired,
    /// The stored item has a newer or equal sequence number.
    #[error("sequence number not newer than the stored one")]
    StaleSequence,
    /// Compare-and-swap failed: the stored sequence number is another.
    #[error("compare-and-swap mismatch")]
    CasMismatch,
    /// The signature does not verify, or the value does not match its key.
    #[error("invalid signature or key")]
    Invalid,
    /// The record has expired or expires too far ahead.
    #[error("expired or expiry out of range")]
    Expiry,
    /// The sender's address prefix has used up its storage quota here.
    #[error("storage quota exceeded")]
    Quota,
    /// The sender is a client and clients cannot announce peer records.
    #[error("not accepted")]
    NotAccepted,
    /// The mailbox item was deleted by its recipient and may not be stored again.
    #[error("deleted by its recipient")]
    Deleted,
    /// The mailbox item is not held here (never stored, or expired).
    #[error("no such item")]
    Unknown,
}

impl Message {
    /// Encodes with postcard, into a buffer sized for the largest datagram (grown a byte at a
    /// time, encoding was a tenth of a simulation's time, most of it reallocating).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_extend(
            self,
            Vec::with_capacity(crate::wire::packet::MAX_DATAGRAM_BYTES),
        )
        .unwrap_or_default()
    }

    /// Decodes strictly: malformed, oversized or trailing input is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode_exact(bytes)
    }
}

impl Request {
    /// The key the request is about, if any (used for logs and storage accounting).
    pub fn key(&self) -> Option<Key> {
        match &self.body {
            RequestBody::Ping => None,
            RequestBody::FindNode { target } => Some(*target),
            RequestBody::FindValue { key } => Some(*key),
            RequestBody::StoreValue { value, .. } => Some(value.key()),
            RequestBody::AnnouncePeer { record } => Some(Key::of_node(&record.id)),
            RequestBody::FindPeer { id } => Some(*id),
            RequestBody::StoreMailboxItem { key, .. }
            | RequestBody::FetchMailbox { key, .. }
            | RequestBody::DeleteMailboxItem { key, .. } => Some(*key),
            RequestBody::ProbeFor { id, .. } => Some(*id),
            RequestBody::ProbeMe { .. } | RequestBody::Probe { .. } => None,
        }
    }
}

/// Encodes a frame with postcard. Our frames contain nothing postcard can refuse to encode.
pub fn encode<T: Serialize>(frame: &T) -> Vec<u8> {
    postcard::to_allocvec(frame).unwrap_or_default()
}

/// Decodes a frame with postcard and refuses trailing bytes (`postcard::from_bytes` would
/// silently ignore them).
pub fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|_| WireError::Malformed)?;
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len()));
    }
    Ok(value)
}
