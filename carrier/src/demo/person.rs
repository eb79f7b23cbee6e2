//! One of the two friends: a [`Carrier`] node on its own data directory, and the events the
//! demo waits for on it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use carrier::dht::id::CarrierId;
use carrier::dht::BootstrapNode;
use carrier::forward::Forwarder;
use carrier::friend::{FriendEvent, Friends};
use carrier::msg::{MessageEvent, Messenger};
use carrier::stream::Sessions;
use carrier::{Carrier, Event, Events};

use super::network::LOOPBACK;
use super::steps::{Error, STEP_LIMIT};

/// How long the last stop waits for a node's QUIC connections to drain: a closed link drains
/// within three probe timeouts (about 3 s before a round trip was measured). After Alice's
/// restart one node has so far always held a connection that only QUIC's idle timeout
/// ends, 25 s later (seemingly a dial begun while she was away): the demo does not wait
/// for it.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// A friend's node (DHT, friend layer, messenger, sessions, forwarder) and the events it
/// reported that the demo has not waited for yet.
pub(super) struct Person {
    pub(super) name: &'static str,
    id: CarrierId,
    /// Where the node starts again: its data directory, its port, the node it joins through.
    dir: PathBuf,
    bind: SocketAddr,
    seed: BootstrapNode,
    /// `None` while offline: a stopped node lets go of its database only once dropped.
    node: Option<Carrier>,
    events: Events,
    /// Events read while waiting for another, in order: the next wait looks here first.
    pending: VecDeque<Event>,
}

impl Person {
    /// Starts `name`'s node on `dir`, on a port of its own on loopback, joining through
    /// `seed`.
    pub(super) async fn start(
        name: &'static str,
        dir: PathBuf,
        seed: BootstrapNode,
    ) -> Result<Person, Error> {
        let (node, events) = launch(&dir, LOOPBACK, &seed).await?;
        Ok(Person {
            name,
            id: node.id(),
            dir,
            bind: node.dht().local_addr(),
            seed,
            node: Some(node),
            events,
            pending: VecDeque::new(),
        })
    }

    /// Stops the node (once; later calls do nothing) and lets go of it.
    pub(super) async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
    }

    /// Stops the node as [`stop`](Self::stop) does, but waits at most [`DRAIN_LIMIT`] for
    /// its QUIC connections to drain; whether they did. Past the limit every layer above the
    /// links has stopped and every link was closed; the DHT node is still shut down, so the
    /// database is let go of, and what is left ends with the program.
    pub(super) async fn stop_within_drain_limit(&mut self) -> bool {
        let Some(node) = self.node.take() else {
            return true;
        };
        if tokio::time::timeout(DRAIN_LIMIT, node.shutdown())
            .await
            .is_ok()
        {
            return true;
        }
        // A second shutdown of a DHT node finds nothing left to do.
        let _ = node.dht().clone().shutdown().await;
        false
    }

    /// Stops the node if it runs, and starts it again from its directory, on its port; the
    /// events of the old one are forgotten.
    pub(super) async fn restart(&mut self) -> Result<(), Error> {
        self.stop().await;
        // The stopped node was dropped with its database handles: the new one opens it at once.
        let (node, events) = launch(&self.dir, self.bind, &self.seed).await?;
        self.node = Some(node);
        self.events = events;
        self.pending.clear();
        Ok(())
    }

    pub(super) fn id(&self) -> CarrierId {
        self.id
    }

    fn node(&self) -> Result<&Carrier, Error> {
        self.node
            .as_ref()
            .ok_or_else(|| format!("{} is offline", self.name).into())
    }

    pub(super) fn friends(&self) -> Result<&Friends, Error> {
        Ok(self.node()?.friends())
    }

    pub(super) fn messenger(&self) -> Result<&Messenger, Error> {
        Ok(self.node()?.messenger())
    }

    pub(super) fn sessions(&self) -> Result<&Sessions, Error> {
        Ok(self.node()?.sessions())
    }

    pub(super) fn forwarder(&self) -> Result<&Forwarder, Error> {
        Ok(self.node()?.forwarder())
    }

    /// Waits for the event `want` picks (among those read before, then new ones), within
    /// [`STEP_LIMIT`]; events it does not pick stay for later waits.
    pub(super) async fn until_event<T>(
        &mut self,
        what: &str,
        mut want: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T, Error> {
        if let Some(found) = self.pending.iter().position(|e| want(e).is_some()) {
            if let Some(event) = self.pending.remove(found) {
                if let Some(value) = want(&event) {
                    return Ok(value);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + STEP_LIMIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| format!("{}: {what} did not happen within {STEP_LIMIT:?}", self.name))?
                .ok_or_else(|| format!("{}: the node stopped", self.name))?;
            match want(&event) {
                Some(value) => return Ok(value),
                None => self.pending.push_back(event),
            }
        }
    }

    /// Waits for the friend event `want` picks.
    pub(super) async fn until<T>(
        &mut self,
        what: &str,
        mut want: impl FnMut(&FriendEvent) -> Option<T>,
    ) -> Result<T, Error> {
        self.until_event(what, |e| match e {
            Event::Friend(e) => want(e),
            _ => None,
        })
        .await
    }

    /// Waits for the message event `want` picks.
    pub(super) async fn until_message<T>(
        &mut self,
        what: &str,
        mut want: impl FnMut(&MessageEvent) -> Option<T>,
    ) -> Result<T, Error> {
        self.until_event(what, |e| match e {
            Event::Message(e) => want(e),
            _ => None,
        })
        .await
    }
}

/// A [`Carrier`] node on `dir`, bound to `bind`, joining through `seed`.
async fn launch(
    dir: &Path,
    bind: SocketAddr,
    seed: &BootstrapNode,
) -> Result<(Carrier, Events), Error> {
    Ok(Carrier::builder()
        .local(bind)
        .bootstrap([seed.clone()])
        .data_dir(dir)
        .start()
        .await?)
}
