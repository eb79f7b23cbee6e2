//! The forwarding machinery: what a forwarder's handles and tasks share (`Shared`: the
//! services, one session and mux per friend), the local listeners ([`Forwarding`]), the
//! serving side's session handler, and the byte relay between a TCP connection and a channel.

mod local;
mod relay;
mod serving;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use carrier_mux::stream::msg::friend::dht::id::CarrierId;
use carrier_mux::stream::{Session, SessionState, Sessions};
use carrier_mux::{Channel, Mux, MuxError};
use tokio::sync::mpsc;

use crate::config::{ForwardConfig, FORWARD_BUNDLE};
use crate::error::ForwardError;
use crate::events::ForwardEvent;
use crate::service::{ServiceName, ServiceTable};

pub use local::{ConnectionInfo, Forwarding};
pub(crate) use serving::serve_sessions;

/// The reason a friend hears for a service that does not exist and for one it may not use,
/// alike.
pub(crate) const NO_SUCH_SERVICE: &str = "no such service";

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; a poisoned lock's data is still whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The session and mux this node opened to a friend for its forwardings.
#[derive(Debug)]
struct Link {
    // Held: the session closes when its last handle goes.
    session: Session,
    mux: Mux,
}

impl Link {
    fn is_up(&self) -> bool {
        self.mux.gone().is_none() && !matches!(self.session.state(), SessionState::Closed(_))
    }
}

/// What a forwarder's handles, its forwardings and its tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Taken at shutdown: nothing here holds the layers below after it.
    sessions: Mutex<Option<Sessions>>,
    pub(crate) config: ForwardConfig,
    pub(crate) services: Mutex<ServiceTable>,
    links: Mutex<HashMap<CarrierId, Arc<tokio::sync::Mutex<Option<Link>>>>>,
    events: mpsc::UnboundedSender<ForwardEvent>,
}

impl Shared {
    pub(crate) fn new(
        sessions: Sessions,
        config: ForwardConfig,
        events: mpsc::UnboundedSender<ForwardEvent>,
    ) -> Self {
        Shared {
            sessions: Mutex::new(Some(sessions)),
            config,
            services: Mutex::new(ServiceTable::default()),
            links: Mutex::new(HashMap::new()),
            events,
        }
    }

    pub(crate) fn emit(&self, event: ForwardEvent) {
        // Nobody listening is fine: events are a report.
        let _ = self.events.send(event);
    }

    /// The mux of this node's forwarding session with `friend`: the one open, else a new
    /// session (bundle [`FORWARD_BUNDLE`]) and multiplexed stream. Opens to one friend wait
    /// for each other; opens to others do not.
    pub(crate) async fn link(&self, friend: &CarrierId) -> Result<Mux, ForwardError> {
        let slot = lock(&self.links).entry(*friend).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(link) = slot.as_ref().filter(|link| link.is_up()) {
            return Ok(link.mux.clone());
        }
        *slot = None;
        let sessions = lock(&self.sessions)
            .clone()
            .ok_or_else(|| ForwardError::WrongState("the forwarder is shut down".into()))?;
        let session = sessions
            .request(friend, FORWARD_BUNDLE)
            .await
            .map_err(|e| ForwardError::from_session(friend, e))?;
        // This side opens channels only: the friend's opens on this mux are refused.
        let (mux, _requests) = Mux::open(&session, self.config.mux().clone()).await?;
        *slot = Some(Link {
            session,
            mux: mux.clone(),
        });
        Ok(mux)
    }

    /// Lets go of the sessions layer and of every session this node opened for its
    /// forwardings (they close).
    pub(crate) fn release(&self) {
        lock(&self.sessions).take();
        lock(&self.links).clear();
    }

    /// A channel to `friend`'s `service`; once more on a new session if the one held went
    /// down under the open.
    pub(crate) async fn open(
        &self,
        friend: &CarrierId,
        service: &ServiceName,
    ) -> Result<Channel, ForwardError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let mux = self.link(friend).await?;
            match mux.open_channel(service.cookie()).await {
                Ok(channel) => return Ok(channel),
                Err(MuxError::Gone(_) | MuxError::Stream(_)) if tries < 2 => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }
}
