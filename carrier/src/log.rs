//! Logging of the long-running commands (`carrier daemon`, `carrier node`) through `tracing`,
//! to stderr: `RUST_LOG` picks what (a `tracing_subscriber::filter::Targets` list such as
//! `info` or `warn,carrier=debug`), else `-v` (debug) or `-vv` (trace), else info.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// Installs the stderr logger.
pub(crate) fn init(verbose: u8) {
    let default = match verbose {
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => match spec.parse::<Targets>() {
            Ok(targets) => targets,
            Err(e) => {
                eprintln!("carrier: RUST_LOG={spec:?} is not a filter ({e}); logging at {default}");
                Targets::new().with_default(default)
            }
        },
        _ => Targets::new().with_default(default),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    // Colours (where the build has them) for a terminal only: a log file or a pipe gets plain
    // text. Never `with_ansi(true)`: a build without the `ansi` feature refuses it.
    let layer = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        layer
    } else {
        layer.with_ansi(false)
    };
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .try_init();
}
