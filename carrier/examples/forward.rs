//! A TCP port forwarded to a friend's service, as `ssh -L` does, addressed by Carrier ID.
//!
//! ```text
//! # Bob offers his web server (or anything on TCP) as "web"; he accepts the first request.
//! cargo run --example forward -- --data /tmp/bob --local --bootstrap ID@127.0.0.1:33445 \
//!     --serve web 127.0.0.1:8000
//! # Alice befriends him and forwards 127.0.0.1:8080 to his "web".
//! cargo run --example forward -- --data /tmp/alice --local --bootstrap ID@127.0.0.1:33445 \
//!     --friend BOBS_ADDRESS --forward web --at 127.0.0.1:8080
//! curl http://127.0.0.1:8080/
//! ```
//!
//! Each connection to Alice's port becomes a channel to Bob's node, which connects to the
//! service; both print each connection as it opens and closes. Ctrl-C stops.

mod common;

use std::net::SocketAddr;

use carrier::forward::{Allowed, ForwardEvent};
use carrier::Event;
use clap::Parser;

/// Offers a TCP service to a friend, or forwards a local port to a friend's.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    node: common::NodeArgs,
    /// Offers the service NAME to the friend: its connections go to HOST:PORT.
    #[arg(long, num_args = 2, value_names = ["NAME", "HOST:PORT"])]
    #[arg(required_unless_present = "forward")]
    serve: Option<Vec<String>>,
    /// Forwards a local TCP address to the friend's service NAME.
    #[arg(long, value_name = "NAME", conflicts_with = "serve")]
    forward: Option<String>,
    /// Where the forwarding listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    at: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<(), common::Error> {
    let args = Args::parse();
    let (node, mut events) = common::start(&args.node).await?;
    let friend = common::befriend(&node, &mut events, args.node.friend.as_ref()).await?;

    // Held until the end: dropping a forwarding closes its port.
    let _forwarding = if let Some([name, target]) = args.serve.as_deref() {
        // Offered before the link is up, so the friend's first connection finds it.
        node.forwarder()
            .serve(name, target, Allowed::Only(vec![friend]))?;
        println!("serving {name} ({target}) to {friend}");
        common::linked(&node, &mut events, friend).await?;
        None
    } else if let Some(name) = &args.forward {
        common::linked(&node, &mut events, friend).await?;
        let forwarding = node.forwarder().forward(&friend, name, args.at).await?;
        println!(
            "forwarding {} to {name} at {friend}",
            forwarding.local_addr()
        );
        Some(forwarding)
    } else {
        None
    };

    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            event = events.recv() => {
                if let Event::Forward(event) = event.ok_or("the node stopped")? {
                    report(event);
                }
            }
            _ = &mut ctrl_c => break,
        }
    }
    node.shutdown().await;
    Ok(())
}

/// Prints a forwarded connection as it opens and closes (and any other forwarding event).
fn report(event: ForwardEvent) {
    match event {
        ForwardEvent::Opened { service, peer, .. } => {
            println!("{service}: a connection opened ({peer})");
        }
        ForwardEvent::Closed {
            service,
            bytes_in,
            bytes_out,
            error,
            ..
        } => {
            let how = error.map_or("cleanly".into(), |e| format!("on an error ({e})"));
            println!("{service}: a connection closed {how}, {bytes_out} bytes out, {bytes_in} in");
        }
        other => println!("{other:?}"),
    }
}
