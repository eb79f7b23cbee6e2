//! A friend dial in its handshake, and what becomes of it when its dialler gives it up.
//!
//! The friend layer drops a dial once a link to its peer is held (the peer dialled it
//! meanwhile), on the ground that a dial not completed at the dialler has not completed at
//! the peer either: the client finishes its handshake before the server. That holds for the
//! protocol, not for the tasks: quinn's connection driver sends the client's last flight
//! and only then, in the same turn under the connection's lock, signals the task awaiting the
//! dial. A dial dropped in between had completed at quinn's level; the peer completed it too,
//! held it, and saw it close at once with code 0 (a friend gone and back within a
//! millisecond).
//!
//! So a [`Dialling`] dropped before its handshake is seen complete first waits for any turn
//! of the driver in progress (by taking the connection's lock) and looks once more; a link
//! it finds complete goes to the endpoint's [`AbandonedDials`] sink, where the friend layer
//! adopts it like any other (its tie-break keeps one link on both sides alike). A dial still
//! in its handshake is dropped, and quinn closes it before it can complete at the peer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use carrier_dht::id::CarrierId;

use super::handle::{Hold, Link};

/// Where a given-up dial whose handshake had completed goes (see the module doc): set by
/// [`LinkEndpoint::on_abandoned_dial`](super::LinkEndpoint::on_abandoned_dial); without one,
/// such a link is closed (code 0) as it is dropped.
pub(crate) type AbandonedDials = Arc<Mutex<Option<Arc<dyn Fn(Link) + Send + Sync>>>>;

/// A friend dial in its handshake.
pub(crate) struct Dialling {
    connecting: Option<quinn::Connecting>,
    hold: Option<Hold>,
    peer: CarrierId,
    abandoned: Option<AbandonedDials>,
}

impl Dialling {
    /// A dial of `peer`, holding `hold` on its path; a handshake given up but complete goes
    /// to `abandoned` (`None`: a short exchange nobody adopts, such as a friend request).
    pub(crate) fn new(
        connecting: quinn::Connecting,
        hold: Option<Hold>,
        peer: CarrierId,
        abandoned: Option<AbandonedDials>,
    ) -> Dialling {
        Dialling {
            connecting: Some(connecting),
            hold,
            peer,
            abandoned,
        }
    }

    /// Waits for the handshake: the connection and the hold on its path.
    pub(crate) async fn finish(
        mut self,
    ) -> Result<(quinn::Connection, Option<Hold>), quinn::ConnectionError> {
        let Some(connecting) = self.connecting.as_mut() else {
            // Only `finish` takes it, and it consumes `self`.
            return Err(quinn::ConnectionError::LocallyClosed);
        };
        let outcome = connecting.await;
        self.connecting = None;
        outcome.map(|connection| (connection, self.hold.take()))
    }
}

impl Drop for Dialling {
    fn drop(&mut self) {
        let Some(mut connecting) = self.connecting.take() else {
            return;
        };
        let Some(sink) = self
            .abandoned
            .as_ref()
            .and_then(|a| a.lock().unwrap_or_else(|p| p.into_inner()).clone())
        else {
            return;
        };
        // Takes the connection's lock: a turn of quinn's driver in progress (which may have
        // sent the client's last flight) ends first, and with it the signal of completion.
        let _ = connecting.remote_address();
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(Ok(connection)) = Pin::new(&mut connecting).poll(&mut cx) {
            sink(Link::new(connection, self.peer, self.hold.take()));
        }
    }
}
