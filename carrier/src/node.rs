//! `carrier node`: a public DHT node (a bootstrap node), persistent in its data directory,
//! logging its joins, its standing, and what it relays (every minute by default, when that
//! changed).

use std::net::SocketAddr;
use std::path::PathBuf;

use carrier::dht::{BootstrapNode, Dht, DhtConfig, DhtEvent};

use crate::daemon::node::standing;

/// Logs what the node relays (registrations and sessions held, frames and bytes forwarded,
/// frames dropped) if it changed since `last`, which it returns updated.
fn log_relaying(
    dht: &Dht,
    last: Option<(usize, usize, u64, u64)>,
) -> Option<(usize, usize, u64, u64)> {
    let (counters, registrations, sessions) = dht.relay_status()?;
    let dropped =
        counters.dropped_outside_session + counters.dropped_over_budget + counters.malformed;
    let now = (registrations, sessions, counters.forwarded_bytes, dropped);
    if last != Some(now) {
        tracing::info!(
            registrations,
            sessions,
            forwarded_frames = counters.forwarded_frames,
            forwarded_bytes = counters.forwarded_bytes,
            dropped_outside_session = counters.dropped_outside_session,
            dropped_over_budget = counters.dropped_over_budget,
            malformed = counters.malformed,
            "relaying"
        );
    }
    Some(now)
}

/// Runs the node until SIGINT or SIGTERM.
pub(crate) async fn run(
    listen: SocketAddr,
    data: PathBuf,
    bootstrap: Vec<BootstrapNode>,
    relay_log: std::time::Duration,
) -> Result<(), String> {
    let mut signals = crate::daemon::Signals::install();
    let joins = !bootstrap.is_empty();
    let mut config = DhtConfig::new(listen)
        .with_data_dir(data)
        .with_bootstrap(bootstrap);
    // A bootstrap node is a server by its operator's word: it never waits for probes.
    config.node.server = true;
    let dht = Dht::bind(config)
        .await
        .map_err(|e| format!("cannot start the node: {e}"))?;
    tracing::info!(id = %dht.id(), listen = %dht.local_addr(), "DHT node bound");
    let mut events = dht.events();
    if joins {
        let contacts = dht
            .bootstrap()
            .await
            .map_err(|e| format!("cannot join the network: {e}"))?;
        tracing::info!(contacts, "joined the network");
    }
    // The contact line comes first on stdout, so scripts can read it.
    // Nobody reading stdout is no reason to stop (`println!` would panic on a closed pipe).
    {
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "{}@{}", dht.id(), dht.local_addr());
    }
    let logger = {
        let dht = dht.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            let mut relaying = tokio::time::interval(relay_log);
            let mut last = None;
            loop {
                let event = tokio::select! {
                    event = events.recv() => event,
                    _ = relaying.tick() => {
                        last = log_relaying(&dht, last);
                        continue;
                    }
                };
                match event {
                    Ok(DhtEvent::Standing(_)) => {
                        let standing = standing(&dht);
                        tracing::info!(
                            public_address =
                                standing.public_address.as_deref().unwrap_or("unknown"),
                            nat = %standing.nat,
                            reachability = %standing.reachability,
                            server = standing.server,
                            "standing"
                        );
                    }
                    Ok(DhtEvent::ObservedAddr(addr)) => {
                        tracing::info!(%addr, "peers see this node at")
                    }
                    Ok(DhtEvent::Bootstrapped { routing_entries }) => {
                        tracing::info!(routing_entries, "joined the network")
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        })
    };
    // SIGTERM too (a service manager's stop): its default would end the process before the
    // node saves its contacts.
    signals.recv().await;
    tracing::info!("stopping");
    logger.abort();
    dht.shutdown()
        .await
        .map_err(|e| format!("the node did not shut down cleanly: {e}"))?;
    Ok(())
}
