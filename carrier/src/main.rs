//! The `carrier` program.
//!
//! - `carrier daemon` runs a node of one's own on a data directory and serves its control
//!   socket; the client commands (`carrier id`, `carrier friend add`, `carrier watch`, …) drive
//!   it (see docs/CONTROL.md);
//! - `carrier node` runs a public DHT node, the bootstrap node operators give their users;
//! - `carrier demo` runs a whole Carrier network on this machine (loopback only) and shows two
//!   friends meeting, linking up, catching up after one was offline, then using a session's
//!   streams, channels and a forwarded port; a failure names the step it stopped at.
//!
//! Exit codes: 0 success, 1 refused by the node (or failed), 2 usage, 3 no daemon.

mod cli;
mod daemon;
mod demo;
mod log;
mod node;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use carrier::dht::BootstrapNode;
use clap::{Parser, Subcommand};

use cli::{ClientCommand, Failure};

/// Carrier: a decentralized, end-to-end encrypted peer-to-peer platform.
#[derive(Parser)]
#[command(
    name = "carrier",
    version,
    after_help = "Exit codes: 0 success, 1 refused by the node, 2 usage, 3 no daemon."
)]
struct Cli {
    /// The node's data directory (default: the environment variable CARRIER_DATA).
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Prints results as JSON (one line), for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// More log output from `daemon` and `node` (`-vv` for all); RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a node (DHT and friends) on its data directory until stopped, and serves its
    /// control socket DIR/control.sock for the other commands. Prints its DHT contact,
    /// `ID@address`, once it serves.
    Daemon {
        /// Where to bind its UDP socket.
        #[arg(long, default_value = "[::]:0")]
        listen: SocketAddr,
        /// A node to join through, `ID@host:port`; repeat for several. A node with saved
        /// contacts rejoins through those when none is given.
        #[arg(long = "bootstrap", value_name = "ID@HOST:PORT")]
        bootstrap: Vec<BootstrapNode>,
        /// Intervals of fractions of a second and loopback-network settings, for tests on one
        /// machine; never for a real network.
        #[arg(long, hide = true)]
        test_timers: bool,
        /// For the network lab's tests: a DHT client that never checks its reachability.
        #[arg(long, hide = true)]
        test_client: bool,
        /// For tests: seconds between announcements of the peer record.
        #[arg(long, hide = true, value_name = "SECS")]
        test_announce_secs: Option<u64>,
        /// For tests: seconds of silence after which a friend's link is closed, in place of
        /// `--test-timers`' 3 s (the network lab's relay failover needs the usual margin).
        #[arg(long, hide = true, value_name = "SECS")]
        test_silence_secs: Option<u64>,
        /// For tests: first joins tried before the daemon serves anyway (0: it serves at once
        /// and joins in the background), in place of 3 (10 under `--test-timers`).
        #[arg(long, hide = true, value_name = "N")]
        test_join_attempts: Option<u32>,
        /// No LAN discovery: the daemon neither advertises itself on its LAN (mDNS, a
        /// rotating token only its friends recognise) nor looks for friends there. It never
        /// runs on a loopback address.
        #[arg(long)]
        no_lan: bool,
    },
    /// Runs a public DHT node (a bootstrap node) until interrupted; prints its contact,
    /// `ID@address`, which others join through.
    Node {
        /// Where to bind its UDP socket, e.g. `0.0.0.0:33445` or `[::]:33445`.
        #[arg(long, alias = "bind")]
        listen: SocketAddr,
        /// A node to join through, `ID@host:port`; repeat for several. A node with saved
        /// contacts rejoins through those when none is given.
        #[arg(long = "bootstrap", value_name = "ID@HOST:PORT")]
        bootstrap: Vec<BootstrapNode>,
        /// How often, in seconds, to log what the node relays (registrations, sessions,
        /// bytes forwarded, frames dropped), when it changed.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        relay_log_secs: u64,
    },
    /// Runs a small Carrier network on this machine (127.0.0.1 only) and shows two friends
    /// meeting: a friend request, the accept, their encrypted link, presence, messages that
    /// reach a friend who was offline; then a session with a reliable and a datagram stream,
    /// channels, and a TCP port forwarded to a web server.
    Demo {
        /// DHT nodes besides the two friends'.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..))]
        servers: u8,
    },
    #[command(flatten)]
    Client(ClientCommand),
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
    let json = cli.json;
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Demo { servers } => demo::run(servers)
                .await
                .map_err(|e| Failure::Failed(e.to_string())),
            Command::Node {
                listen,
                bootstrap,
                relay_log_secs,
            } => {
                log::init(cli.verbose);
                let data = required_data(cli.data, "node")?;
                let relay_log = std::time::Duration::from_secs(relay_log_secs);
                node::run(listen, data, bootstrap, relay_log)
                    .await
                    .map_err(Failure::Failed)
            }
            Command::Daemon {
                listen,
                bootstrap,
                test_timers,
                test_client,
                test_announce_secs,
                test_silence_secs,
                test_join_attempts,
                no_lan,
            } => {
                log::init(cli.verbose);
                let data = required_data(cli.data, "daemon")?;
                let settings = daemon::node::Settings {
                    data,
                    listen,
                    bootstrap,
                    test_timers,
                    test_client,
                    announce_interval: test_announce_secs.map(std::time::Duration::from_secs),
                    silence_limit: test_silence_secs.map(std::time::Duration::from_secs),
                    join_attempts: test_join_attempts,
                    no_lan,
                };
                daemon::run(settings)
                    .await
                    .map_err(|e| Failure::Failed(e.to_string()))
            }
            Command::Client(command) => cli::run(command, cli.data, json).await,
        }
    });
    // Stop what is left (a watch's reader, say) without waiting for it.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("carrier: {}", failure.message());
            if json {
                if let Failure::Refused(body) = &failure {
                    use std::io::Write;
                    // A closed stdout is no reason to panic (println! would).
                    let _ = writeln!(
                        std::io::stdout(),
                        "{}",
                        serde_json::json!({ "error": { "kind": body.kind, "message": body.message } })
                    );
                }
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

/// The data directory a node needs: `--data`, else `CARRIER_DATA`.
fn required_data(flag: Option<PathBuf>, command: &str) -> Result<PathBuf, Failure> {
    flag.or_else(|| std::env::var_os("CARRIER_DATA").map(PathBuf::from))
        .filter(|dir| !dir.as_os_str().is_empty())
        .ok_or_else(|| {
            Failure::Usage(format!(
                "`carrier {command}` needs a data directory: `--data DIR` or CARRIER_DATA"
            ))
        })
}
