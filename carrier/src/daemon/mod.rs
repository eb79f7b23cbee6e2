//! `carrier daemon`: a full node on a data directory, driven through the control socket
//! `DIR/control.sock` (see docs/CONTROL.md).
//!
//! - [`protocol`]: the requests, replies and events, shared with the client commands;
//! - [`node`]: the node it runs and the answers to requests;
//! - `events`: what the layers report, as events for watchers and log lines;
//! - [`server`]: the socket's connections;
//! - `streams`: `pipe`, a connection turned into a byte pipe to a session's stream;
//! - `forwards`: services and forwardings (`serve`, `forward`, …).

mod events;
mod forwards;
mod invites;
mod messages;
pub(crate) mod node;
pub(crate) mod protocol;
mod server;
mod streams;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;
use tokio::sync::watch;

use node::{DaemonNode, Settings};
use protocol::SOCKET_FILE;

/// The lock file in the data directory: held by the running daemon for as long as it runs.
const LOCK_FILE: &str = "daemon.lock";

/// How long a stopping daemon waits for the requests it is answering.
const IN_FLIGHT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest path a Unix socket may have (`sun_path` holds 108 bytes with the final NUL on
/// Linux; 104 on the BSDs and macOS).
#[cfg(target_os = "linux")]
pub(crate) const MAX_SOCKET_PATH_BYTES: usize = 107;
#[cfg(not(target_os = "linux"))]
pub(crate) const MAX_SOCKET_PATH_BYTES: usize = 103;

/// Why a daemon did not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// The socket path does not fit in `sun_path`.
    #[error(
        "the control socket {path} is {len} bytes long, over the limit of {MAX_SOCKET_PATH_BYTES} \
         bytes for a Unix socket path on this system: use a data directory with a shorter path"
    )]
    SocketPathTooLong {
        /// The path.
        path: String,
        /// Its length.
        len: usize,
    },
    /// Another daemon holds the directory's lock.
    #[error(
        "another daemon is running on {dir} (it holds {dir}/{LOCK_FILE}): use it, or stop it \
         first with `carrier stop --data {dir}`"
    )]
    AlreadyRunning {
        /// The data directory.
        dir: String,
    },
    /// The data directory, its lock or its socket could not be set up.
    #[error("{what} {path}: {source}")]
    Io {
        /// What failed.
        what: &'static str,
        /// On which path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The node did not start.
    #[error("{0}")]
    Node(String),
}

/// The control socket's path for a data directory, checked against the OS's limit.
pub(crate) fn socket_path(data: &Path) -> Result<PathBuf, StartError> {
    let path = data.join(SOCKET_FILE);
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH_BYTES {
        return Err(StartError::SocketPathTooLong {
            path: path.display().to_string(),
            len,
        });
    }
    Ok(path)
}

/// Runs the daemon until a `stop` request, SIGINT or SIGTERM. Once the control socket serves,
/// prints the node's DHT contact `ID@address` on stdout.
pub(crate) async fn run(settings: Settings) -> Result<(), StartError> {
    let dir = settings.data.clone();
    let socket = socket_path(&dir)?;
    let io = |what: &'static str, path: &Path| {
        let path = path.display().to_string();
        move |source| StartError::Io { what, path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io("cannot create the data directory", &dir))?;
    // The directory holds the node's secret key and the socket: its owner's only.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io("cannot restrict the data directory", &dir))?;
    let _lock = take_lock(&dir)?;
    // A socket left by a daemon that was killed: the lock says nobody serves it.
    match std::fs::remove_file(&socket) {
        Ok(()) => tracing::debug!("removed a stale control socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot remove the stale socket", &socket)(e)),
    }

    let mut signals = Signals::install();
    let node = DaemonNode::start(&settings)
        .await
        .map_err(StartError::Node)?;
    let listener = UnixListener::bind(&socket).map_err(io("cannot serve on", &socket))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io("cannot restrict the control socket", &socket))?;
    tracing::info!(socket = %socket.display(), "serving the control socket");
    // The contact line comes first on stdout, as `carrier node` prints it: scripts (and
    // tests) read it as the sign that the daemon serves.
    // Nobody reading stdout is no reason to stop (`println!` would panic on a closed pipe).
    {
        use std::io::Write;
        let _ = writeln!(
            std::io::stdout(),
            "{}@{}",
            node.dht().id(),
            node.dht().local_addr()
        );
    }

    let (stop, mut stopped) = watch::channel(false);
    let gate = server::Gate::new();
    let server = tokio::spawn(server::serve(listener, node.clone(), stop, gate.clone()));
    tokio::select! {
        _ = stopped.wait_for(|stop| *stop) => {}
        _ = signals.recv() => tracing::info!("signal received"),
    }
    server.abort();
    tracing::info!("stopping");
    // Requests being answered finish first (a `friend_add` half done, say); new ones are
    // refused with `stopping`.
    if !gate.close(IN_FLIGHT_GRACE).await {
        tracing::warn!("requests still unanswered after {IN_FLIGHT_GRACE:?}: stopping anyway");
    }
    node.shutdown().await;
    let _ = std::fs::remove_file(&socket);
    tracing::info!("stopped");
    Ok(())
}

/// Takes the data directory's lock, or says who holds it.
fn take_lock(dir: &Path) -> Result<File, StartError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| StartError::Io {
            what: "cannot open the lock",
            path: path.display().to_string(),
            source,
        })?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(StartError::AlreadyRunning {
            dir: dir.display().to_string(),
        }),
        Err(e) => Err(StartError::Io {
            what: "cannot lock",
            path: path.display().to_string(),
            source: e.into(),
        }),
    }
}

/// SIGINT and SIGTERM, caught from the moment they are installed (`carrier node` stops on
/// them too). Installed before the contact line is printed: a supervisor that stops the
/// process right after reading it must not meet the default action (an exit that saves
/// nothing).
pub(crate) struct Signals {
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Catches SIGTERM and SIGINT from now on (a signal the OS refuses to hand over keeps its
    /// default action).
    pub(crate) fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            terminate: signal(SignalKind::terminate()).ok(),
            interrupt: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// The next SIGTERM or SIGINT.
    pub(crate) async fn recv(&mut self) {
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.terminate) => {}
            _ = next(&mut self.interrupt) => {}
        }
    }
}
