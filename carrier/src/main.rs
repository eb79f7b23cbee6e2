//! The `carrier` program.
//!
//! - `carrier demo` runs a whole Carrier network on this machine (loopback only) and shows two
//!   friends meeting, linking up, and catching up after one was offline;
//! - `carrier node` runs a public DHT node, the bootstrap node operators give their users.

mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use carrier::dht::{BootstrapNode, Dht, DhtConfig};
use clap::{Parser, Subcommand};

/// Carrier: a decentralized, end-to-end encrypted peer-to-peer platform.
#[derive(Parser)]
#[command(name = "carrier", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a small Carrier network on this machine (127.0.0.1 only) and shows two friends
    /// meeting: a friend request, the accept, their encrypted link, presence, and a profile
    /// change that reaches a friend who was offline.
    Demo {
        /// DHT nodes besides the two friends'.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..))]
        servers: u8,
    },
    /// Runs a public DHT node (a bootstrap node) until interrupted; prints its contact,
    /// `ID@address`, which others join through.
    Node {
        /// Where to bind its UDP socket, e.g. `0.0.0.0:33445` or `[::]:33445`.
        #[arg(long)]
        bind: SocketAddr,
        /// Its data directory: key, routing table, stored values and mailboxes.
        #[arg(long)]
        data: PathBuf,
        /// A node to join through, `ID@host:port`; repeat for several. A node with saved
        /// contacts rejoins through those when none is given.
        #[arg(long = "bootstrap")]
        bootstrap: Vec<BootstrapNode>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("carrier: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Demo { servers } => demo::run(servers).await,
            Command::Node {
                bind,
                data,
                bootstrap,
            } => node(bind, data, bootstrap).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("carrier: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A public DHT node: a server from the start, persistent in `data`.
async fn node(
    bind: SocketAddr,
    data: PathBuf,
    bootstrap: Vec<BootstrapNode>,
) -> Result<(), demo::Error> {
    let joins = !bootstrap.is_empty();
    let mut config = DhtConfig {
        bind,
        data_dir: Some(data),
        bootstrap,
        ..DhtConfig::default()
    };
    config.node.server = true;
    let dht = Dht::bind(config).await?;
    if joins {
        let contacts = dht.bootstrap().await?;
        eprintln!("joined the network: {contacts} contacts");
    }
    // The contact line comes first on stdout, so scripts can read it.
    println!("{}@{}", dht.id(), dht.local_addr());
    tokio::signal::ctrl_c().await?;
    eprintln!("stopping");
    dht.shutdown().await?;
    Ok(())
}
