//! Mailbox queries in progress: what each does once its lookup is done (`MailboxOp`) and what
//! its requests to the storers have gathered (`MailboxRun`). The node runs them in
//! `mailbox_commands.rs`.

use std::collections::BTreeMap;

use crate::mailbox::{DeleteSecret, ItemId, MailboxItem};
use crate::wire::key::Key;
use crate::wire::message::Refusal;

/// What a mailbox query does once its lookup is done.
#[derive(Clone, Debug)]
pub(crate) enum MailboxOp {
    Deposit {
        key: Key,
        items: Vec<MailboxItem>,
    },
    Fetch {
        key: Key,
    },
    Delete {
        key: Key,
        receipts: Vec<(ItemId, DeleteSecret)>,
    },
}

/// The requests of a mailbox query to its storers.
#[derive(Clone, Debug, Default)]
pub(crate) struct MailboxRun {
    pub(super) awaiting: usize,
    pub(super) acks: Vec<(ItemId, usize)>,
    pub(super) refusals: Vec<Refusal>,
    pub(super) found: BTreeMap<ItemId, MailboxItem>,
}

impl MailboxOp {
    pub(super) fn key(&self) -> Key {
        match self {
            MailboxOp::Deposit { key, .. }
            | MailboxOp::Fetch { key }
            | MailboxOp::Delete { key, .. } => *key,
        }
    }
}

impl MailboxRun {
    pub(super) fn ack(&mut self, id: &ItemId) {
        if let Some((_, n)) = self.acks.iter_mut().find(|(i, _)| i == id) {
            *n += 1;
        }
    }
}
