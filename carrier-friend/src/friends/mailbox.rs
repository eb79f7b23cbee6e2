//! The node's own mailboxes: taking what waits in them, and depositing in peers'.

use std::collections::HashMap;
use std::sync::Arc;

use carrier_dht::bounded::BoundedVec;
use carrier_dht::id::{Address, CarrierId};

use super::rules::Taken;
use super::wire::{self, Body, MAX_ACKS};
use super::{read, Core};
use crate::outbox::{OutboxEntry, OutboxId, Route};

impl Core {
    /// Takes what waits in the request mailbox of the current nospam and the friend layer's
    /// letters in the message mailbox; deletes what was taken and acknowledges it to its
    /// sender through the sender's mailbox.
    pub(super) async fn poll_mailboxes(&self) {
        let nospam = read(&self.state).nospam;
        let mut acks: HashMap<CarrierId, Vec<OutboxId>> = HashMap::new();
        if let Ok(letters) = self.dht.fetch_requests(nospam).await {
            for letter in letters {
                let frame = wire::letter_frame(&letter.bytes).unwrap_or_default();
                let id = match wire::decode(frame) {
                    Ok(Body::Request(request)) => Some(request.id),
                    _ => None,
                };
                let taken = self.take_request(letter.sender, frame).await;
                if matches!(taken, Ok(ref t) if !matches!(t, Taken::Full)) {
                    if let Some(id) = id {
                        acks.entry(letter.sender).or_default().push(id);
                    }
                    // A delete that fails is tried at the next check; the item is taken once.
                    let _ = self.dht.delete(&letter).await;
                }
            }
        }
        if let Ok(letters) = self.dht.fetch().await {
            for letter in letters {
                // Letters of other layers are theirs to take.
                let Some(frame) = wire::letter_frame(&letter.bytes) else {
                    continue;
                };
                let (taken, ack) = self.take_frame(letter.sender, frame).await;
                if let Some(id) = ack {
                    acks.entry(letter.sender).or_default().push(id);
                }
                if taken {
                    let _ = self.dht.delete(&letter).await;
                }
            }
        }
        for (peer, ids) in acks {
            for chunk in ids.chunks(MAX_ACKS) {
                let ids = BoundedVec::truncating(chunk.to_vec());
                // Lost acknowledgements cost a retry, which is taken once and acknowledged
                // again.
                let _ = self
                    .dht
                    .deposit(&peer, &wire::encode_letter(&Body::Ack(ids)))
                    .await;
            }
        }
    }

    /// Deposits `entry` in its peer's mailbox; whether every item was stored.
    pub(super) async fn deposit(&self, entry: &OutboxEntry) -> bool {
        let mut letter = vec![wire::LETTER_TAG];
        letter.extend_from_slice(&entry.payload);
        let deposited = match entry.route {
            Route::Requests(nospam) => {
                self.dht
                    .deposit_request(&Address::new(entry.peer, nospam), &letter)
                    .await
            }
            Route::Messages => self.dht.deposit(&entry.peer, &letter).await,
        };
        deposited.is_ok()
    }
}

pub(super) async fn poll_loop(core: Arc<Core>) {
    loop {
        core.poll_mailboxes().await;
        tokio::time::sleep(core.config.poll_interval).await;
    }
}
