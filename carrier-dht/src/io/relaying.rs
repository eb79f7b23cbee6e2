//! The NATed side's driver: a task that keeps a [`RelayClient`] registered with relays while
//! the node is not a server, and publishes the registered relays for the peer record
//! ([`crate::Dht::relay_hints`]). Knows nothing of the `Dht`: it is handed the socket, the key
//! and a closure that says where the node stands and which servers it knows (and `None` once
//! the node has stopped). While the node is not a server it is the reader of the socket's
//! relay queue: a session a peer opens to it through one of its relays becomes a relayed path
//! of its socket at once (the socket itself drops the path of a closed one).
//!
//! The same task is the relay side's timer: once a second it expires the attached relay
//! table's silent registrations and idle sessions ([`NodeSocket::expire_relay`]), so a relay
//! that nobody writes to still lets go of what went silent. Each tick it also hands the
//! client the socket's traffic with each relay ([`NodeSocket::relay_traffic`]), so a relay
//! that dies while a link runs through it is found dead within seconds, and a relay found
//! dead is not chosen again at once.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use carrier_id::Keypair;

use crate::io::lock;
use crate::io::socket::NodeSocket;
use crate::relay::client::{
    choose_relays, ClientEvent, ClientTimings, RelayCandidate, RelayClient,
};
use crate::relay::frame::Control;
use crate::wire::entropy::Entropy;
use crate::wire::record::RelayHint;

/// What ended a wait.
enum Wake {
    Stop,
    Tick,
    Frame(crate::io::socket::Datagram),
}

/// How often the client looks at its relays when no frame arrives.
const TICK: Duration = Duration::from_secs(1);

/// Runs until `stop` is notified or `state` returns `None`.
pub(crate) async fn run_client(
    socket: NodeSocket,
    keypair: Keypair,
    hints: Arc<Mutex<Vec<RelayHint>>>,
    seed: [u8; 32],
    stop: Arc<tokio::sync::Notify>,
    mut state: impl FnMut() -> Option<(bool, Vec<RelayCandidate>)> + Send,
) {
    let mut client = RelayClient::new(ClientTimings::default());
    let mut entropy = Entropy::from_seed(seed);
    loop {
        let Some((server, candidates)) = state() else {
            return;
        };
        let now = Instant::now();
        socket.expire_relay();
        if server {
            // A server is reachable itself: it lets its registrations lapse.
            client = RelayClient::new(ClientTimings::default());
        } else {
            for traffic in socket.relay_traffic() {
                client.traffic(now, traffic.relay, traffic.last_sent, traffic.last_heard);
            }
            client.expire(now);
            if client.missing() > 0 {
                let choice = entropy.bytes32();
                let candidates: Vec<RelayCandidate> = candidates
                    .into_iter()
                    .filter(|c| client.may_add(now, c))
                    .collect();
                for candidate in choose_relays(&candidates, client.missing(), choice) {
                    client.add(now, candidate);
                }
            }
            for (to, frame) in client.poll_transmit(now, &keypair) {
                // A full socket buffer loses it; the next tick sends again.
                let _ = socket.try_send(to, &frame);
            }
        }
        let current = client.hints();
        {
            let mut published = lock(&hints);
            if *published != current {
                *published = current;
            }
        }
        let received = {
            let mut stopped = std::pin::pin!(stop.notified());
            let mut tick = std::pin::pin!(tokio::time::sleep(TICK));
            let mut frame = std::pin::pin!(socket.recv_relay_control());
            std::future::poll_fn(|cx| {
                if stopped.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Stop);
                }
                // A server holds no registrations: it leaves the relays' frames to whoever
                // opened sessions through them.
                if !server {
                    if let Poll::Ready(datagram) = frame.as_mut().poll(cx) {
                        return Poll::Ready(Wake::Frame(datagram));
                    }
                }
                if tick.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Tick);
                }
                Poll::Pending
            })
            .await
        };
        let datagram = match received {
            Wake::Stop => return,
            Wake::Tick => None,
            Wake::Frame(datagram) => Some(datagram),
        };
        if let Some(datagram) = datagram {
            let mut next = Some(datagram);
            while let Some(datagram) = next {
                if let Ok(control) = Control::decode(&datagram.data) {
                    let event = client.handle(Instant::now(), datagram.from, control);
                    if let Some(ClientEvent::Incoming { relay, session, .. }) = event {
                        // A peer opened a session to this node: frames of it are this
                        // node's from now on (a full table leaves the peer unanswered).
                        let _ = socket.add_relayed_path(relay, session);
                    }
                }
                next = socket.try_recv_relay_control();
            }
        }
    }
}
