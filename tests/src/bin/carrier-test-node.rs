//! `carrier-test-node`: one Carrier node (DHT and friend layer) as a child process that tests
//! drive over stdin and stdout, so they can SIGKILL it at any moment and start it again on the
//! same data directory.
//!
//! ```text
//! carrier-test-node --data-dir DIR --bind IP:PORT [--bootstrap ID@HOST:PORT]... [--name NAME]
//! ```
//!
//! The node uses short retry and poll intervals (fractions of a second), as tests need. Once
//! running it prints `ready <id> <address> <socket address>`. Then each command line on stdin
//! gets one reply line, and events are printed as they happen, each on its own line starting
//! with `event`:
//!
//! | command | reply |
//! |---|---|
//! | `add <address> <hello…>` | `ok` or `err <kind>` |
//! | `accept <id>`, `refuse <id>`, `remove <id>`, `block <id>`, `unblock <id>` | `ok` or `err <kind>` |
//! | `nospam <u32>` | `ok` |
//! | `label <id> <text…>` | `ok` or `err <kind>` |
//! | `labelof <id>` | `label <text>`, or `err not-a-friend` |
//! | `autoaccept` | `ok`: every request, pending or new, is accepted from now on |
//! | `check` | `ok`, after checking the mailboxes |
//! | `address` | `address <address>` |
//! | `friends`, `incoming`, `outgoing`, `blocked` | the word, then the IDs, space-separated |
//! | `outbox` | `outbox <items> <deposited items>` |
//! | `online` | `online`, then the connected friends' IDs |
//! | `links` | `links <count>` (links held) |
//! | `dialled <id>` | `dialled yes` or `dialled no`: whether this node dialled the link it holds to a friend (the dialling side sends the keep-alives), `dialled none` without one |
//! | `presence none\|away\|busy` | `ok` |
//! | `name <text…>` | `ok`, after setting the user info's name |
//! | `profile <id>` | `profile <presence> <name…>` of a friend, or `err not-a-friend` |
//! | `quit` | `bye`, after a clean shutdown |
//!
//! Events: `event request <from> <hello as hex>`, `event added <id>`, `event removed <id>`,
//! `event connected <id>`, `event disconnected <id>`, `event presence <id> <presence>`,
//! `event info <id> <name…>`.
//! Error kinds: `yourself`, `invalid-address`, `unknown-request`, `not-a-friend`,
//! `empty-hello`, `hello-too-long`, `label-too-long`, `blocked`, `usage`, `other`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use carrier::dht::{BootstrapNode, Dht, DhtConfig};
use carrier::friend::{FriendError, FriendEvent, Friends, FriendsConfig, Presence, UserInfo};
use carrier::id::{CarrierId, Nospam};
use tokio::io::{AsyncBufReadExt, BufReader};

struct Args {
    data_dir: PathBuf,
    bind: std::net::SocketAddr,
    bootstrap: Vec<BootstrapNode>,
    name: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut data_dir, mut bind, mut bootstrap, mut name) = (None, None, Vec::new(), None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data-dir" => data_dir = Some(PathBuf::from(value)),
            "--bind" => bind = Some(value.parse().map_err(|e| format!("--bind: {e}"))?),
            "--bootstrap" => {
                bootstrap.push(value.parse().map_err(|e| format!("--bootstrap: {e}"))?)
            }
            "--name" => name = Some(value),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        data_dir: data_dir.ok_or("--data-dir is required")?,
        bind: bind.ok_or("--bind is required")?,
        bootstrap,
        name: name.unwrap_or_default(),
    })
}

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => fatal(&format!("runtime: {e}")),
    };
    if let Err(e) = runtime.block_on(run()) {
        fatal(&e);
    }
}

fn fatal(message: &str) -> ! {
    println!("fatal {message}");
    std::process::exit(1)
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let mut dht_config = DhtConfig {
        bind: args.bind,
        data_dir: Some(args.data_dir),
        bootstrap: args.bootstrap,
        query_timeout: Duration::from_secs(10),
        ..DhtConfig::default()
    };
    dht_config.node.server = true;
    let dht = Dht::bind(dht_config).await.map_err(|e| e.to_string())?;
    let mut joined = false;
    for _ in 0..10 {
        if dht.bootstrap().await.is_ok() {
            joined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !joined {
        return Err("bootstrap failed".into());
    }
    let (friends, mut events) = Friends::start(dht.clone(), FriendsConfig::for_tests())
        .await
        .map_err(|e| e.to_string())?;
    if let Some(info) = UserInfo::new(&args.name, "a test node") {
        friends
            .set_user_info(info)
            .await
            .map_err(|e| e.to_string())?;
    }
    println!(
        "ready {} {} {}",
        friends.id(),
        friends.address(),
        dht.local_addr()
    );

    let auto_accept = Arc::new(AtomicBool::new(false));
    let printer = {
        let (friends, auto_accept) = (friends.clone(), auto_accept.clone());
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    FriendEvent::Request(request) => {
                        println!("event request {} {}", request.from, hex(&request.hello));
                        if auto_accept.load(Ordering::SeqCst) {
                            let _ = friends.accept_friend(&request.from).await;
                        }
                    }
                    FriendEvent::Added(id) => println!("event added {id}"),
                    FriendEvent::Removed(id) => println!("event removed {id}"),
                    FriendEvent::Connected(id) => println!("event connected {id}"),
                    FriendEvent::Disconnected(id) => println!("event disconnected {id}"),
                    FriendEvent::PresenceChanged(id, presence) => {
                        println!("event presence {id} {}", presence_word(presence))
                    }
                    FriendEvent::InfoChanged(id, info) => {
                        println!("event info {id} {}", info.name())
                    }
                    other => println!("event other {other:?}"),
                }
            }
        })
    };

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim();
        if line == "quit" {
            break;
        }
        let reply = command(&friends, &auto_accept, line).await;
        println!("{reply}");
    }
    printer.abort();
    friends.shutdown().await;
    drop(friends);
    let _ = dht.shutdown().await;
    println!("bye");
    Ok(())
}

async fn command(friends: &Friends, auto_accept: &AtomicBool, line: &str) -> String {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let id = || rest.trim().parse::<CarrierId>().ok();
    let done = |result: Result<(), FriendError>| match result {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("err {}", kind(&e)),
    };
    let list = |word: &str, ids: Vec<CarrierId>| {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        format!("{word} {}", ids.join(" ")).trim_end().to_string()
    };
    match word {
        "add" => {
            let (address, hello) = rest.split_once(' ').unwrap_or((rest, ""));
            done(friends.add_friend(address, hello.as_bytes()).await)
        }
        "accept" | "refuse" | "remove" | "block" | "unblock" => {
            let Some(id) = id() else {
                return "err usage".into();
            };
            done(match word {
                "accept" => friends.accept_friend(&id).await,
                "refuse" => friends.refuse_friend(&id).await,
                "remove" => friends.remove_friend(&id).await,
                "block" => friends.block(&id).await,
                _ => friends.unblock(&id).await.map(drop),
            })
        }
        "label" => {
            let (id, label) = rest.split_once(' ').unwrap_or((rest, ""));
            match id.parse::<CarrierId>() {
                Ok(id) => done(friends.set_label(&id, label).await),
                Err(_) => "err usage".into(),
            }
        }
        "labelof" => match id() {
            Some(id) => match friends.friends().into_iter().find(|f| f.id == id) {
                Some(friend) => format!("label {}", friend.label),
                None => "err not-a-friend".into(),
            },
            None => "err usage".into(),
        },
        "nospam" => match rest.trim().parse::<u32>() {
            Ok(nospam) => done(friends.set_nospam(Nospam(nospam)).await),
            Err(_) => "err usage".into(),
        },
        "autoaccept" => {
            auto_accept.store(true, Ordering::SeqCst);
            for request in friends.incoming_requests() {
                let _ = friends.accept_friend(&request.from).await;
            }
            "ok".into()
        }
        "check" => {
            friends.check_mailboxes().await;
            "ok".into()
        }
        "address" => format!("address {}", friends.address()),
        "friends" => list("friends", friends.friends().iter().map(|f| f.id).collect()),
        "incoming" => list(
            "incoming",
            friends.incoming_requests().iter().map(|r| r.from).collect(),
        ),
        "outgoing" => list(
            "outgoing",
            friends
                .outgoing_requests()
                .iter()
                .map(|r| r.to.id())
                .collect(),
        ),
        "blocked" => list("blocked", friends.blocked()),
        "outbox" => match friends.outbox() {
            Ok(items) => {
                let deposited = items
                    .iter()
                    .filter(|e| e.deposited_unix_ms.is_some())
                    .count();
                format!("outbox {} {deposited}", items.len())
            }
            Err(e) => format!("err other {e}"),
        },
        "online" => list("online", friends.online()),
        "links" => format!("links {}", friends.link_count()),
        "dialled" => match id() {
            Some(id) => match friends.link(&id) {
                Some(link) if link.connection().side().is_client() => "dialled yes".into(),
                Some(_) => "dialled no".into(),
                None => "dialled none".into(),
            },
            None => "err usage".into(),
        },
        "presence" => match rest.trim() {
            "none" => done(friends.set_presence(Presence::None).await),
            "away" => done(friends.set_presence(Presence::Away).await),
            "busy" => done(friends.set_presence(Presence::Busy).await),
            _ => "err usage".into(),
        },
        "name" => match friends.user_info().with_name(rest) {
            Ok(info) => done(friends.set_user_info(info).await),
            Err(_) => "err name-too-long".into(),
        },
        "profile" => match id() {
            Some(id) => match friends.friends().into_iter().find(|f| f.id == id) {
                Some(friend) => format!(
                    "profile {} {}",
                    presence_word(friend.presence),
                    friend.info.name()
                ),
                None => "err not-a-friend".into(),
            },
            None => "err usage".into(),
        },
        _ => "err usage".into(),
    }
}

fn presence_word(presence: Presence) -> &'static str {
    match presence {
        Presence::None => "none",
        Presence::Away => "away",
        Presence::Busy => "busy",
    }
}

fn kind(error: &FriendError) -> &'static str {
    match error {
        FriendError::Yourself => "yourself",
        FriendError::InvalidAddress(_) => "invalid-address",
        FriendError::UnknownRequest(_) => "unknown-request",
        FriendError::NotAFriend(_) => "not-a-friend",
        FriendError::EmptyHello => "empty-hello",
        FriendError::HelloTooLong { .. } => "hello-too-long",
        FriendError::LabelTooLong { .. } => "label-too-long",
        FriendError::Blocked(_) => "blocked",
        _ => "other",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
