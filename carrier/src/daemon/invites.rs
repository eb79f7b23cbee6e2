//! The invites part of the daemon: `invite` (answered with the friend's reply), `invites`
//! (registers an extension and lists the pending invites), `reply`, and the `invite` event.

use std::sync::{Arc, Weak};

use carrier::msg::{IncomingInvite, InviteError, InviteId, InviteInbox};
use serde_json::{json, Value};

use super::messages::to_hex;
use super::node::{lock, DaemonNode, Refusal};
use super::protocol::{echo, ErrorKind, Event, InviteEntry};

impl DaemonNode {
    /// `invite`: waits for the friend's reply (or the invite's timeout, 5 minutes).
    pub(super) async fn invite(
        &self,
        friend: &str,
        extension: &str,
        bundle: &str,
        data: &str,
    ) -> Result<Value, Refusal> {
        let to = self.friend(friend)?;
        let reply = self
            .messenger
            .invite(&to, extension, bundle.as_bytes(), data.as_bytes())
            .await
            .map_err(refusal)?;
        let (text, hex) = text_or_hex(&reply.data);
        Ok(json!({
            "friend": to.to_string(),
            "status": reply.status,
            "reason": reply.reason,
            "data": text,
            "data_hex": hex,
        }))
    }

    /// `invites`: registers `extension` (if given and not yet registered: its invites are
    /// taken and raised as `invite` events from now on) and lists the pending invites of the
    /// registered extensions (of `extension` alone, if given).
    pub(super) fn invites(self: &Arc<Self>, extension: Option<&str>) -> Result<Value, Refusal> {
        if let Some(name) = extension {
            let mut registered = lock(&self.extensions);
            if !registered.contains(name) {
                let inbox = self.messenger.register_extension(name).map_err(refusal)?;
                registered.insert(name.to_string());
                tracing::info!(extension = name, "taking invites");
                tokio::spawn(pump_invites(Arc::downgrade(self), inbox));
            }
        }
        let registered = lock(&self.extensions).clone();
        let pending: Vec<InviteEntry> = self
            .messenger
            .invites()
            .pending()
            .iter()
            .filter(|invite| match extension {
                Some(name) => invite.extension == name,
                None => registered.contains(&invite.extension),
            })
            .map(entry)
            .collect();
        let mut extensions: Vec<String> = registered.into_iter().collect();
        extensions.sort();
        Ok(json!({ "extensions": extensions, "invites": pending }))
    }

    /// `reply`: answers the pending invite `invite`.
    pub(super) async fn reply_invite(
        &self,
        invite: u64,
        status: i32,
        reason: &str,
        data: &str,
    ) -> Result<Value, Refusal> {
        let sent = match self
            .messenger
            .reply_invite(InviteId::from_u64(invite), status, reason, data.as_bytes())
            .await
        {
            Ok(()) => true,
            // The invite's link was lost (it may have lost the race of two first dials):
            // the reply is kept and goes when the inviter sends the invite again, as it does
            // on its next link within its timeout.
            Err(InviteError::InviterGone(_)) => false,
            Err(e) => return Err(refusal(e)),
        };
        Ok(json!({ "invite": invite, "status": status, "sent": sent }))
    }
}

/// Raises each invite of one registered extension as an `invite` event.
async fn pump_invites(node: Weak<DaemonNode>, mut inbox: InviteInbox) {
    while let Some(invite) = inbox.recv().await {
        let Some(node) = node.upgrade() else {
            return;
        };
        tracing::info!(from = %invite.from, extension = %invite.extension, "invite");
        node.send(Event::Invite(entry(&invite)));
    }
}

fn entry(invite: &IncomingInvite) -> InviteEntry {
    let (bundle, bundle_hex) = text_or_hex(&invite.bundle);
    let (data, data_hex) = text_or_hex(&invite.data);
    InviteEntry {
        id: invite.id.as_u64(),
        from: invite.from.to_string(),
        extension: invite.extension.clone(),
        bundle,
        bundle_hex,
        data,
        data_hex,
    }
}

/// Bytes as text when they are UTF-8, else as hex.
fn text_or_hex(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text.to_string()), None),
        Err(_) => (None, Some(to_hex(bytes))),
    }
}

/// What the invites' refusal tells the user.
fn refusal(error: InviteError) -> Refusal {
    let message = error.to_string();
    let kind = match error {
        InviteError::Yourself => ErrorKind::Yourself,
        InviteError::NotAFriend(_) => ErrorKind::UnknownFriend,
        InviteError::EmptyExtension
        | InviteError::EmptyData
        | InviteError::ReasonOnConfirm
        | InviteError::DataOnRefusal(_) => ErrorKind::BadArguments,
        InviteError::ExtensionTooLong { .. }
        | InviteError::BundleTooLong { .. }
        | InviteError::DataTooLong { .. }
        | InviteError::ReasonTooLong { .. } => ErrorKind::InviteTooLarge,
        InviteError::UnknownExtension { .. } => ErrorKind::UnknownExtension,
        InviteError::Busy(_) => ErrorKind::FriendBusy,
        InviteError::Timeout => ErrorKind::Timeout,
        InviteError::UnknownInvite(_) => ErrorKind::UnknownInvite,
        InviteError::AlreadyReplied(_) => ErrorKind::AlreadyReplied,
        InviteError::Closed => ErrorKind::Stopping,
        _ => ErrorKind::Failed,
    };
    (kind, echo(&message))
}
