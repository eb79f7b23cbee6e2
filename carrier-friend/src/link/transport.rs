//! QUIC transport settings, each chosen on purpose.
//!
//! - **Streams**: a link starts with [`MAX_CONCURRENT_BIDI_STREAMS`] and
//!   [`MAX_CONCURRENT_UNI_STREAMS`] streams the peer may have open at once (quinn hands out
//!   more credit as streams close, so this bounds streams open *at once*, not in total).
//!   quinn keeps state for every stream the peer may open, whether it does or not: at 4096 and
//!   1024 that was about 0.5 MiB per idle link (`mem.link_kib` 617 KiB against 87 KiB now). A
//!   layer that needs more at once on one link (many `carrier-mux` channels) raises that link's
//!   limit with `quinn::Connection::set_max_concurrent_bi_streams`.
//! - **Memory**: quinn allocates receive buffers only for data that has arrived and is unread,
//!   so an idle link costs its connection state alone (a few KiB). The windows bound what a
//!   busy or hostile peer can make us buffer: one stream at most
//!   [`STREAM_RECEIVE_WINDOW_BYTES`], the whole link at most
//!   [`CONNECTION_RECEIVE_WINDOW_BYTES`] (quinn's default is unbounded), datagrams at most
//!   [`DATAGRAM_RECEIVE_BUFFER_BYTES`].
//! - **Throughput**: the stream window is quinn's default (100 Mbit/s over 100 ms of round
//!   trip), so one stream runs as fast as raw quinn; the link window leaves room for several
//!   such streams at once.
//! - **Liveness**: the dialling side sends a keep-alive (a PING) every
//!   [`KEEPALIVE_INTERVAL`] when nothing else is sent, and the accepting side only
//!   acknowledges it: two packets per interval, 8 a minute, and NAT mappings stay open both
//!   ways (the PING refreshes them one way, its ACK the other). The friend layer closes a link
//!   that heard nothing for [`SILENCE_LIMIT`] (looked at every [`SILENCE_CHECK_INTERVAL`]),
//!   so a friend that vanishes (killed, unplugged) is seen gone within 22 s on both sides;
//!   it promises 30 s. All three are [`Liveness`] settings (the friend layer's
//!   `FriendsConfig::liveness`); the constants are the defaults, and the idle timeout follows
//!   the silence limit. QUIC's own [`IDLE_TIMEOUT`] cannot give that alone at this interval:
//!   the side that sends the PINGs restarts its idle timer when it sends the first one nobody
//!   answers (RFC 9000, 10.1), so it would see the peer gone up to an interval plus the idle
//!   timeout after the last packet it heard (40 s), and the idle timeout must exceed the
//!   interval or the accepting side would drop healthy idle links. The idle timeout is the
//!   backstop: for links whose endpoint has no friend layer above it, and for request
//!   connections.
//! - **Size of packets**: [`INITIAL_MTU_BYTES`] fits every path, a relay's framing included;
//!   path MTU discovery may grow it up to [`MAX_MTU_BYTES`] where the path proves it: a
//!   1500-byte Ethernet MTU under IPv6 and UDP headers (1452) less a relay data frame's
//!   9-byte header, so a packet fits a relayed path as well as a direct one. quinn keeps one
//!   MTU per connection and a link moves between direct and relayed paths without quinn
//!   knowing (see [`super::PathTable`]), so the cap holds for every path. The endpoint also
//!   tells peers it takes nothing larger ([`endpoint_config`]), so a peer's discovery stops
//!   there too.

use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};

/// Bidirectional streams a peer may have open at once on a link.
pub const MAX_CONCURRENT_BIDI_STREAMS: u32 = 128;

/// Unidirectional streams a peer may have open at once on a link.
pub const MAX_CONCURRENT_UNI_STREAMS: u32 = 32;

/// Unread bytes one stream may hold: quinn's default, 100 Mbit/s × 100 ms.
pub const STREAM_RECEIVE_WINDOW_BYTES: u32 = 1_250_000;

/// Unread bytes all the streams of one link may hold together.
pub const CONNECTION_RECEIVE_WINDOW_BYTES: u32 = 8 * 1024 * 1024;

/// Bytes of unacknowledged data a link may have in flight: quinn's default, eight streams'
/// windows.
pub const SEND_WINDOW_BYTES: u64 = 8 * STREAM_RECEIVE_WINDOW_BYTES as u64;

/// Unread incoming datagrams kept per link; beyond it the oldest are dropped.
pub const DATAGRAM_RECEIVE_BUFFER_BYTES: usize = 256 * 1024;

/// Outgoing datagrams queued per link; beyond it the oldest are dropped.
pub const DATAGRAM_SEND_BUFFER_BYTES: usize = 256 * 1024;

/// How often the dialling side of an otherwise silent link sends a keep-alive: as ICE keeps
/// its NAT bindings (RFC 8445, Tr), half the shortest UDP mapping timeout commonly met (30 s).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// How long a link may hear nothing before QUIC drops it: above [`KEEPALIVE_INTERVAL`] with
/// room for the keep-alive's retransmissions.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(25);

/// How long a held friend link may hear nothing before the friend layer closes it with
/// [`close::SILENT`](super::close::SILENT): a keep-alive round is due every
/// [`KEEPALIVE_INTERVAL`], so 5 s are left for a lost PING or ACK to be sent again (QUIC's
/// probe timeout is about three round trips, doubling at each loss).
pub const SILENCE_LIMIT: Duration = Duration::from_secs(20);

/// How often the friend layer looks for links silent for [`SILENCE_LIMIT`]: a vanished
/// friend is seen gone at most `SILENCE_LIMIT + SILENCE_CHECK_INTERVAL` after the last packet
/// it sent.
pub const SILENCE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The QUIC packet size every link starts at: QUIC's minimum, which fits every path.
pub const INITIAL_MTU_BYTES: u16 = 1200;

/// The largest QUIC packet path MTU discovery may probe for, and the largest UDP payload the
/// endpoint accepts: what a relay data frame carries (1452 − 9 = 1443 bytes).
pub const MAX_MTU_BYTES: u16 = carrier_dht::relay::frame::MAX_RELAYED_PAYLOAD_BYTES as u16;

/// How a link is kept alive and when it counts as gone: settings, so tests on one machine can
/// see a vanished peer within seconds. The defaults are the constants above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Liveness {
    /// How often the dialling side of an otherwise silent link sends a keep-alive
    /// (default [`KEEPALIVE_INTERVAL`]).
    pub keep_alive_interval: Duration,
    /// How long a held friend link may hear nothing before the friend layer closes it
    /// (default [`SILENCE_LIMIT`]); must exceed the keep-alive interval.
    pub silence_limit: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            keep_alive_interval: KEEPALIVE_INTERVAL,
            silence_limit: SILENCE_LIMIT,
        }
    }
}

impl Liveness {
    /// QUIC's idle timeout for these settings: a quarter above the silence limit (25 s for the
    /// default 20 s, [`IDLE_TIMEOUT`]), so the friend layer's silence check decides first and
    /// the idle timeout stays the backstop.
    pub fn idle_timeout(&self) -> Duration {
        self.silence_limit.saturating_add(self.silence_limit / 4)
    }

    /// How often held links are looked at for silence: a tenth of the limit (2 s for the
    /// default, [`SILENCE_CHECK_INTERVAL`]), so a vanished peer is seen gone at most 10 % late.
    pub fn silence_check_interval(&self) -> Duration {
        (self.silence_limit / 10).max(Duration::from_millis(10))
    }
}

/// The transport settings of every link and request connection this node dials: with
/// keep-alives, at the default [`Liveness`].
pub fn transport_config() -> Arc<TransportConfig> {
    Arc::new(settings(Some(Liveness::default())))
}

/// The transport settings of every connection this node accepts: the same, but the dialler
/// sends the keep-alives.
pub fn server_transport_config() -> Arc<TransportConfig> {
    Arc::new(settings(None))
}

/// The transport settings of a node with `liveness`: for the connections it dials (with
/// keep-alives) and for those it accepts (without), in that order.
pub fn transport_configs(liveness: Liveness) -> (Arc<TransportConfig>, Arc<TransportConfig>) {
    let dialled = settings_with(true, liveness);
    let accepted = settings_with(false, liveness);
    (Arc::new(dialled), Arc::new(accepted))
}

fn settings(dialler: Option<Liveness>) -> TransportConfig {
    settings_with(dialler.is_some(), dialler.unwrap_or_default())
}

fn settings_with(keep_alive: bool, liveness: Liveness) -> TransportConfig {
    let mut config = TransportConfig::default();
    config
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_BIDI_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_CONCURRENT_UNI_STREAMS))
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW_BYTES))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW_BYTES))
        .send_window(SEND_WINDOW_BYTES)
        .datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER_BYTES))
        .datagram_send_buffer_size(DATAGRAM_SEND_BUFFER_BYTES)
        .keep_alive_interval(keep_alive.then_some(liveness.keep_alive_interval))
        .initial_mtu(INITIAL_MTU_BYTES)
        .min_mtu(INITIAL_MTU_BYTES)
        .mtu_discovery_config(Some({
            let mut mtu = MtuDiscoveryConfig::default();
            mtu.upper_bound(MAX_MTU_BYTES);
            mtu
        }));
    // A sane setting is far below the 2^62 limit of an idle timeout, so this cannot fail;
    // were it to, quinn's default (30 s) applies.
    if let Ok(idle) = IdleTimeout::try_from(liveness.idle_timeout()) {
        config.max_idle_timeout(Some(idle));
    }
    config
}

/// The endpoint settings: the QUIC bit is never greased, so every QUIC packet keeps bit 0x40
/// set and the node socket can tell it from Carrier's own classes by its first byte; and peers
/// are told to send no UDP payload above [`MAX_MTU_BYTES`], which a relayed path could not
/// carry.
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config.grease_quic_bit(false);
    // Within QUIC's bounds (1200..=65527), so this cannot fail; were it to, quinn's default
    // (1472) applies and our own discovery still stops at the cap.
    let _ = config.max_udp_payload_size(MAX_MTU_BYTES);
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_packet_fits_a_relay_data_frame() {
        let header = carrier_dht::relay::frame::DATA_HEADER_BYTES;
        assert_eq!(usize::from(MAX_MTU_BYTES) + header, 1452);
        assert!(carrier_dht::relay::frame::encode_data(
            carrier_dht::SessionId(7),
            &[0x40; MAX_MTU_BYTES as usize]
        )
        .is_some());
        const { assert!(INITIAL_MTU_BYTES <= MAX_MTU_BYTES) };
    }
}
