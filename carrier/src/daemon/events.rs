//! The tasks that turn what the layers report into protocol events for watchers, and into
//! log lines: the friend layer's events, the DHT's standing, the node's own connection.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use carrier::dht::DhtEvent;
use carrier::friend::{FriendEvent, FriendEvents};
use carrier::msg::{FailReason, MessageEvent, MessageEvents, WaitReason};
use tokio::sync::broadcast;

use super::node::{info, lock, message_entry, presence_name, standing, DaemonNode};
use super::protocol::{ConnectionStatus, Event};

/// Turns the friend layer's events into protocol events (accepting requests first when
/// auto-accept is on), and logs them.
pub(super) async fn pump_friend_events(node: Weak<DaemonNode>, mut events: FriendEvents) {
    while let Some(event) = events.recv().await {
        let Some(node) = node.upgrade() else {
            return;
        };
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
                continue;
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
                continue;
            }
        };
        tracing::info!("{}", serde_json::to_string(&event).unwrap_or_default());
        node.send(event);
    }
}

/// Turns the messenger's events into protocol events, and logs them (without the messages'
/// bytes).
pub(super) async fn pump_message_events(node: Weak<DaemonNode>, mut events: MessageEvents) {
    while let Some(event) = events.recv().await {
        let Some(node) = node.upgrade() else {
            return;
        };
        let event = match event {
            MessageEvent::Message(message) => {
                tracing::info!(from = %message.from, id = %message.id, len = message.bytes.len(), "message");
                node.send(Event::Message(message_entry(&message)));
                continue;
            }
            MessageEvent::Delivered { to, id } => Event::Delivered {
                to: to.to_string(),
                message: id.to_hex(),
            },
            MessageEvent::Stored { to, id } => Event::Stored {
                to: to.to_string(),
                message: id.to_hex(),
            },
            MessageEvent::Waiting { to, id, reason } => Event::Waiting {
                to: to.to_string(),
                message: id.to_hex(),
                reason: match reason {
                    WaitReason::Offline => "offline",
                    WaitReason::MailboxFull => "mailbox_full",
                    WaitReason::TooLargeForMailbox => "too_large_for_mailbox",
                    _ => "other",
                }
                .into(),
            },
            MessageEvent::Failed { to, id, reason } => Event::Failed {
                to: to.to_string(),
                message: id.to_hex(),
                reason: match reason {
                    FailReason::Removed => "removed",
                    FailReason::Expired => "expired",
                    _ => "other",
                }
                .into(),
            },
            other => {
                tracing::debug!("message event not reported: {other:?}");
                continue;
            }
        };
        tracing::info!("{}", serde_json::to_string(&event).unwrap_or_default());
        node.send(event);
    }
}

/// Reports and logs where the node stands whenever it changes.
pub(super) async fn watch_dht(node: Weak<DaemonNode>, mut events: broadcast::Receiver<DhtEvent>) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(node) = node.upgrade() else {
            return;
        };
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
}

/// Feeds the self-connection rule with the DHT's most recently heard contact.
pub(super) async fn watch_connection(node: Weak<DaemonNode>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(node) = node.upgrade() else {
            return;
        };
        let last_heard = node.dht.last_heard();
        let changed = lock(&node.connection).observe(Instant::now(), last_heard);
        if let Some(status) = changed {
            match status {
                ConnectionStatus::Online => tracing::info!("online: DHT contacts answer"),
                ConnectionStatus::Offline => {
                    tracing::warn!("offline: no DHT contact answers")
                }
            }
            node.send(Event::Connection { status });
        }
    }
}
