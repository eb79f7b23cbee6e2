//! The tasks that turn what the layers report into protocol events for watchers, and into
//! log lines: the friend layer's and the messenger's events, the DHT's standing, the node's
//! own connection, all from the node's one event stream.

use std::sync::atomic::Ordering;
use std::sync::Weak;

use carrier::dht::DhtEvent;
use carrier::friend::FriendEvent;

use super::node::{info, presence_name, standing, DaemonNode};
use super::protocol::{ConnectionStatus, Event, PathEntry};
use super::{forwards, messages};

/// Turns the node's events into protocol events for watchers, and logs them, until the node
/// is gone.
pub(super) async fn pump(node: Weak<DaemonNode>, mut events: carrier::Events) {
    while let Some(event) = events.recv().await {
        let Some(node) = node.upgrade() else {
            return;
        };
        match event {
            carrier::Event::Friend(event) => friend_event(&node, event).await,
            carrier::Event::Message(event) => messages::message_event(&node, event),
            carrier::Event::Dht(event) => dht_event(&node, event),
            carrier::Event::Connection(status) => connection_event(&node, status),
            carrier::Event::Forward(event) => forwards::forward_event(&node, event),
            other => tracing::debug!("event not reported: {other:?}"),
        }
    }
}

/// Turns one of the friend layer's events into a protocol event (accepting a request first
/// when auto-accept is on), and logs it.
async fn friend_event(node: &DaemonNode, event: FriendEvent) {
    {
        let event = match event {
            FriendEvent::Request(request) => {
                tracing::info!(from = %request.from, "friend request");
                node.send(Event::Request {
                    from: request.from.to_string(),
                    hello: String::from_utf8_lossy(&request.hello).into_owned(),
                    info: info(&request.info),
                });
                if node.auto_accept.load(Ordering::SeqCst) {
                    if let Err(e) = node.friends.accept_friend(&request.from).await {
                        tracing::warn!(from = %request.from, "auto-accept failed: {e}");
                    }
                }
                return;
            }
            FriendEvent::Added(id) => Event::Added {
                friend: id.to_string(),
            },
            FriendEvent::Removed(id) => Event::Removed {
                friend: id.to_string(),
            },
            FriendEvent::Connected(id) => Event::Connected {
                friend: id.to_string(),
            },
            FriendEvent::Disconnected(id) => Event::Disconnected {
                friend: id.to_string(),
            },
            FriendEvent::PathChanged(id, path) => Event::Path(PathEntry::new(&id, &path)),
            FriendEvent::PresenceChanged(id, presence) => Event::Presence {
                friend: id.to_string(),
                presence: presence_name(presence),
            },
            FriendEvent::InfoChanged(id, new) => Event::Info {
                friend: id.to_string(),
                info: info(&new),
            },
            other => {
                tracing::debug!("friend event not reported: {other:?}");
                return;
            }
        };
        tracing::info!("{}", serde_json::to_string(&event).unwrap_or_default());
        node.send(event);
    }
}

/// Reports and logs where the node stands whenever it changes.
fn dht_event(node: &DaemonNode, event: DhtEvent) {
    match event {
        DhtEvent::Standing(_) => {
            let standing = standing(&node.dht);
            tracing::info!(
                public_address = standing.public_address.as_deref().unwrap_or("unknown"),
                nat = %standing.nat,
                reachability = %standing.reachability,
                server = standing.server,
                "standing"
            );
            node.send(Event::Standing(standing));
        }
        DhtEvent::ObservedAddr(addr) => tracing::info!(%addr, "peers see this node at"),
        DhtEvent::Bootstrapped { routing_entries } => {
            tracing::debug!(routing_entries, "bootstrapped")
        }
        _ => {}
    }
}

/// Reports the node's own connection when it changes (the facade logs it).
fn connection_event(node: &DaemonNode, status: carrier::ConnectionStatus) {
    let status = match status {
        carrier::ConnectionStatus::Online => ConnectionStatus::Online,
        _ => ConnectionStatus::Offline,
    };
    node.send(Event::Connection { status });
}
