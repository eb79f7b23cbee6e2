//! The serving side: the session handler of the bundle `forward`, each friend's mux, and
//! each channel a TCP connection to the service its cookie names, if the friend may use it.

use std::sync::Arc;

use carrier_mux::stream::msg::friend::dht::id::CarrierId;
use carrier_mux::stream::{Session, SessionRequests};
use carrier_mux::{ChannelRequest, ChannelRequests, Mux};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::relay::{relay, Counts};
use super::{lock, Shared, NO_SUCH_SERVICE};
use crate::events::{ForwardEvent, Side};
use crate::service::ServiceName;

/// The reason a friend hears when its service did not answer at its target.
const UNREACHABLE: &str = "the service is unreachable";

/// Resolves once `stop` says so (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Takes every friend's forwarding session until `stop`; the sessions and their
/// connections are this task's: at `stop` they end before it returns, so nothing it ran
/// holds the layers below any more.
pub(crate) async fn serve_sessions(
    shared: Arc<Shared>,
    mut requests: SessionRequests,
    mut stop: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    loop {
        let request = tokio::select! {
            request = requests.recv() => request,
            () = stopped(&mut stop) => None,
        };
        let Some(request) = request else { break };
        while sessions.try_join_next().is_some() {}
        let friend = request.peer();
        match request.accept().await {
            Ok(session) => {
                sessions.spawn(serve_session(shared.clone(), session, stop.clone()));
            }
            Err(error) => {
                tracing::info!(target: "carrier_forward", %friend, %error, "a forwarding session failed to open")
            }
        }
    }
    sessions.shutdown().await;
}

/// One friend's session: each multiplexed stream the friend opens on it, served at once
/// and side by side (a friend whose link was replaced opens a new one while the old one is
/// still winding down here).
async fn serve_session(shared: Arc<Shared>, session: Session, mut stop: watch::Receiver<bool>) {
    let friend = session.peer();
    let mut muxes = JoinSet::new();
    loop {
        let stream = tokio::select! {
            stream = session.accept_stream() => stream,
            () = stopped(&mut stop) => None,
        };
        let Some(stream) = stream else { break };
        while muxes.try_join_next().is_some() {}
        match Mux::accept(stream, shared.config.mux().clone()) {
            Ok((mux, requests)) => {
                muxes.spawn(serve_mux(
                    shared.clone(),
                    friend,
                    mux,
                    requests,
                    stop.clone(),
                ));
            }
            Err(error) => {
                tracing::info!(target: "carrier_forward", %friend, %error, "not a forwarding stream");
            }
        }
    }
    if *stop.borrow() {
        muxes.shutdown().await;
        return;
    }
    // The session is over; what runs on it fails with it.
    tokio::select! {
        () = async { while muxes.join_next().await.is_some() {} } => {}
        () = stopped(&mut stop) => muxes.shutdown().await,
    }
}

/// One multiplexed stream: each channel the friend opens on it, until the stream ends and
/// its connections with it, or until `stop`.
async fn serve_mux(
    shared: Arc<Shared>,
    friend: CarrierId,
    _mux: Mux,
    mut requests: ChannelRequests,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let request = tokio::select! {
            request = requests.recv() => request,
            () = stopped(&mut stop) => {
                connections.shutdown().await;
                return;
            }
        };
        let Some(request) = request else { break };
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_channel(shared.clone(), friend, request));
    }
    tokio::select! {
        () = async { while connections.join_next().await.is_some() {} } => {}
        () = stopped(&mut stop) => connections.shutdown().await,
    }
}

/// One channel: the service its cookie names, if `friend` may use it, connected.
async fn serve_channel(shared: Arc<Shared>, friend: CarrierId, request: ChannelRequest) {
    let service = String::from_utf8_lossy(request.cookie()).into_owned();
    let target = ServiceName::parse(request.cookie()).ok().and_then(|name| {
        lock(&shared.services)
            .resolve(&name, &friend)
            .map(str::to_owned)
    });
    let Some(target) = target else {
        tracing::info!(target: "carrier_forward", %friend, %service, "refused: no such service for this friend");
        let _ = request.refuse(NO_SUCH_SERVICE).await;
        shared.emit(ForwardEvent::Denied { friend, service });
        return;
    };
    let connected =
        tokio::time::timeout(shared.config.connect_timeout(), TcpStream::connect(&target)).await;
    let tcp = match connected {
        Ok(Ok(tcp)) => tcp,
        failed => {
            let reason = match failed {
                Ok(Err(error)) => error.to_string(),
                _ => "the connect timed out".to_owned(),
            };
            tracing::info!(target: "carrier_forward", %friend, %service, %target, %reason, "refused: the service is unreachable");
            let _ = request.refuse(UNREACHABLE).await;
            shared.emit(ForwardEvent::Unreachable {
                friend,
                service,
                target,
                reason,
            });
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let peer = match tcp.peer_addr() {
        Ok(peer) => peer,
        Err(error) => {
            let _ = request.refuse(UNREACHABLE).await;
            shared.emit(ForwardEvent::Unreachable {
                friend,
                service,
                target,
                reason: error.to_string(),
            });
            return;
        }
    };
    let channel = match request.accept().await {
        Ok(channel) => channel,
        Err(error) => {
            tracing::info!(target: "carrier_forward", %friend, %service, %error, "the channel failed to open");
            return;
        }
    };
    shared.emit(ForwardEvent::Opened {
        side: Side::Serving,
        friend,
        service: service.clone(),
        peer,
    });
    let counts = Counts::default();
    let relayed = relay(tcp, channel, &counts).await;
    let (bytes_in, bytes_out) = counts.get();
    tracing::debug!(target: "carrier_forward", %friend, %service, bytes_in, bytes_out, "served connection closed");
    shared.emit(ForwardEvent::Closed {
        side: Side::Serving,
        friend,
        service,
        bytes_in,
        bytes_out,
        error: relayed.err().map(|e| e.to_string()),
    });
}
