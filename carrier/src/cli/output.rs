//! What the client commands print: the reply's result as one JSON line with `--json`, and
//! otherwise a few lines for people.

use serde_json::Value;

use crate::daemon::protocol::{
    FriendEntry, Info, InviteEntry, MessageEntry, PresenceName, Requests, Status,
};

/// One JSON value as a line on stdout; an error when stdout is gone (a closed pipe), where
/// `println!` would panic.
pub(crate) fn line(value: &Value) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{value}")?;
    stdout.flush()
}

/// Prints the result of the request named `request`.
/// `println!` into the output's buffer (writing to a `String` cannot fail).
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

pub(crate) fn print(json: bool, request: &str, result: &Value) {
    if json {
        let _ = line(result);
        return;
    }
    // Hellos, names and descriptions are peers' words: on a terminal, an escape sequence in
    // one could rewrite the screen or the title. They are shown escaped.
    let result = &printable(result);
    // Written at once, at the end: a closed stdout is an error to ignore, not a panic.
    let mut buffer = String::new();
    let out = &mut buffer;
    let text = |key: &str| result.get(key).and_then(Value::as_str).unwrap_or_default();
    match request {
        "id" => say!(out, "{}", text("id")),
        "address" => say!(out, "{}", text("address")),
        "status" => match serde_json::from_value::<Status>(result.clone()) {
            Ok(status) => print_status(out, &status),
            Err(_) => {
                let _ = line(result);
            }
        },
        "friend_add" => say!(
            out,
            "friend request sent to {}; it is delivered when they come online",
            text("to")
        ),
        "friend_accept" => say!(out, "{} is a friend now", text("friend")),
        "friend_refuse" => say!(out, "refused the request of {}", text("friend")),
        "friend_remove" => say!(out, "removed {}", text("friend")),
        "friend_block" => say!(out, "blocked {}", text("blocked")),
        "friend_unblock" => {
            if result.get("was_blocked").and_then(Value::as_bool) == Some(true) {
                say!(out, "unblocked {}", text("unblocked"));
            } else {
                say!(out, "{} was not blocked", text("unblocked"));
            }
        }
        "friend_label" => say!(out, "{} is labelled \"{}\"", text("friend"), text("label")),
        "friend_list" => {
            let friends: Vec<FriendEntry> = result
                .get("friends")
                .and_then(|f| serde_json::from_value(f.clone()).ok())
                .unwrap_or_default();
            print_friends(out, &friends);
        }
        "friend_requests" => match serde_json::from_value::<Requests>(result.clone()) {
            Ok(requests) => print_requests(out, &requests),
            Err(_) => {
                let _ = line(result);
            }
        },
        "presence" => say!(out, "{}", text("presence")),
        "info" => match result
            .get("info")
            .and_then(|i| serde_json::from_value::<Info>(i.clone()).ok())
        {
            Some(info) => print_info(out, &info),
            None => {
                let _ = line(result);
            }
        },
        "nospam" => {
            say!(
                out,
                "nospam:  {}",
                result.get("nospam").unwrap_or(&Value::Null)
            );
            say!(out, "address: {}", text("address"));
        }
        "send" => say!(
            out,
            "message {} ({} bytes) queued for {}",
            text("id"),
            result.get("size").unwrap_or(&Value::Null),
            text("friend")
        ),
        "inbox" => {
            let messages: Vec<MessageEntry> = result
                .get("messages")
                .and_then(|m| serde_json::from_value(m.clone()).ok())
                .unwrap_or_default();
            print_inbox(out, &messages);
        }
        "ack" => say!(out, "acked {}", text("id")),
        "invite" => {
            let status = result.get("status").and_then(Value::as_i64).unwrap_or(-1);
            if status == 0 {
                say!(out, "{} confirmed", text("friend"));
            } else {
                say!(
                    out,
                    "{} refused with status {status}: {}",
                    text("friend"),
                    text("reason")
                );
            }
            match (text("data"), text("data_hex")) {
                ("", "") => {}
                ("", hex) => say!(out, "data (hex): {hex}"),
                (data, _) => say!(out, "data: {data}"),
            }
        }
        "invites" => {
            let invites: Vec<InviteEntry> = result
                .get("invites")
                .and_then(|i| serde_json::from_value(i.clone()).ok())
                .unwrap_or_default();
            if invites.is_empty() {
                say!(out, "no invites waiting");
            }
            for invite in invites {
                let data = invite
                    .data
                    .unwrap_or_else(|| format!("(hex) {}", invite.data_hex.unwrap_or_default()));
                say!(
                    out,
                    "{} from {} for {}: {data}",
                    invite.id,
                    invite.from,
                    invite.extension
                );
            }
        }
        "reply" => {
            say!(
                out,
                "replied to invite {} with status {}",
                result.get("invite").unwrap_or(&Value::Null),
                result.get("status").unwrap_or(&Value::Null)
            );
            if result.get("sent").and_then(Value::as_bool) == Some(false) {
                say!(
                    out,
                    "(the invite's link was lost: the reply goes when the inviter sends it again)"
                );
            }
        }
        "stop" => say!(out, "the daemon stopped"),
        "serve" => say!(out, "serving {} at {}", text("name"), text("target")),
        "unserve" => say!(out, "no longer serving {}", text("name")),
        "forward" => say!(
            out,
            "{} forwards to {}'s {}",
            text("local"),
            text("friend"),
            text("service")
        ),
        "services" => print_services(out, result),
        "forwards" => print_forwards(out, result),
        _ => {
            let _ = line(result);
        }
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(buffer.as_bytes())
        .and_then(|()| stdout.flush());
}

fn print_services(out: &mut String, result: &Value) {
    let list = result
        .get("services")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        say!(out, "no services");
    }
    for service in &list {
        let text = |key: &str| service.get(key).and_then(Value::as_str).unwrap_or_default();
        let only: Vec<&str> = service
            .get("only")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let who = if only.is_empty() {
            "every friend".to_string()
        } else {
            only.join(", ")
        };
        say!(out, "{} -> {} ({who})", text("name"), text("target"));
    }
}

fn print_forwards(out: &mut String, result: &Value) {
    let list = result
        .get("forwards")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        say!(out, "no forwardings");
    }
    for forwarding in &list {
        let text = |key: &str| {
            forwarding
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let connections = forwarding
            .get("connections")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        say!(
            out,
            "{} -> {}'s {}: {} connection(s)",
            text("local"),
            text("friend"),
            text("service"),
            connections.len()
        );
        for c in &connections {
            let number = |key: &str| c.get(key).and_then(Value::as_u64).unwrap_or_default();
            say!(
                out,
                "  {}: {} bytes in, {} bytes out",
                c.get("peer").and_then(Value::as_str).unwrap_or_default(),
                number("bytes_in"),
                number("bytes_out")
            );
        }
    }
}

fn print_inbox(out: &mut String, messages: &[MessageEntry]) {
    if messages.is_empty() {
        say!(out, "no messages");
    }
    for message in messages {
        let how = if message.offline {
            ", sent offline"
        } else {
            ""
        };
        say!(
            out,
            "{} from {} ({} bytes{how}):",
            message.id,
            message.from,
            message.size
        );
        match (&message.text, &message.hex) {
            (Some(text), _) => say!(out, "  {text}"),
            (None, Some(_)) => say!(out, "  (binary; `carrier --json inbox` shows it in hex)"),
            (None, None) => {}
        }
    }
}

fn print_status(out: &mut String, status: &Status) {
    let connection = serde_json::to_value(status.connection).unwrap_or_default();
    say!(out, "id:             {}", status.id);
    say!(out, "address:        {}", status.address);
    say!(out, "listening on:   {}", status.listen);
    say!(
        out,
        "connection:     {}",
        connection.as_str().unwrap_or_default()
    );
    say!(out, "DHT contacts:   {}", status.dht_contacts);
    say!(
        out,
        "public address: {}",
        status
            .standing
            .public_address
            .as_deref()
            .unwrap_or("not known yet")
    );
    say!(
        out,
        "NAT mapping:    {}",
        status.standing.nat.replace('_', " ")
    );
    say!(out, "reachability:   {}", status.standing.reachability);
    say!(
        out,
        "DHT role:       {}",
        if status.standing.server {
            "server"
        } else {
            "client"
        }
    );
    say!(
        out,
        "relays:         {}",
        if status.relays.is_empty() {
            "none".to_string()
        } else {
            status.relays.join(", ")
        }
    );
    if let Some(relaying) = &status.relaying {
        say!(
            out,
            "relaying for:   {} registered, {} sessions, {} bytes forwarded",
            relaying.registrations,
            relaying.sessions,
            relaying.forwarded_bytes
        );
    }
    say!(
        out,
        "friends online: {} of {}",
        status.friends_online,
        status.friends
    );
    for path in &status.paths {
        say!(
            out,
            "  {}: {} via {} (from {})",
            path.friend,
            path.topology,
            path.remote,
            path.local
        );
    }
}

fn presence_word(presence: PresenceName) -> &'static str {
    match presence {
        PresenceName::None => "available",
        PresenceName::Away => "away",
        PresenceName::Busy => "busy",
    }
}

fn print_friends(out: &mut String, friends: &[FriendEntry]) {
    if friends.is_empty() {
        say!(
            out,
            "no friends yet: add one with `carrier friend add ADDRESS HELLO`"
        );
        return;
    }
    for friend in friends {
        let state = if friend.online {
            presence_word(friend.presence)
        } else {
            "offline"
        };
        let mut line = format!("{}  {state}", friend.id);
        if !friend.label.is_empty() {
            line.push_str(&format!("  [{}]", friend.label));
        }
        if !friend.info.name.is_empty() {
            line.push_str(&format!("  {}", friend.info.name));
        }
        say!(out, "{line}");
    }
}

fn print_requests(out: &mut String, requests: &Requests) {
    if requests.incoming.is_empty() && requests.outgoing.is_empty() && requests.blocked.is_empty() {
        say!(out, "no friend requests, nobody blocked");
        return;
    }
    for incoming in &requests.incoming {
        say!(
            out,
            "from {}  ({}): {}",
            incoming.from,
            incoming.info.name,
            incoming.hello
        );
    }
    if !requests.incoming.is_empty() {
        say!(
            out,
            "  accept with `carrier friend accept ID`, refuse with `carrier friend refuse ID`"
        );
    }
    for outgoing in &requests.outgoing {
        say!(out, "to {}: {}  (waiting)", outgoing.to, outgoing.hello);
    }
    for blocked in &requests.blocked {
        say!(out, "blocked {blocked}");
    }
}

fn print_info(out: &mut String, info: &Info) {
    let fields = [
        ("name", &info.name),
        ("description", &info.description),
        ("phone", &info.phone),
        ("email", &info.email),
        ("region", &info.region),
        ("gender", &info.gender),
    ];
    for (field, value) in fields {
        say!(out, "{field:<12} {value}");
    }
}

/// `value` with every control and bidirectional-override character in its strings written as
/// an escape (`\u{1b}`), so that printing it cannot drive the terminal.
fn printable(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(printable_text(text)),
        Value::Array(items) => Value::Array(items.iter().map(printable).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, field)| (printable_text(key), printable(field)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn printable_text(text: &str) -> String {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn peers_words_are_printed_without_terminal_controls() {
        let result = json!({
            "incoming": [{
                "from": "7Wc",
                "hello": "hi\u{1b}]0;owned\u{7}\u{1b}[2J",
                "info": { "name": "Eve\u{9b}31m\u{202e}gnp.exe" },
            }],
            "count": 3,
        });
        let shown = printable(&result);
        for text in [
            &shown["incoming"][0]["hello"],
            &shown["incoming"][0]["info"]["name"],
        ] {
            let text = text.as_str().unwrap();
            assert!(
                !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{text}"
            );
        }
        assert_eq!(
            printable(&result)["incoming"][0]["hello"],
            "hi\\u{1b}]0;owned\\u{7}\\u{1b}[2J"
        );
        assert_eq!(printable(&result)["count"], 3);
        assert_eq!(printable_text("Bob from work"), "Bob from work");
    }
}
