//! [`Forwarder`]: a node's services and forwardings.

use std::net::SocketAddr;
use std::sync::Arc;

use carrier_mux::stream::msg::friend::dht::id::CarrierId;
use carrier_mux::stream::{Sessions, StreamError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{ForwardConfig, FORWARD_BUNDLE};
use crate::error::ForwardError;
use crate::events::ForwardEvents;
use crate::forwarding::{lock, serve_sessions, Forwarding, Shared};
use crate::service::{Allowed, ServiceInfo, ServiceName};

/// The serving task; it and every served connection stop at
/// [`shutdown`](Forwarder::shutdown), or when the last forwarder goes (its `stop` sender
/// with it).
#[derive(Debug)]
struct ServingTask {
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// A node's services and forwardings: offers services to friends by name
/// ([`serve`](Self::serve)), and forwards local TCP ports to friends' services
/// ([`forward`](Self::forward)), each TCP connection a channel of one session per friend
/// (bundle [`FORWARD_BUNDLE`]). Cheap to clone; serving stops when the last clone goes
/// (forwardings run while their own handles live).
#[derive(Clone, Debug)]
pub struct Forwarder {
    shared: Arc<Shared>,
    serving: Arc<ServingTask>,
}

impl Forwarder {
    /// Starts forwarding on a node's sessions layer: registers the handler of the bundle
    /// [`FORWARD_BUNDLE`] (so [`ForwardError::WrongState`] if something else handles it).
    /// Returns the forwarder and its events. Call within a tokio runtime.
    pub fn start(
        sessions: &Sessions,
        config: ForwardConfig,
    ) -> Result<(Forwarder, ForwardEvents), ForwardError> {
        let requests = sessions.handle(FORWARD_BUNDLE).map_err(|e| match e {
            StreamError::AlreadyHandled(_) => ForwardError::WrongState(format!(
                "the bundle {FORWARD_BUNDLE:?} already has a handler"
            )),
            StreamError::Closed => {
                ForwardError::WrongState("the sessions layer is shut down".into())
            }
            other => ForwardError::Below(other.to_string()),
        })?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(sessions.clone(), config, sender));
        let (stop, stopping) = watch::channel(false);
        let task = tokio::spawn(serve_sessions(shared.clone(), requests, stopping));
        Ok((
            Forwarder {
                shared,
                serving: Arc::new(ServingTask {
                    stop,
                    task: std::sync::Mutex::new(Some(task)),
                }),
            },
            ForwardEvents { receiver },
        ))
    }

    /// Offers the service `name` at `target` (`host:port`, resolved at each connection) to
    /// `who`; offered again, it is replaced. Connections already made keep running.
    pub fn serve(&self, name: &str, target: &str, who: Allowed) -> Result<(), ForwardError> {
        let name: ServiceName = name.parse()?;
        check_target(target)?;
        lock(&self.shared.services).insert(ServiceInfo {
            name,
            target: target.to_owned(),
            allowed: who,
        });
        Ok(())
    }

    /// Withdraws the service `name`: new connections to it are refused as to an unknown one;
    /// those open keep running. [`ForwardError::UnknownService`] if it is not offered.
    pub fn unserve(&self, name: &str) -> Result<(), ForwardError> {
        let name: ServiceName = name.parse()?;
        lock(&self.shared.services).remove(&name).map(|_| ())
    }

    /// The services offered, by name.
    pub fn services(&self) -> Vec<ServiceInfo> {
        lock(&self.shared.services).list()
    }

    /// Forwards `local` (`127.0.0.1:0` for any free port on loopback) to `friend`'s
    /// `service`: opens this node's forwarding session with the friend (or takes the one
    /// open), then listens. [`ForwardError::UnknownFriend`],
    /// [`ForwardError::AddressInUse`], [`ForwardError::InvalidName`], or the session's
    /// refusal or timeout. Whether the friend offers the service is learnt per connection:
    /// a refused one is closed at once and reported.
    pub async fn forward(
        &self,
        friend: &CarrierId,
        service: &str,
        local: SocketAddr,
    ) -> Result<Forwarding, ForwardError> {
        let service: ServiceName = service.parse()?;
        self.shared.link(friend).await?;
        Forwarding::start(self.shared.clone(), *friend, service, local).await
    }
}

impl Forwarder {
    /// Stops serving (the connections served end) and lets go of the sessions layer and of
    /// this node's forwarding sessions; returns once nothing the forwarder ran holds the
    /// layers below (forwardings still open have their connections fail). Later
    /// [`forward`](Self::forward)s fail with [`ForwardError::WrongState`].
    pub async fn shutdown(&self) {
        let _ = self.serving.stop.send(true);
        let task = lock(&self.serving.task).take();
        if let Some(task) = task {
            // It returns once its sessions and connections ended.
            let _ = task.await;
        }
        self.shared.release();
    }
}

/// `host:port` with a port number; the host is resolved at each connection.
fn check_target(target: &str) -> Result<(), ForwardError> {
    match target.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(ForwardError::InvalidTarget(target.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::check_target;

    #[test]
    fn targets_need_a_host_and_a_port() {
        assert!(check_target("127.0.0.1:80").is_ok());
        assert!(check_target("[::1]:8080").is_ok());
        assert!(check_target("example.org:443").is_ok());
        assert!(check_target("example.org").is_err());
        assert!(check_target(":80").is_err());
        assert!(check_target("host:99999").is_err());
    }
}
