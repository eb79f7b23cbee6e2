//! Mailboxes: sealed items left in the DHT for a recipient who may be offline. The item
//! format lives with the other wire formats and is re-exported here; this folder holds the
//! letters cut into items ([`crate::mailbox::seal_letter`],
//! [`crate::mailbox::open_letters`]) and a storer's rules ([`crate::mailbox::storer`]).
//! Uses `wire`.

mod letter;
pub mod storer;

pub use crate::wire::mailbox_item::{
    day_of, mailbox_key, DeleteSecret, ItemId, MailboxItem, MailboxKind, DAY_SECS,
    MAILBOX_DELETE_CONTEXT, MAILBOX_ITEM_CONTEXT, MAILBOX_ITEM_VERSION, MAX_PAGE_ITEMS,
    MAX_SEALED_ITEM_BYTES, MIN_SEALED_ITEM_BYTES, PAGE_BUDGET_BYTES,
};
pub use letter::{
    open_letters, seal_letter, Letter, LetterError, MAX_CHUNK_BYTES, MAX_LETTER_BYTES,
};
