//! What a stream on the messages extension carries: its first byte, after the extension
//! header the friend layer's router strips.
//!
//! Every stream a friend opens on [`Extension::MSG`](carrier_friend::Extension::MSG) starts
//! with one of these bytes; a stream with any other byte is closed without reading further.

/// Message traffic: batches of messages, receipts and skips.
pub(crate) const MESSAGES: u8 = 0x01;
/// One invite and its reply, on a bidirectional stream.
pub(crate) const INVITE: u8 = 0x02;
/// One message over 64 KiB, alone on a unidirectional stream, so it never holds up the small
/// ones behind it.
pub(crate) const LARGE_MESSAGE: u8 = 0x03;
