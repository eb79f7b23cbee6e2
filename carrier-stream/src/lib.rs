//! Sessions and streams between Carrier friends, in reliable or datagram mode.
//!
//! For data too big or too continuous for messages, friends open a **session**: an invite
//! to the friend's `session` extension ([`Sessions::request`]) that the friend's node hands
//! to the handler of the longest registered bundle prefix ([`Sessions::handle`], `""` for
//! the default). A session holds **streams** ([`Session::add_stream`], on either side) of a
//! [`StreamKind`] both sides see, in one of two [`StreamMode`]s behind one [`Stream`] type:
//!
//! - `Reliable`: a QUIC stream of its own on the friend's link: ordered, lossless, always
//!   encrypted; also tokio's `AsyncRead` / `AsyncWrite`, with half-close.
//! - `Datagram`: QUIC datagrams tagged with the session and stream IDs, into the stream's own
//!   bounded receive queue (a slow reader drops only its own datagrams); unordered and lossy,
//!   never merged or corrupted, at most [`MAX_DATAGRAM_BYTES`] each, a limit that holds on
//!   every path.
//!
//! A stream reports its [`StreamState`]s in order. When the friend's link goes down, open
//! streams fail with a reason and the session deactivates ([`SessionEvent::Deactivated`]);
//! if the link returns within the [grace period](SessionConfig::with_grace_period) the
//! session takes new streams again ([`SessionEvent::Reactivated`]), otherwise it closes. A
//! friend that restarted meanwhile is asked to resume it: its handler gets a
//! [`SessionRequest`] whose [`is_resume`](SessionRequest::is_resume) is true.
//! Errors are [`StreamError`]s, one variant per case.
//!
//! A reliable stream may carry **channels** ([`Session::add_multiplexed_stream`]): the hook
//! for carrier-mux. Each channel is a QUIC stream of its own on the friend's link, opened
//! with a header through the stream's [`ChannelOpener`] and routed to the friend's
//! [`IncomingChannels`]; each open channel grows the link's receive window by
//! [`CHANNEL_WINDOW_BYTES`], and the side that takes channels keeps [`CHANNEL_HEADROOM`]
//! streams of the link's limit free.
//!
//! # Rooms
//!
//! - `session`: [`Sessions`] (the driver), [`Session`], requests and handlers, the
//!   longest-prefix rule and the grace period (both without I/O), [`TransportInfo`].
//! - `stream`: [`Stream`], its kinds, modes and states (the order rule without I/O); the
//!   channels' hook ([`ChannelOpener`], [`IncomingChannels`], [`ChannelStream`]).
//! - `wire`: the frames, bounded and strictly decoded.
//! - `config`: [`SessionConfig`]. `error`: [`StreamError`].
//!
//! # Example
//!
//! ```no_run
//! # async fn example(
//! #     alice: carrier_stream::Sessions,
//! #     bob: carrier_stream::Sessions,
//! #     bob_id: carrier_stream::msg::friend::dht::id::CarrierId,
//! # ) -> Result<(), carrier_stream::StreamError> {
//! use carrier_stream::{StreamKind, StreamMode};
//!
//! // Bob takes every session whose bundle starts with "files/".
//! let mut files = bob.handle("files/")?;
//! tokio::spawn(async move {
//!     while let Some(request) = files.recv().await {
//!         let Ok(session) = request.accept().await else { continue };
//!         while let Some(mut stream) = session.accept_stream().await {
//!             while let Ok(Some(chunk)) = stream.recv().await {
//!                 let _ = chunk; // store it
//!             }
//!         }
//!     }
//! });
//!
//! let session = alice.request(&bob_id, "files/photos").await?;
//! let mut stream = session.add_stream(StreamKind::Application, StreamMode::Reliable).await?;
//! stream.send(b"a photo").await?;
//! stream.finish()?;
//! # Ok(()) }
//! ```
//!
//! See `docs/ARCHITECTURE.md`, "carrier-stream", for the decisions behind this crate.

pub use carrier_msg as msg;

pub mod codes;
mod config;
mod error;
mod session;
mod stream;
mod wire;

pub use config::{
    SessionConfig, DEFAULT_DATAGRAM_QUEUE, DEFAULT_GRACE_PERIOD, DEFAULT_OPEN_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
};
pub use error::StreamError;
pub use session::{
    status, Session, SessionEvent, SessionReport, SessionReports, SessionRequest, SessionRequests,
    SessionState, Sessions, Topology, TransportInfo, SESSION_EXTENSION, STREAM_HEADROOM,
};
pub use stream::{
    ChannelOpener, ChannelStream, DatagramSender, IncomingChannels, LinkShare, Stream, StreamKind,
    StreamMode, StreamState, CHANNEL_HEADROOM, CHANNEL_WINDOW_BYTES, MAX_DATAGRAM_BYTES,
};
pub use wire::MAX_CHANNEL_HEADER_BYTES;
