//! What inviting, registering and replying refuse or fail at: [`InviteError`].

use carrier_friend::dht::id::CarrierId;

use super::table::InviteId;

/// What [`Invites`](super::Invites) refuses or fails at. Each refusal of an argument is its
/// own variant, so a caller can tell which limit it broke.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    /// A node cannot invite itself.
    #[error("an invite to this node itself")]
    Yourself,
    /// The invitee is not a friend (or stopped being one while the invite waited).
    #[error("{0} is not a friend")]
    NotAFriend(CarrierId),
    /// An extension name is empty.
    #[error("the extension name is empty")]
    EmptyExtension,
    /// An extension name is longer than
    /// [`MAX_EXTENSION_NAME_BYTES`](super::MAX_EXTENSION_NAME_BYTES).
    #[error("an extension name of {len} bytes exceeds the cap of {max}")]
    ExtensionTooLong {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The bundle is longer than [`MAX_BUNDLE_BYTES`](super::MAX_BUNDLE_BYTES).
    #[error("a bundle of {len} bytes exceeds the cap of {max}")]
    BundleTooLong {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// An invite, or a reply confirming one, needs data of at least one byte.
    #[error("the data is empty")]
    EmptyData,
    /// The data is longer than [`MAX_INVITE_DATA_BYTES`](super::MAX_INVITE_DATA_BYTES).
    #[error("data of {len} bytes exceeds the cap of {max}")]
    DataTooLong {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The reason is longer than [`MAX_REASON_BYTES`](super::MAX_REASON_BYTES).
    #[error("a reason of {len} bytes exceeds the cap of {max}")]
    ReasonTooLong {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A reply with status 0 confirms, and a confirmation carries data, not a reason.
    #[error("a confirming reply (status 0) carries no reason")]
    ReasonOnConfirm,
    /// A reply with a status other than 0 refuses, and a refusal carries a reason, not data.
    #[error("a refusing reply (status {0}) carries no data")]
    DataOnRefusal(i32),
    /// The extension already has an inbox on this node (registering again takes dropping the
    /// first inbox).
    #[error("extension {0:?} already has an inbox")]
    AlreadyRegistered(String),
    /// The invitee's node has no inbox for the invite's extension: refused at once, by the
    /// invitee's node rather than its application.
    #[error("{friend} has no extension {extension:?}")]
    UnknownExtension {
        /// The invitee.
        friend: CarrierId,
        /// The extension the invite named.
        extension: String,
    },
    /// The invitee holds as many unanswered invites as it takes; try again later.
    #[error("{0} holds too many unanswered invites")]
    Busy(CarrierId),
    /// No reply within the invite's timeout (offline all along, or no answer).
    #[error("no reply within the timeout")]
    Timeout,
    /// No pending invite has this ID here (never received, or forgotten once its inviter's
    /// timeout passed).
    #[error("no pending invite {0}")]
    UnknownInvite(InviteId),
    /// The invite was replied to already.
    #[error("invite {0} was replied to already")]
    AlreadyReplied(InviteId),
    /// The reply could not be written: the stream the invite came on is gone. The reply is
    /// kept and sent again if the inviter sends the invite again on a new link before its
    /// timeout.
    #[error("invite {0}'s inviter is not listening on its stream any more")]
    InviterGone(InviteId),
    /// The invitee answered with something that is no answer, or reset the invite's stream.
    #[error("the invite's stream failed: {0}")]
    Stream(String),
    /// [`Invites::shutdown`](super::Invites::shutdown) was called.
    #[error("the invites layer is shut down")]
    Closed,
}
