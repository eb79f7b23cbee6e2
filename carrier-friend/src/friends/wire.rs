//! The friend layer's wire formats: what a friend request, an accept, a remove, a profile
//! (user info and presence) and an acknowledgement look like on `carrier-request/1`, on a `carrier/1` control stream and in a
//! mailbox letter.
//!
//! Every frame is `version (1 byte) ‖ postcard(Body)`. Decoding is strict: an unknown version,
//! a malformed or trailing byte, a field over its cap, a name that is not UTF-8 or an empty
//! hello is an error, and no field allocates past its cap (bounded field types read the length
//! before allocating). A letter in the shared message mailbox is `LETTER_TAG ‖ frame`, so the
//! friend layer leaves letters of other layers alone.
//!
//! Who sent a frame is never in the frame: it is the Carrier ID the peer proved in the QUIC
//! handshake, or the verified signer of the mailbox letter.

use carrier_dht::bounded::{BoundedBytes, BoundedVec};
use carrier_dht::id::Nospam;
use serde::{Deserialize, Serialize};

use crate::outbox::OutboxId;

/// The longest hello of a friend request, in bytes (at least 1).
pub const MAX_HELLO_BYTES: usize = 1024;
/// The longest user name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 63;
/// The longest user description, in bytes of UTF-8.
pub const MAX_DESCRIPTION_BYTES: usize = 127;
/// The longest phone number, in bytes of UTF-8.
pub const MAX_PHONE_BYTES: usize = 31;
/// The longest email address, in bytes of UTF-8.
pub const MAX_EMAIL_BYTES: usize = 127;
/// The longest region, in bytes of UTF-8.
pub const MAX_REGION_BYTES: usize = 127;
/// The longest gender, in bytes of UTF-8.
pub const MAX_GENDER_BYTES: usize = 31;
/// The longest local label of a friend, in bytes of UTF-8.
pub const MAX_LABEL_BYTES: usize = 63;

/// The version byte every friend-layer frame starts with.
pub(crate) const WIRE_VERSION: u8 = 1;
/// The first byte of the friend layer's letters in the message mailbox.
pub(crate) const LETTER_TAG: u8 = 0xF1;
/// A control stream's one-byte answer: the item was taken (stored, or known already).
pub(crate) const ANSWER_TAKEN: u8 = 1;
/// Item IDs one acknowledgement carries at most.
pub(crate) const MAX_ACKS: usize = 32;
/// The largest control frame on a `carrier/1` stream.
pub(crate) const MAX_CONTROL_FRAME_BYTES: usize = 2048;

/// A user-info field longer than its cap: each field is its own error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InfoError {
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("a name of {0} bytes exceeds the cap of {MAX_NAME_BYTES}")]
    NameTooLong(usize),
    /// The description is longer than [`MAX_DESCRIPTION_BYTES`].
    #[error("a description of {0} bytes exceeds the cap of {MAX_DESCRIPTION_BYTES}")]
    DescriptionTooLong(usize),
    /// The phone number is longer than [`MAX_PHONE_BYTES`].
    #[error("a phone number of {0} bytes exceeds the cap of {MAX_PHONE_BYTES}")]
    PhoneTooLong(usize),
    /// The email address is longer than [`MAX_EMAIL_BYTES`].
    #[error("an email address of {0} bytes exceeds the cap of {MAX_EMAIL_BYTES}")]
    EmailTooLong(usize),
    /// The region is longer than [`MAX_REGION_BYTES`].
    #[error("a region of {0} bytes exceeds the cap of {MAX_REGION_BYTES}")]
    RegionTooLong(usize),
    /// The gender is longer than [`MAX_GENDER_BYTES`].
    #[error("a gender of {0} bytes exceeds the cap of {MAX_GENDER_BYTES}")]
    GenderTooLong(usize),
}

fn capped(text: &str, max: usize, error: fn(usize) -> InfoError) -> Result<String, InfoError> {
    if text.len() > max {
        return Err(error(text.len()));
    }
    Ok(text.to_string())
}

/// What a user tells about themselves: name, description, phone, email, region, gender (UTF-8,
/// each within its cap) and whether they have an avatar. Built with [`UserInfo::new`] and the
/// `with_*` setters, each of which refuses an over-long value with its own [`InfoError`].
///
/// ```
/// use carrier_friend::{InfoError, UserInfo};
///
/// let info = UserInfo::new("Alice", "likes QUIC")
///     .unwrap()
///     .with_email("alice@example.org")?
///     .with_avatar(true);
/// assert_eq!(info.email(), "alice@example.org");
/// assert_eq!(
///     info.with_phone(&"1".repeat(32)),
///     Err(InfoError::PhoneTooLong(32))
/// );
/// # Ok::<(), InfoError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireInfo", into = "WireInfo")]
pub struct UserInfo {
    name: String,
    description: String,
    phone: String,
    email: String,
    region: String,
    gender: String,
    has_avatar: bool,
}

impl UserInfo {
    /// User info with `name` (at most [`MAX_NAME_BYTES`]) and `description` (at most
    /// [`MAX_DESCRIPTION_BYTES`]); `None` if either is too long ([`UserInfo::try_new`] says
    /// which).
    pub fn new(name: &str, description: &str) -> Option<Self> {
        Self::try_new(name, description).ok()
    }

    /// User info with `name` and `description`, or the error of the first one too long.
    pub fn try_new(name: &str, description: &str) -> Result<Self, InfoError> {
        Self::default()
            .with_name(name)?
            .with_description(description)
    }

    /// The same info with `name`.
    pub fn with_name(mut self, name: &str) -> Result<Self, InfoError> {
        self.name = capped(name, MAX_NAME_BYTES, InfoError::NameTooLong)?;
        Ok(self)
    }

    /// The same info with `description`.
    pub fn with_description(mut self, description: &str) -> Result<Self, InfoError> {
        self.description = capped(
            description,
            MAX_DESCRIPTION_BYTES,
            InfoError::DescriptionTooLong,
        )?;
        Ok(self)
    }

    /// The same info with `phone`.
    pub fn with_phone(mut self, phone: &str) -> Result<Self, InfoError> {
        self.phone = capped(phone, MAX_PHONE_BYTES, InfoError::PhoneTooLong)?;
        Ok(self)
    }

    /// The same info with `email`.
    pub fn with_email(mut self, email: &str) -> Result<Self, InfoError> {
        self.email = capped(email, MAX_EMAIL_BYTES, InfoError::EmailTooLong)?;
        Ok(self)
    }

    /// The same info with `region`.
    pub fn with_region(mut self, region: &str) -> Result<Self, InfoError> {
        self.region = capped(region, MAX_REGION_BYTES, InfoError::RegionTooLong)?;
        Ok(self)
    }

    /// The same info with `gender`.
    pub fn with_gender(mut self, gender: &str) -> Result<Self, InfoError> {
        self.gender = capped(gender, MAX_GENDER_BYTES, InfoError::GenderTooLong)?;
        Ok(self)
    }

    /// The same info, saying whether the user has an avatar.
    pub fn with_avatar(mut self, has_avatar: bool) -> Self {
        self.has_avatar = has_avatar;
        self
    }

    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The user's phone number.
    pub fn phone(&self) -> &str {
        &self.phone
    }

    /// The user's email address.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The user's region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The user's gender.
    pub fn gender(&self) -> &str {
        &self.gender
    }

    /// Whether the user has an avatar.
    pub fn has_avatar(&self) -> bool {
        self.has_avatar
    }
}

#[derive(Serialize, Deserialize)]
struct WireInfo {
    name: BoundedBytes<MAX_NAME_BYTES>,
    description: BoundedBytes<MAX_DESCRIPTION_BYTES>,
    phone: BoundedBytes<MAX_PHONE_BYTES>,
    email: BoundedBytes<MAX_EMAIL_BYTES>,
    region: BoundedBytes<MAX_REGION_BYTES>,
    gender: BoundedBytes<MAX_GENDER_BYTES>,
    has_avatar: bool,
}

impl TryFrom<WireInfo> for UserInfo {
    type Error = &'static str;
    fn try_from(wire: WireInfo) -> Result<Self, Self::Error> {
        let text = |b: Vec<u8>| String::from_utf8(b).map_err(|_| "not UTF-8");
        Ok(UserInfo {
            name: text(wire.name.into_vec())?,
            description: text(wire.description.into_vec())?,
            phone: text(wire.phone.into_vec())?,
            email: text(wire.email.into_vec())?,
            region: text(wire.region.into_vec())?,
            gender: text(wire.gender.into_vec())?,
            has_avatar: wire.has_avatar,
        })
    }
}

impl From<UserInfo> for WireInfo {
    fn from(info: UserInfo) -> Self {
        // The setters and the decoder both keep the fields within their caps.
        WireInfo {
            name: BoundedBytes::new(info.name.into_bytes()).unwrap_or_default(),
            description: BoundedBytes::new(info.description.into_bytes()).unwrap_or_default(),
            phone: BoundedBytes::new(info.phone.into_bytes()).unwrap_or_default(),
            email: BoundedBytes::new(info.email.into_bytes()).unwrap_or_default(),
            region: BoundedBytes::new(info.region.into_bytes()).unwrap_or_default(),
            gender: BoundedBytes::new(info.gender.into_bytes()).unwrap_or_default(),
            has_avatar: info.has_avatar,
        }
    }
}

/// What a user shows their friends about being around.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Presence {
    /// No status: available.
    #[default]
    None,
    /// Away.
    Away,
    /// Busy.
    Busy,
}

/// A friend request: on `carrier-request/1` or in the request mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RequestBody {
    /// The request's ID: the receiver keeps it to take the request once only.
    pub(crate) id: OutboxId,
    /// The requester's control sequence when it asked (see [`ControlBody::seq`]): a request
    /// older than a remove the receiver already applied from the requester is dropped.
    pub(crate) seq: u64,
    /// The nospam of the address the requester used.
    pub(crate) nospam: Nospam,
    /// The requester's user info.
    pub(crate) info: UserInfo,
    /// The requester's hello, 1 to [`MAX_HELLO_BYTES`] bytes.
    pub(crate) hello: BoundedBytes<MAX_HELLO_BYTES>,
}

/// A control item between two nodes: it changes whether they are friends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ControlBody {
    /// The item's ID, kept by the receiver to take it once only, and acknowledged.
    pub(crate) id: OutboxId,
    /// The sender's control sequence: a receiver ignores an item older than the newest it
    /// applied from that sender, so a late copy never undoes a newer change.
    pub(crate) seq: u64,
    /// What the item does.
    pub(crate) change: Change,
}

/// What a control item does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Change {
    /// The sender accepted the receiver's friend request; here is the sender's user info.
    Accept(UserInfo),
    /// The sender removed the receiver from its friends.
    Remove,
}

/// The sender's user info and presence, as they are now: sent to every friend at each change,
/// and the newest by `seq` wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProfileBody {
    /// The item's ID, kept by the receiver to take it once only, and acknowledged.
    pub(crate) id: OutboxId,
    /// The sender's sequence (the control sequence's counter): a receiver applies a profile
    /// only if it is newer than the newest profile or accept it has from the sender.
    pub(crate) seq: u64,
    /// The sender's user info.
    pub(crate) info: UserInfo,
    /// The sender's presence.
    pub(crate) presence: Presence,
}

/// Every frame of the friend layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Body {
    /// A friend request.
    Request(RequestBody),
    /// A control item.
    Control(ControlBody),
    /// The sender took these items of the receiver's outbox: drop them.
    Ack(BoundedVec<OutboxId, MAX_ACKS>),
    /// The sender's user info and presence.
    Profile(ProfileBody),
}

/// Why bytes are not a friend-layer frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    /// Nothing at all.
    #[error("empty frame")]
    Empty,
    /// A version this build does not know.
    #[error("unknown frame version {0}")]
    Version(u8),
    /// postcard refused the body (malformed, over a cap, not UTF-8).
    #[error("malformed frame: {0}")]
    Malformed(postcard::Error),
    /// Bytes after the body.
    #[error("{0} bytes after the frame")]
    Trailing(usize),
    /// A request with an empty hello.
    #[error("a request with an empty hello")]
    EmptyHello,
}

/// `body` as a frame.
pub(crate) fn encode(body: &Body) -> Vec<u8> {
    let mut bytes = vec![WIRE_VERSION];
    // Serializing these plain types into a Vec cannot fail.
    bytes.extend(postcard::to_allocvec(body).unwrap_or_default());
    bytes
}

/// The body of a frame, strictly.
pub(crate) fn decode(bytes: &[u8]) -> Result<Body, WireError> {
    let (&version, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    let (body, trailing) = postcard::take_from_bytes::<Body>(rest).map_err(WireError::Malformed)?;
    if !trailing.is_empty() {
        return Err(WireError::Trailing(trailing.len()));
    }
    if let Body::Request(request) = &body {
        if request.hello.is_empty() {
            return Err(WireError::EmptyHello);
        }
    }
    Ok(body)
}

/// `body` as a letter for the message mailbox.
pub(crate) fn encode_letter(body: &Body) -> Vec<u8> {
    let mut bytes = vec![LETTER_TAG];
    bytes.extend(encode(body));
    bytes
}

/// The frame inside a friend-layer letter; `None` if the letter is another layer's.
pub(crate) fn letter_frame(letter: &[u8]) -> Option<&[u8]> {
    match letter.split_first() {
        Some((&LETTER_TAG, frame)) => Some(frame),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn full_info() -> UserInfo {
        UserInfo::new(
            &"n".repeat(MAX_NAME_BYTES),
            &"d".repeat(MAX_DESCRIPTION_BYTES),
        )
        .unwrap()
        .with_phone(&"p".repeat(MAX_PHONE_BYTES))
        .unwrap()
        .with_email(&"e".repeat(MAX_EMAIL_BYTES))
        .unwrap()
        .with_region(&"r".repeat(MAX_REGION_BYTES))
        .unwrap()
        .with_gender(&"g".repeat(MAX_GENDER_BYTES))
        .unwrap()
        .with_avatar(true)
    }

    fn request(hello: &[u8]) -> Body {
        Body::Request(RequestBody {
            id: OutboxId([7; 16]),
            seq: 1_764_000_000_000,
            nospam: Nospam(0xdead_beef),
            info: UserInfo::new("Alice", "likes QUIC").unwrap(),
            hello: BoundedBytes::from_slice(hello).unwrap(),
        })
    }

    #[test]
    fn every_body_round_trips() {
        let bodies = [
            request(b"hi"),
            request(&[9; MAX_HELLO_BYTES]),
            Body::Control(ControlBody {
                id: OutboxId([1; 16]),
                seq: 42,
                change: Change::Accept(UserInfo::new(&"n".repeat(63), &"d".repeat(127)).unwrap()),
            }),
            Body::Control(ControlBody {
                id: OutboxId([2; 16]),
                seq: u64::MAX,
                change: Change::Remove,
            }),
            Body::Ack(BoundedVec::new(vec![OutboxId([3; 16]); MAX_ACKS]).unwrap()),
            Body::Profile(ProfileBody {
                id: OutboxId([4; 16]),
                seq: 7,
                info: full_info(),
                presence: Presence::Busy,
            }),
        ];
        for body in bodies {
            let bytes = encode(&body);
            assert!(bytes.len() <= MAX_CONTROL_FRAME_BYTES);
            assert!(bytes.len() <= crate::link::MAX_REQUEST_FRAME_BYTES);
            assert_eq!(decode(&bytes).unwrap(), body);
            let letter = encode_letter(&body);
            assert_eq!(decode(letter_frame(&letter).unwrap()).unwrap(), body);
        }
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert_eq!(decode(&[]), Err(WireError::Empty));
        let mut bytes = encode(&request(b"hi"));
        bytes[0] = 2;
        assert_eq!(decode(&bytes), Err(WireError::Version(2)));
        let mut bytes = encode(&request(b"hi"));
        bytes.push(0);
        assert_eq!(decode(&bytes), Err(WireError::Trailing(1)));
        let empty = Body::Request(RequestBody {
            id: OutboxId([7; 16]),
            seq: 1,
            nospam: Nospam(1),
            info: UserInfo::default(),
            hello: BoundedBytes::default(),
        });
        assert_eq!(decode(&encode(&empty)), Err(WireError::EmptyHello));
        // A hello one byte over the cap.
        let mut over = encode(&request(&[1; MAX_HELLO_BYTES]));
        let at = over.len() - MAX_HELLO_BYTES - 2;
        assert_eq!(&over[at..at + 2], &[0x80, 0x08], "varint 1024");
        over[at] = 0x81;
        over.push(1);
        assert!(matches!(decode(&over), Err(WireError::Malformed(_))));
        // A name that is not UTF-8.
        let mut bad = encode(&request(b"hi"));
        let name = bad.iter().position(|&b| b == b'A').unwrap();
        bad[name] = 0xff;
        assert!(matches!(decode(&bad), Err(WireError::Malformed(_))));
        assert_eq!(letter_frame(&[0x00, 1, 2]), None);
        assert_eq!(letter_frame(&[]), None);
    }

    #[test]
    fn user_info_respects_its_caps() {
        assert!(UserInfo::new(&"n".repeat(MAX_NAME_BYTES), "").is_some());
        assert!(UserInfo::new(&"n".repeat(MAX_NAME_BYTES + 1), "").is_none());
        assert!(UserInfo::new("", &"d".repeat(MAX_DESCRIPTION_BYTES + 1)).is_none());
        let info = UserInfo::default();
        let over = |max: usize| "x".repeat(max + 1);
        assert_eq!(
            UserInfo::try_new(&over(MAX_NAME_BYTES), ""),
            Err(InfoError::NameTooLong(MAX_NAME_BYTES + 1))
        );
        assert_eq!(
            UserInfo::try_new("", &over(MAX_DESCRIPTION_BYTES)),
            Err(InfoError::DescriptionTooLong(MAX_DESCRIPTION_BYTES + 1))
        );
        assert_eq!(
            info.clone().with_phone(&over(MAX_PHONE_BYTES)),
            Err(InfoError::PhoneTooLong(MAX_PHONE_BYTES + 1))
        );
        assert_eq!(
            info.clone().with_email(&over(MAX_EMAIL_BYTES)),
            Err(InfoError::EmailTooLong(MAX_EMAIL_BYTES + 1))
        );
        assert_eq!(
            info.clone().with_region(&over(MAX_REGION_BYTES)),
            Err(InfoError::RegionTooLong(MAX_REGION_BYTES + 1))
        );
        assert_eq!(
            info.with_gender(&over(MAX_GENDER_BYTES)),
            Err(InfoError::GenderTooLong(MAX_GENDER_BYTES + 1))
        );
        let full = full_info();
        assert_eq!(full.phone().len(), MAX_PHONE_BYTES);
        assert!(full.has_avatar());
    }

    #[test]
    fn an_over_long_field_on_the_wire_is_refused() {
        let body = Body::Profile(ProfileBody {
            id: OutboxId([4; 16]),
            seq: 1,
            info: UserInfo::default()
                .with_gender(&"g".repeat(MAX_GENDER_BYTES))
                .unwrap(),
            presence: Presence::Away,
        });
        let mut bytes = encode(&body);
        // The gender's length byte (31) sits just before its 31 bytes, then the avatar flag
        // and the presence.
        let at = bytes.len() - MAX_GENDER_BYTES - 3;
        assert_eq!(bytes[at], MAX_GENDER_BYTES as u8);
        bytes[at] = MAX_GENDER_BYTES as u8 + 1;
        bytes.insert(at + 1, b'g');
        assert!(matches!(decode(&bytes), Err(WireError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2100)) {
            let _ = decode(&bytes);
            if let Some(frame) = letter_frame(&bytes) {
                let _ = decode(frame);
            }
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_prefix_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..64),
            cut in 0usize..200,
        ) {
            let mut bytes = encode(&request(b"hello there"));
            bytes.truncate(cut.min(bytes.len()));
            bytes.extend(tail);
            let _ = decode(&bytes);
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_profile_prefix_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..64),
            cut in 0usize..700,
        ) {
            let mut bytes = encode(&Body::Profile(ProfileBody {
                id: OutboxId([4; 16]),
                seq: 3,
                info: full_info(),
                presence: Presence::Away,
            }));
            bytes.truncate(cut.min(bytes.len()));
            bytes.extend(tail);
            if let Ok(Body::Profile(profile)) = decode(&bytes) {
                prop_assert!(profile.info.name().len() <= MAX_NAME_BYTES);
                prop_assert!(profile.info.gender().len() <= MAX_GENDER_BYTES);
            }
        }
    }
}
