//! Multiplexed channels inside a Carrier stream.
//!
//! A [`Mux`] runs over one multiplexed reliable stream of a session
//! ([`Mux::open`] on one side, [`Mux::accept`] with the stream the friend added on the other).
//! Either side opens **channels** with a cookie ([`Mux::open_channel`], at most
//! [`MAX_COOKIE_BYTES`]); the other side's application accepts or refuses each one with a
//! reason ([`ChannelRequests`], [`ChannelRequest`]). A [`Channel`] is a full-duplex byte
//! stream (tokio's `AsyncRead` + `AsyncWrite`, with half-close), closed with a
//! [`CloseReason`] the friend sees.
//!
//! **Isolation.** Each channel is a QUIC stream of its own on the friend's link, so a slow or
//! paused channel never holds up another. [`Mux::pend`] stops the friend's writer on a
//! channel as soon as it arrives ([`MuxEvent::Pending`] there; [`Mux::resume`] lets it go on).
//! Each channel has its own credit ([`MuxConfig::with_credit`]): a writer sends at most that
//! beyond what the reader consumed, and each open channel grows the link's receive window by
//! as much (carrier-stream's
//! [`CHANNEL_WINDOW_BYTES`](carrier_stream::CHANNEL_WINDOW_BYTES)), so paused or slow
//! channels never fill the window the link's other traffic needs. When the stream or the
//! link goes down, every channel closes with [`CloseReason::Lost`] and the reason.
//!
//! # Rooms
//!
//! - `mux`: [`Mux`], [`ChannelRequests`], [`ChannelRequest`], the control tasks.
//! - `channel`: [`Channel`]. `event`: [`MuxEvent`], [`ChannelId`].
//! - `credit`: each channel's credit, without I/O. `state`: what the tasks and channels share.
//! - `wire`: the frames (channel header, answer, control), bounded and strictly decoded.
//! - `config`: [`MuxConfig`]. `error`: [`MuxError`], [`CloseReason`].
//!
//! # Example
//!
//! ```no_run
//! # async fn example(
//! #     alice: carrier_mux::stream::Session,
//! #     bob: carrier_mux::stream::Session,
//! # ) -> Result<(), carrier_mux::MuxError> {
//! use carrier_mux::{CloseReason, Mux, MuxConfig};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! // Bob serves channels on the multiplexed stream Alice adds.
//! tokio::spawn(async move {
//!     let Some(stream) = bob.accept_stream().await else { return };
//!     let Ok((_mux, mut requests)) = Mux::accept(stream, MuxConfig::default()) else { return };
//!     while let Some(request) = requests.recv().await {
//!         if request.cookie() != b"echo" {
//!             let _ = request.refuse("no such service").await;
//!             continue;
//!         }
//!         let Ok(channel) = request.accept().await else { continue };
//!         tokio::spawn(async move {
//!             let (mut read, mut write) = tokio::io::split(channel);
//!             let _ = tokio::io::copy(&mut read, &mut write).await;
//!             let _ = write.shutdown().await;
//!         });
//!     }
//! });
//!
//! let (mux, _requests) = Mux::open(&alice, MuxConfig::default()).await?;
//! let mut channel = mux.open_channel(b"echo").await?;
//! channel.write_all(b"hello").await.map_err(|e| carrier_mux::MuxError::Gone(e.to_string()))?;
//! channel.shutdown().await.map_err(|e| carrier_mux::MuxError::Gone(e.to_string()))?;
//! let mut answer = Vec::new();
//! channel.read_to_end(&mut answer).await.map_err(|e| carrier_mux::MuxError::Gone(e.to_string()))?;
//! channel.close(CloseReason::Normal).await?;
//! # Ok(()) }
//! ```
//!
//! See `docs/ARCHITECTURE.md`, "Channels (carrier-mux)", for the decisions behind this crate.

pub use carrier_stream as stream;

mod channel;
mod config;
mod credit;
mod error;
mod event;
mod mux;
mod report;
mod state;
mod wire;

pub use channel::Channel;
pub use config::{MuxConfig, DEFAULT_OPEN_TIMEOUT, MIN_CREDIT_BYTES};
pub use error::{CloseReason, MuxError};
pub use event::{ChannelId, MuxEvent};
pub use mux::{ChannelRequest, ChannelRequests, Mux};
pub use report::{ChannelChange, ChannelReport};
pub use wire::{MAX_COOKIE_BYTES, MAX_REASON_BYTES};
