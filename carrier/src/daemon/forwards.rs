//! The forwarder's part of the daemon: `serve`, `unserve`, `services`, `forward` (a
//! forwarding held while its control connection stays open) and `forwards`, and the
//! forwarder's events.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use carrier::forward::{Allowed, ForwardError, ForwardEvent, Side};
use serde_json::{json, Value};

use super::node::{lock, DaemonNode, Refusal};
use super::protocol::{echo, ErrorKind, Event, ForwardEntry};

/// Where a forwarding listens when the request names no address.
const DEFAULT_LOCAL: &str = "127.0.0.1:0";

impl DaemonNode {
    /// `serve`: offers `name` at `target` to every friend, or to those in `only`.
    pub(super) fn serve(
        &self,
        name: &str,
        target: &str,
        only: &[String],
    ) -> Result<Value, Refusal> {
        let who = if only.is_empty() {
            Allowed::Everyone
        } else {
            Allowed::Only(
                only.iter()
                    .map(|friend| self.friend(friend))
                    .collect::<Result<_, _>>()?,
            )
        };
        self.forwarder
            .serve(name, target, who.clone())
            .map_err(refusal)?;
        tracing::info!(service = name, target, "serving");
        Ok(json!({ "name": name, "target": target, "only": only_ids(&who) }))
    }

    /// `unserve`: withdraws a service.
    pub(super) fn unserve(&self, name: &str) -> Result<Value, Refusal> {
        self.forwarder.unserve(name).map_err(refusal)?;
        tracing::info!(service = name, "no longer serving");
        Ok(json!({ "name": name }))
    }

    /// `services`: those offered.
    pub(super) fn services(&self) -> Value {
        let list: Vec<Value> = self
            .forwarder
            .services()
            .into_iter()
            .map(|s| json!({ "name": s.name.as_str(), "target": s.target, "only": only_ids(&s.allowed) }))
            .collect();
        json!({ "services": list })
    }

    /// `forward`: a forwarding of `local` to `friend`'s `service`, kept under a number until
    /// [`close_forward`](Self::close_forward). The reply's result and that number.
    pub(super) async fn open_forward(
        &self,
        friend: &str,
        service: &str,
        local: Option<&str>,
    ) -> Result<(Value, u64), Refusal> {
        let to = self.friend(friend)?;
        let local = local.unwrap_or(DEFAULT_LOCAL);
        let local: SocketAddr = local.trim().parse().map_err(|_| {
            (
                ErrorKind::BadArguments,
                format!("`{}` is not a local address (IP:port)", echo(local)),
            )
        })?;
        let forwarding = self
            .forwarder
            .forward(&to, service, local)
            .await
            .map_err(refusal)?;
        let key = self.next_forwarding.fetch_add(1, Ordering::Relaxed);
        let result = json!({
            "forwarding": key,
            "friend": to.to_string(),
            "service": service,
            "local": forwarding.local_addr().to_string(),
        });
        tracing::info!(friend = %to, service, local = %forwarding.local_addr(), "forwarding");
        lock(&self.forwardings).insert(key, forwarding);
        Ok((result, key))
    }

    /// Closes the forwarding numbered `key` (its control connection ended).
    pub(super) fn close_forward(&self, key: u64) {
        if let Some(forwarding) = lock(&self.forwardings).remove(&key) {
            tracing::info!(local = %forwarding.local_addr(), "forwarding closed");
        }
    }

    /// `forwards`: the forwardings open, with their connections.
    pub(super) fn forwards(&self) -> Value {
        let forwardings = lock(&self.forwardings);
        let mut keys: Vec<&u64> = forwardings.keys().collect();
        keys.sort();
        let list: Vec<Value> = keys
            .into_iter()
            .filter_map(|key| forwardings.get(key).map(|f| (key, f)))
            .map(|(key, f)| {
                let connections: Vec<Value> = f
                    .connections()
                    .into_iter()
                    .map(|c| {
                        json!({
                            "peer": c.peer.to_string(),
                            "bytes_in": c.bytes_in,
                            "bytes_out": c.bytes_out,
                            "since_unix_secs": c.since.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                        })
                    })
                    .collect();
                json!({
                    "forwarding": key,
                    "friend": f.friend().to_string(),
                    "service": f.service().as_str(),
                    "local": f.local_addr().to_string(),
                    "connections": connections,
                })
            })
            .collect();
        json!({ "forwards": list })
    }
}

fn only_ids(who: &Allowed) -> Vec<String> {
    match who {
        Allowed::Everyone => Vec::new(),
        Allowed::Only(ids) => ids.iter().map(ToString::to_string).collect(),
    }
}

/// Reports one of the forwarder's events (the forwarder logged it).
pub(super) fn forward_event(node: &DaemonNode, event: ForwardEvent) {
    let side = |side: Side| {
        Some(match side {
            Side::Forwarding => "forwarding".to_string(),
            Side::Serving => "serving".to_string(),
        })
    };
    let entry = match event {
        ForwardEvent::Opened {
            side: s,
            friend,
            service,
            peer,
        } => ForwardEntry {
            state: "opened".into(),
            friend: friend.to_string(),
            service,
            side: side(s),
            peer: Some(peer.to_string()),
            ..ForwardEntry::default()
        },
        ForwardEvent::Closed {
            side: s,
            friend,
            service,
            bytes_in,
            bytes_out,
            error,
        } => ForwardEntry {
            state: "closed".into(),
            friend: friend.to_string(),
            service,
            side: side(s),
            bytes_in: Some(bytes_in),
            bytes_out: Some(bytes_out),
            reason: error,
            ..ForwardEntry::default()
        },
        ForwardEvent::Refused {
            friend,
            service,
            peer,
            reason,
        } => ForwardEntry {
            state: "refused".into(),
            friend: friend.to_string(),
            service,
            peer: Some(peer.to_string()),
            reason: Some(reason),
            ..ForwardEntry::default()
        },
        ForwardEvent::Denied { friend, service } => ForwardEntry {
            state: "denied".into(),
            friend: friend.to_string(),
            service,
            ..ForwardEntry::default()
        },
        ForwardEvent::Unreachable {
            friend,
            service,
            target,
            reason,
        } => ForwardEntry {
            state: "unreachable".into(),
            friend: friend.to_string(),
            service,
            target: Some(target),
            reason: Some(reason),
            ..ForwardEntry::default()
        },
        other => {
            tracing::debug!("forwarding event not reported: {other:?}");
            return;
        }
    };
    node.send(Event::Forward(entry));
}

/// What the forwarder's refusal tells the user.
fn refusal(error: ForwardError) -> Refusal {
    let message = echo(&error.to_string());
    let kind = match error {
        ForwardError::UnknownFriend(_) => ErrorKind::UnknownFriend,
        ForwardError::UnknownService(_) => ErrorKind::UnknownService,
        ForwardError::InvalidName(_) | ForwardError::InvalidTarget(_) => ErrorKind::BadArguments,
        ForwardError::AddressInUse(_) => ErrorKind::AddressInUse,
        ForwardError::Timeout(_) => ErrorKind::Timeout,
        ForwardError::Refused(_) => ErrorKind::Refused,
        _ => ErrorKind::Failed,
    };
    (kind, message)
}
