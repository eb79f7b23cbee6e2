//! The client commands: each finds the daemon of a data directory (`--data DIR` or
//! `CARRIER_DATA`), sends it one request over the control socket, and prints the answer, for
//! people or, with `--json`, as the reply's JSON result.
//!
//! Exit codes: 0 success, 1 refused by the node (or failed), 2 usage, 3 no daemon.

mod client;
mod output;

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use serde_json::Value;

pub(crate) use client::Failure;
use client::{data_dir, Client};

use crate::daemon::protocol::{InfoFields, PresenceName, Request};

/// The commands that talk to a running daemon.
#[derive(Subcommand)]
pub(crate) enum ClientCommand {
    /// Prints the node's Carrier ID.
    Id,
    /// Prints the node's Carrier address: what a friend gives `carrier friend add`.
    Address,
    /// Shows where the node stands: its connection to the network, DHT contacts, public
    /// address, NAT mapping, reachability and friends online.
    Status,
    /// Friends and friend requests.
    #[command(subcommand)]
    Friend(FriendCommand),
    /// Shows the node's presence, or sets it.
    Presence {
        /// The new presence.
        presence: Option<PresenceArg>,
    },
    /// Shows the user info friends see, or sets the fields given.
    Info {
        /// Name.
        #[arg(long)]
        name: Option<String>,
        /// Description (status message).
        #[arg(long)]
        description: Option<String>,
        /// Phone.
        #[arg(long)]
        phone: Option<String>,
        /// Email.
        #[arg(long)]
        email: Option<String>,
        /// Region.
        #[arg(long)]
        region: Option<String>,
        /// Gender.
        #[arg(long)]
        gender: Option<String>,
    },
    /// Shows the nospam (the part of the address that can change), or rotates it: the old
    /// address stops working for new requests, friends stay.
    Nospam {
        /// Picks a new random nospam.
        #[arg(long)]
        rotate: bool,
    },
    /// Prints every event of the node as one JSON line, until interrupted.
    Watch {
        /// First the events since the daemon started (the latest 1,024).
        #[arg(long)]
        replay: bool,
    },
    /// Sends a friend a message; returns once the node has committed it to its outbox (the
    /// receipts come as events: `carrier watch`).
    Send {
        /// Carrier ID or label.
        friend: String,
        /// The text (several arguments are joined with spaces).
        #[arg(num_args = 1.., required_unless_present = "file", conflicts_with = "file")]
        text: Vec<String>,
        /// Sends the bytes of this file instead (up to 5 MiB).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Lists the messages received and not yet acked.
    Inbox,
    /// Acks a message you handled: it is not shown again.
    Ack {
        /// The message's ID, as `carrier inbox` shows it.
        id: String,
    },
    /// Invites a friend to one of its extensions and prints the friend's reply (waits up to
    /// the invite's timeout, 5 minutes).
    Invite {
        /// Carrier ID or label.
        friend: String,
        /// The extension on the friend's node (1 to 31 bytes).
        extension: String,
        /// The data (1 to 8,192 bytes; several arguments are joined with spaces). A flag
        /// `--data` would be the data directory's.
        #[arg(required = true, num_args = 1.., value_name = "DATA")]
        payload: Vec<String>,
        /// The bundle (at most 511 bytes).
        #[arg(long, default_value = "")]
        bundle: String,
    },
    /// Lists the invites waiting for a reply; with an EXTENSION, the daemon takes that
    /// extension's invites from now on (until it stops) and lists those.
    Invites {
        /// The extension to take invites for.
        extension: Option<String>,
    },
    /// Replies to an invite: STATUS 0 confirms with TEXT as its data (1 to 8,192 bytes),
    /// any other status refuses with TEXT as its reason (at most 255 bytes, may be empty).
    Reply {
        /// The invite's ID, as `carrier invites` shows it.
        id: u64,
        /// 0 confirms; anything else refuses.
        #[arg(allow_negative_numbers = true)]
        status: i32,
        /// The confirmation's data or the refusal's reason (several arguments are joined
        /// with spaces).
        #[arg(num_args = 0..)]
        text: Vec<String>,
    },
    /// Connects stdin and stdout to a reliable stream of a session with FRIEND, as netcat
    /// does: stdin's end is passed on (half-close), and the command ends once both
    /// directions ended. With `--listen`, waits for a friend's `pipe` instead.
    Pipe {
        /// Carrier ID or label of the friend to pipe to.
        #[arg(required_unless_present = "listen", conflicts_with = "listen")]
        friend: Option<String>,
        /// Waits for the next pipe a friend opens to this node.
        #[arg(long)]
        listen: bool,
    },
    /// Offers a service to friends: connections to it from a friend's forwarding go to
    /// HOST:PORT (every friend may use it, or only those given with `--only`).
    Serve {
        /// The service's name (1 to 64 ASCII letters, digits, '.', '_', '-').
        name: String,
        /// Where its connections go.
        #[arg(value_name = "HOST:PORT")]
        target: String,
        /// Only this friend may use it (Carrier ID or label; repeat for several).
        #[arg(long, value_name = "FRIEND")]
        only: Vec<String>,
    },
    /// Withdraws a service (connections open to it keep running).
    Unserve {
        /// The service's name.
        name: String,
    },
    /// Lists the services offered.
    Services,
    /// Forwards a local TCP address to a friend's service until interrupted: each
    /// connection to LOCAL-ADDR reaches the service on the friend's node.
    Forward {
        /// Carrier ID or label.
        friend: String,
        /// The service's name on the friend's node.
        name: String,
        /// Where to listen (default 127.0.0.1:0, any free port).
        #[arg(value_name = "LOCAL-ADDR")]
        local: Option<String>,
    },
    /// Lists the forwardings open, with their connections and bytes.
    Forwards,
    /// Stops the daemon; returns once it has exited.
    Stop,
}

/// `carrier friend …`. A friend is named by its Carrier ID or its label.
#[derive(Subcommand)]
pub(crate) enum FriendCommand {
    /// Sends a friend request to an address, with a hello.
    Add {
        /// The friend's Carrier address (`carrier address` on their side).
        address: String,
        /// A few words saying who you are (several arguments are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        hello: Vec<String>,
    },
    /// Accepts a friend request (the requester's Carrier ID).
    Accept {
        /// The requester's Carrier ID.
        id: String,
    },
    /// Refuses a friend request.
    Refuse {
        /// The requester's Carrier ID.
        id: String,
    },
    /// Removes a friend.
    Remove {
        /// Carrier ID or label.
        friend: String,
    },
    /// Blocks a Carrier ID: its requests are dropped.
    Block {
        /// Carrier ID or a friend's label.
        friend: String,
    },
    /// Unblocks a Carrier ID.
    Unblock {
        /// Carrier ID.
        id: String,
    },
    /// Gives a friend a local label (only this node sees it).
    Label {
        /// Carrier ID or current label.
        friend: String,
        /// The label (several arguments are joined with spaces; empty clears it).
        #[arg(num_args = 0..)]
        label: Vec<String>,
    },
    /// Lists the friends.
    List,
    /// Lists friend requests both ways, and the blocked IDs.
    Requests,
}

/// A presence on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PresenceArg {
    /// Available.
    None,
    /// Away.
    Away,
    /// Busy.
    Busy,
}

/// Runs a client command against the daemon of `data` (or `CARRIER_DATA`).
pub(crate) async fn run(
    command: ClientCommand,
    data: Option<PathBuf>,
    json: bool,
) -> Result<(), Failure> {
    let data = data_dir(data)?;
    let mut client = Client::connect(&data).await?;
    let request = match command {
        ClientCommand::Watch { replay } => return watch(client, replay).await,
        ClientCommand::Pipe { friend, listen } => return pipe(client, friend, listen).await,
        ClientCommand::Forward {
            friend,
            name,
            local,
        } => return forward(client, json, friend, name, local).await,
        ClientCommand::Stop => {
            client.request(Request::Stop).await?;
            // The daemon keeps the connection until it has exited.
            while client.next_line().await.ok().flatten().is_some() {}
            output::print(json, "stop", &serde_json::json!({}));
            return Ok(());
        }
        ClientCommand::Id => Request::Id,
        ClientCommand::Address => Request::Address,
        ClientCommand::Status => Request::Status,
        ClientCommand::Presence { presence } => Request::Presence {
            set: presence.map(|p| match p {
                PresenceArg::None => PresenceName::None,
                PresenceArg::Away => PresenceName::Away,
                PresenceArg::Busy => PresenceName::Busy,
            }),
        },
        ClientCommand::Info {
            name,
            description,
            phone,
            email,
            region,
            gender,
        } => Request::Info {
            set: InfoFields {
                name,
                description,
                phone,
                email,
                region,
                gender,
            },
        },
        ClientCommand::Nospam { rotate } => Request::Nospam { rotate },
        ClientCommand::Send { friend, text, file } => match file {
            // The daemon reads the file: its path must not depend on this shell's directory.
            Some(file) => Request::Send {
                friend,
                text: None,
                file: Some(
                    std::path::absolute(&file)
                        .map_err(|e| {
                            Failure::Failed(format!("cannot read {}: {e}", file.display()))
                        })?
                        .to_string_lossy()
                        .into_owned(),
                ),
            },
            None => Request::Send {
                friend,
                text: Some(text.join(" ")),
                file: None,
            },
        },
        ClientCommand::Inbox => Request::Inbox,
        ClientCommand::Ack { id } => Request::Ack { message: id },
        ClientCommand::Invite {
            friend,
            extension,
            bundle,
            payload,
        } => Request::Invite {
            friend,
            extension,
            bundle,
            data: payload.join(" "),
        },
        ClientCommand::Invites { extension } => Request::Invites { extension },
        ClientCommand::Serve { name, target, only } => Request::Serve { name, target, only },
        ClientCommand::Unserve { name } => Request::Unserve { name },
        ClientCommand::Services => Request::Services,
        ClientCommand::Forwards => Request::Forwards,
        ClientCommand::Reply { id, status, text } => {
            let text = text.join(" ");
            let (reason, data) = if status == 0 {
                (String::new(), text)
            } else {
                (text, String::new())
            };
            Request::Reply {
                invite: id,
                status,
                reason,
                data,
            }
        }
        ClientCommand::Friend(friend) => match friend {
            FriendCommand::Add { address, hello } => Request::FriendAdd {
                address,
                hello: hello.join(" "),
            },
            FriendCommand::Accept { id } => Request::FriendAccept { friend: id },
            FriendCommand::Refuse { id } => Request::FriendRefuse { friend: id },
            FriendCommand::Remove { friend } => Request::FriendRemove { friend },
            FriendCommand::Block { friend } => Request::FriendBlock { friend },
            FriendCommand::Unblock { id } => Request::FriendUnblock { friend: id },
            FriendCommand::Label { friend, label } => Request::FriendLabel {
                friend,
                label: label.join(" "),
            },
            FriendCommand::List => Request::FriendList,
            FriendCommand::Requests => Request::FriendRequests,
        },
    };
    let name = request_name(&request);
    let result = client.request(request).await?;
    output::print(json, &name, &result);
    Ok(())
}

/// Prints every event until interrupted or the daemon stops.
async fn watch(mut client: Client, replay: bool) -> Result<(), Failure> {
    client.request(Request::Watch { replay }).await?;
    // On stderr, so stdout holds events only: once it shows, no event is missed.
    eprintln!("watching: each event is one JSON line; Ctrl-C stops");
    // One listener for the whole watch: one made anew each turn would miss a Ctrl-C that
    // came between two events.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            line = client.next_line() => match line? {
                Some(event) => {
                    if output::line(&event).is_err() {
                        // Whoever read the events went away (`carrier watch | head -n 1`).
                        return Ok(());
                    }
                }
                None => return Err(Failure::Failed("the daemon stopped".into())),
            },
            _ = &mut interrupted => return Ok(()),
        }
    }
}

/// Asks for a pipe, then copies stdin to the daemon and the daemon's bytes to stdout until
/// both ended.
async fn pipe(mut client: Client, friend: Option<String>, listen: bool) -> Result<(), Failure> {
    use tokio::io::AsyncWriteExt;

    let opened = client.request(Request::Pipe { friend, listen }).await?;
    if let Some(peer) = opened.get("friend").and_then(Value::as_str) {
        eprintln!("piping with {peer}");
    }
    let (mut from_daemon, mut to_daemon) = client.into_parts();
    let up = async {
        let mut stdin = tokio::io::stdin();
        let copied = tokio::io::copy(&mut stdin, &mut to_daemon).await;
        // The end of stdin is passed on: the friend reads the end of the stream.
        let _ = to_daemon.shutdown().await;
        copied
    };
    let down = async {
        let mut stdout = tokio::io::stdout();
        let copied = tokio::io::copy_buf(&mut from_daemon, &mut stdout).await;
        let _ = stdout.flush().await;
        copied
    };
    let (up, down) = tokio::join!(up, down);
    up.and(down)
        .map(|_| ())
        .map_err(|e| Failure::Failed(format!("the pipe failed: {e}")))
}

/// Asks for a forwarding, prints where it listens, and holds it until interrupted or the
/// daemon stops.
async fn forward(
    mut client: Client,
    json: bool,
    friend: String,
    service: String,
    local: Option<String>,
) -> Result<(), Failure> {
    let opened = client
        .request(Request::Forward {
            friend,
            service,
            local,
        })
        .await?;
    output::print(json, "forward", &opened);
    eprintln!("forwarding: Ctrl-C stops");
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    tokio::select! {
        _ = client.next_line() => Err(Failure::Failed("the daemon stopped".into())),
        _ = &mut interrupted => Ok(()),
    }
}

/// The protocol name of a request, as its JSON spells it.
fn request_name(request: &Request) -> String {
    serde_json::to_value(request)
        .ok()
        .and_then(|v| v.get("request").and_then(Value::as_str).map(String::from))
        .unwrap_or_default()
}
