//! Channels: a multiplexed stream in the session, on which Alice opens a channel per cookie;
//! Bob accepts the cookies he knows and echoes them, and refuses another with a reason.

use std::time::Instant;

use carrier::mux::{Channel, ChannelRequests, CloseReason, Mux, MuxConfig, MuxError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::session::Pair;
use super::steps::{ms, step, Error};
use super::task::Task;

/// The channels Bob serves.
const SERVED: [&str; 3] = ["chat", "photos", "music"];

/// A channel Alice asks for and Bob does not serve.
const UNSERVED: &str = "videos";

/// Alice opens a multiplexed stream and a channel per cookie; Bob answers each.
pub(super) async fn echoes(started: Instant, session: &Pair) -> Result<(), Error> {
    let ((alice, _her_requests), stream) = session
        .alongside_bob(async { Ok(Mux::open(&session.alice, MuxConfig::default()).await?) })
        .await?;

    let (_bob, requests) = Mux::accept(stream, MuxConfig::default())?;
    let _serving = Task::spawn(serve(requests));
    step(
        started,
        "Alice adds a multiplexed stream to the session and opens a channel on it per cookie, \
         each a QUIC stream of its own; Bob echoes those he serves:",
    );
    for cookie in SERVED {
        let began = Instant::now();
        let mut channel = alice.open_channel(cookie.as_bytes()).await?;
        let said = format!("hello on {cookie}");
        channel.write_all(said.as_bytes()).await?;
        channel.shutdown().await?;
        let mut heard = Vec::new();
        channel.read_to_end(&mut heard).await?;
        channel.close(CloseReason::Normal).await?;
        if heard != said.as_bytes() {
            return Err(format!(
                "channel \"{cookie}\" echoed \"{}\"",
                String::from_utf8_lossy(&heard)
            )
            .into());
        }
        println!(
            "             {} \"{cookie}\": \"{said}\" echoed back in {:.1} ms (open, \
             echo, close)",
            channel.id(),
            ms(began)
        );
    }
    match alice.open_channel(UNSERVED.as_bytes()).await {
        Err(MuxError::Refused(reason)) => {
            println!("             \"{UNSERVED}\": Bob refuses the channel: \"{reason}\"")
        }
        Ok(_) => return Err(format!("Bob accepted a \"{UNSERVED}\" channel").into()),
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// Bob's side: accepts the channels he serves and echoes each on a task of its own (so they
/// run side by side), refuses the others with the reason Alice sees; ends with the mux.
async fn serve(mut requests: ChannelRequests) -> Result<(), Error> {
    let mut echoing = JoinSet::new();
    while let Some(request) = requests.recv().await {
        let cookie = String::from_utf8_lossy(request.cookie()).into_owned();
        if SERVED.contains(&cookie.as_str()) {
            echoing.spawn(echo(request.accept().await?));
        } else {
            let reason = format!("no {cookie} here, only {}", SERVED.join(", "));
            request.refuse(&reason).await?;
        }
        while echoing.try_join_next().is_some() {}
    }
    Ok(())
}

/// Sends back what arrives on `channel` until the friend's half-close, then half-closes.
async fn echo(channel: Channel) -> std::io::Result<()> {
    let (mut read, mut write) = tokio::io::split(channel);
    tokio::io::copy(&mut read, &mut write).await?;
    write.shutdown().await
}
