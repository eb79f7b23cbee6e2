//! The mailbox API of [`Dht`]: deposit a letter for a recipient who may be offline, fetch
//! one's own mailbox, delete what was read. The protocol is in the core
//! ([`crate::Node::deposit`] and its siblings); this is the driver's side.

use std::time::Instant;

use carrier_id::{Address, CarrierId, Nospam};

use crate::io::dht::Dht;
use crate::io::error::{DhtError, MailboxError};
use crate::io::{lock, now_from};
use crate::mailbox::{
    open_letters, seal_letter, Letter, LetterError, MailboxItem, MailboxKind, MAX_LETTER_BYTES,
};
use crate::node::error::CommandError;
use crate::node::event::{QueryOutcome, Unstored};
use crate::wire::entropy::Entropy;
use crate::wire::key::Key;
use crate::wire::message::Refusal;

/// What a deposit did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deposit {
    /// The mailbox the letter went to.
    pub mailbox: Key,
    /// Items it took (chunks and manifest).
    pub items: usize,
    /// Storers that confirmed the item confirmed by the fewest.
    pub fewest_acks: usize,
}

impl Dht {
    /// Deposits `bytes` (up to [`MAX_LETTER_BYTES`]) in `recipient`'s message mailbox for
    /// today: signed by this node, sealed to `recipient`, cut into items stored at the K
    /// closest servers to the mailbox key. Succeeds when every item was stored somewhere.
    pub async fn deposit(&self, recipient: &CarrierId, bytes: &[u8]) -> Result<Deposit, DhtError> {
        self.deposit_in(recipient, MailboxKind::Messages, bytes)
            .await
    }

    /// Deposits a friend request: as [`Dht::deposit`], in the request mailbox of `address`,
    /// which its nospam selects.
    pub async fn deposit_request(
        &self,
        address: &Address,
        bytes: &[u8],
    ) -> Result<Deposit, DhtError> {
        let kind = MailboxKind::Requests(address.nospam());
        self.deposit_in(&address.id(), kind, bytes).await
    }

    /// Deposits `bytes` in `recipient`'s mailbox of `kind`.
    pub async fn deposit_in(
        &self,
        recipient: &CarrierId,
        kind: MailboxKind,
        bytes: &[u8],
    ) -> Result<Deposit, DhtError> {
        if bytes.len() > MAX_LETTER_BYTES {
            return Err(MailboxError::TooLarge {
                len: bytes.len(),
                max: MAX_LETTER_BYTES,
            }
            .into());
        }
        self.require_contacts()?;
        let (mailbox, expires, keypair) = {
            let node = lock(&self.shared.node);
            let now = now_from(self.shared.epoch, Instant::now());
            let (key, expires) = node.deposit_target(now, recipient, kind);
            (key, expires, node.keypair().clone())
        };
        // Sealing costs a Diffie-Hellman and a signature per item: done off the core's lock
        // and off the runtime's threads, so the node keeps answering meanwhile.
        let sealed = tokio::task::spawn_blocking({
            let (recipient, bytes) = (*recipient, bytes.to_vec());
            move || {
                let mut seed = [0u8; 32];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
                let mut entropy = Entropy::from_seed(seed);
                seal_letter(&keypair, &recipient, mailbox, &bytes, expires, &mut entropy)
            }
        })
        .await
        .map_err(|_| DhtError::Closed)?;
        let items = sealed
            .map_err(CommandError::from)
            .map_err(|e| unwrap_recipient(e.into()))?;
        let finished = self
            .query(|node, now| node.deposit_items(now, mailbox, items))
            .await?;
        let (items, fewest_acks) = every_item_stored(&finished.outcome)?;
        Ok(Deposit {
            mailbox,
            items,
            fewest_acks,
        })
    }

    /// The letters in this node's message mailbox, for the previous, current and next day,
    /// each verified (signed by its sender, sealed to us, written for that mailbox) and put
    /// back together. Items that fail any check are left out.
    pub async fn fetch(&self) -> Result<Vec<Letter>, DhtError> {
        self.fetch_kind(MailboxKind::Messages).await
    }

    /// The friend requests in this node's request mailbox for `nospam`.
    pub async fn fetch_requests(&self, nospam: Nospam) -> Result<Vec<Letter>, DhtError> {
        self.fetch_kind(MailboxKind::Requests(nospam)).await
    }

    /// The letters in this node's mailbox of `kind`.
    pub async fn fetch_kind(&self, kind: MailboxKind) -> Result<Vec<Letter>, DhtError> {
        self.require_contacts()?;
        // Which mailboxes (three days) is the core's rule; their fetches run at once.
        let fetched = self
            .queries(|node, now| node.fetch_own_mailboxes(now, kind))
            .await?;
        let keypair = lock(&self.shared.node).keypair().clone();
        let mut letters = Vec::new();
        for (key, finished) in fetched {
            if let QueryOutcome::Mailbox(items) = finished.outcome {
                // Opening costs a Diffie-Hellman and a signature check per item: done outside
                // the core's lock, so the node keeps answering meanwhile.
                letters.extend(open_letters(&keypair, key, &items));
            }
        }
        Ok(letters)
    }

    /// Every item stored in mailbox `key`, still sealed: what anyone can fetch (and only the
    /// recipient can open), for diagnostics and tests.
    pub async fn fetch_items(&self, key: Key) -> Result<Vec<MailboxItem>, DhtError> {
        self.require_contacts()?;
        let finished = self.query(|node, now| node.fetch_mailbox(now, key)).await?;
        match finished.outcome {
            QueryOutcome::Mailbox(items) => Ok(items),
            _ => Ok(Vec::new()),
        }
    }

    /// Deletes `letter` (fetched from this node's mailbox) at the storers, which check each
    /// item's delete secret. Returns how many storers confirmed the item confirmed by the
    /// fewest.
    pub async fn delete(&self, letter: &Letter) -> Result<usize, DhtError> {
        self.require_contacts()?;
        let finished = self
            .query(|node, now| node.delete_letter(now, letter))
            .await
            .map_err(unwrap_recipient)?;
        every_item_stored(&finished.outcome).map(|(_, fewest)| fewest)
    }
}

/// Sealing failures of the core, as the mailbox errors they are.
fn unwrap_recipient(error: DhtError) -> DhtError {
    match error {
        DhtError::Command(CommandError::Letter(LetterError::Crypto(e))) => {
            MailboxError::Recipient(e).into()
        }
        DhtError::Command(CommandError::Letter(LetterError::TooLarge(t))) => {
            MailboxError::TooLarge {
                len: t.len,
                max: t.cap,
            }
            .into()
        }
        other => other,
    }
}

/// A mailbox store's outcome by the core's rule ([`QueryOutcome::every_item_stored`]), as
/// the driver's error.
fn every_item_stored(outcome: &QueryOutcome) -> Result<(usize, usize), DhtError> {
    match outcome.every_item_stored() {
        Ok(fewest) => {
            let items = match outcome {
                QueryOutcome::MailboxStored { acks, .. } => acks.len(),
                _ => 0,
            };
            Ok((items, fewest))
        }
        Err(Unstored {
            missing,
            items,
            refusals,
        }) => {
            if refusals.contains(&Refusal::Quota) {
                Err(MailboxError::Quota { missing, items }.into())
            } else {
                Err(MailboxError::NoStorerAccepted {
                    missing,
                    items,
                    refusals,
                }
                .into())
            }
        }
    }
}
