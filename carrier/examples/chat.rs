//! A two-party chat over Carrier messages: each line typed is sent to the friend, each
//! message received is printed, and so is the receipt of each one sent.
//!
//! On one machine, with a bootstrap node (`carrier node` prints its contact, `ID@HOST:PORT`):
//!
//! ```text
//! carrier node --listen 127.0.0.1:33445 --data /tmp/seed
//! cargo run --example chat -- --data /tmp/alice --local --bootstrap ID@127.0.0.1:33445
//! cargo run --example chat -- --data /tmp/bob --local --bootstrap ID@127.0.0.1:33445 \
//!     --friend ALICES_ADDRESS
//! ```
//!
//! Alice accepts the first friend request that comes; Bob sends his to her address. Type a
//! line and press Enter; Ctrl-D (or Ctrl-C) quits.

mod common;

use std::collections::HashMap;

use carrier::friend::FriendEvent;
use carrier::msg::MessageEvent;
use carrier::Event;
use clap::Parser;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A two-party chat.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    node: common::NodeArgs,
}

#[tokio::main]
async fn main() -> Result<(), common::Error> {
    let args = Args::parse();
    let (node, mut events) = common::start(&args.node).await?;
    let friend = common::befriend(&node, &mut events, args.node.friend.as_ref()).await?;
    // Messages need no link: sent while the friend is offline, they wait for it.
    println!("chatting with {friend}");

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut unconfirmed = HashMap::new();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                let id = node.messenger().send(&friend, line.as_bytes()).await?;
                unconfirmed.insert(id, line);
            }
            event = events.recv() => match event.ok_or("the node stopped")? {
                Event::Message(MessageEvent::Message(message)) if message.from == friend => {
                    println!("friend: {}", String::from_utf8_lossy(&message.bytes));
                    // Handled: the friend's node gets its receipt, and it is not raised again.
                    node.messenger().ack(message.id).await?;
                }
                Event::Message(MessageEvent::Delivered { id, .. }) => {
                    if let Some(line) = unconfirmed.remove(&id) {
                        println!("(delivered: {line})");
                    }
                }
                Event::Friend(FriendEvent::Connected(id)) if id == friend => println!("(online)"),
                Event::Friend(FriendEvent::Disconnected(id)) if id == friend => {
                    println!("(offline: messages wait for the friend)");
                }
                _ => {}
            },
            _ = &mut ctrl_c => break,
        }
    }
    node.shutdown().await;
    Ok(())
}
