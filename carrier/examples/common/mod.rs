//! What the examples share: the node's options, starting it, and making (or finding) the
//! one friend the example talks to.
#![allow(dead_code)] // Each example uses part of it.

use std::net::SocketAddr;
use std::path::PathBuf;

use carrier::dht::BootstrapNode;
use carrier::friend::FriendEvent;
use carrier::id::{Address, CarrierId};
use carrier::{Carrier, Event, Events};

/// Any error, for `?` in `main`.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// The options every example takes.
#[derive(clap::Args, Debug)]
pub(crate) struct NodeArgs {
    /// The node's data directory (its key, friends, messages); created if missing.
    #[arg(long, value_name = "DIR")]
    pub(crate) data: PathBuf,
    /// A network on this machine: loopback only, short timers (with `carrier node` on
    /// 127.0.0.1 as the bootstrap node).
    #[arg(long)]
    pub(crate) local: bool,
    /// Where to bind the node's UDP socket (default 127.0.0.1:0 with --local, else [::]:0).
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// A node to join the network through; repeat for several.
    #[arg(long, value_name = "ID@HOST:PORT")]
    pub(crate) bootstrap: Vec<BootstrapNode>,
    /// Sends a friend request to this address (or, if already friends, waits for them).
    /// Without it, the first friend request that comes is accepted.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) friend: Option<Address>,
}

/// Starts the node the options describe and prints its ID and address.
pub(crate) async fn start(args: &NodeArgs) -> Result<(Carrier, Events), Error> {
    let mut builder = Carrier::builder().data_dir(&args.data);
    builder = match (args.local, args.listen) {
        (true, listen) => builder.local(listen.unwrap_or(([127, 0, 0, 1], 0).into())),
        (false, Some(listen)) => builder.listen(listen),
        (false, None) => builder,
    };
    let (node, events) = builder.bootstrap(args.bootstrap.clone()).start().await?;
    println!("my Carrier ID: {}", node.id());
    println!("my address: {}", node.address());
    Ok((node, events))
}

/// Makes the friend this run talks to: sends the request to `--friend` and waits for the
/// accept, or accepts the first request that comes. A friend from an earlier run that
/// comes online will do as well. Returns the friend's ID (its link may not be up yet).
pub(crate) async fn befriend(
    node: &Carrier,
    events: &mut Events,
    address: Option<&Address>,
) -> Result<CarrierId, Error> {
    let friends = node.friends();
    if let Some(address) = address {
        let id = address.id();
        if !friends.is_friend(&id) {
            friends.add_friend(&address.to_string(), b"hi!").await?;
            println!("friend request sent to {id}; waiting for the accept");
            until(events, |e| matches!(e, FriendEvent::Added(p) if *p == id)).await?;
        }
        return Ok(id);
    }
    if let Some(id) = friends.online().first() {
        return Ok(*id);
    }
    println!("waiting for a friend request");
    loop {
        match next_friend_event(events).await? {
            FriendEvent::Request(request) => {
                friends.accept_friend(&request.from).await?;
                println!("accepted the friend request of {}", request.from);
                return Ok(request.from);
            }
            FriendEvent::Connected(id) if friends.is_friend(&id) => return Ok(id),
            _ => {}
        }
    }
}

/// Waits until the link to `friend` is up.
pub(crate) async fn linked(
    node: &Carrier,
    events: &mut Events,
    friend: CarrierId,
) -> Result<(), Error> {
    if !node.friends().is_online(&friend) {
        until(events, |e| *e == FriendEvent::Connected(friend)).await?;
    }
    println!("linked to {friend}");
    Ok(())
}

/// Reads friend events until `want` picks one (other events are dropped).
async fn until(events: &mut Events, want: impl Fn(&FriendEvent) -> bool) -> Result<(), Error> {
    while !want(&next_friend_event(events).await?) {}
    Ok(())
}

async fn next_friend_event(events: &mut Events) -> Result<FriendEvent, Error> {
    loop {
        match events.recv().await.ok_or("the node stopped")? {
            Event::Friend(event) => return Ok(event),
            _ => continue,
        }
    }
}
