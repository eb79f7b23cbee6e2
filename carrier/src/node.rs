//! `carrier node`: a public DHT node (a bootstrap node), persistent in its data directory,
//! logging its joins and its standing.

use std::net::SocketAddr;
use std::path::PathBuf;

use carrier::dht::{BootstrapNode, Dht, DhtConfig, DhtEvent};

use crate::daemon::node::standing;

/// Runs the node until SIGINT or SIGTERM.
pub(crate) async fn run(
    listen: SocketAddr,
    data: PathBuf,
    bootstrap: Vec<BootstrapNode>,
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
            loop {
                match events.recv().await {
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
