//! A port forward: Bob offers his web server to friends as the service "web"; Alice
//! forwards a local port to it and fetches a page through the tunnel with a plain TCP client.

use std::net::SocketAddr;
use std::time::Instant;

use carrier::forward::Allowed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::network::LOOPBACK;
use super::steps::{ms, step, Error};
use super::web::{WebServer, PAGE};
use super::Demo;

/// The name Bob offers his web server under.
const SERVICE: &str = "web";

/// The most of a response Alice reads.
const RESPONSE_LIMIT: u64 = 64 * 1024;

/// Bob serves, Alice forwards and fetches; the service is withdrawn whatever happened.
pub(super) async fn fetch(demo: &Demo) -> Result<(), Error> {
    let web = WebServer::start().await?;
    let bob = demo.bob.forwarder()?;
    bob.serve(SERVICE, &web.addr().to_string(), Allowed::Everyone)?;
    let fetched = through_tunnel(demo, web.addr()).await;
    bob.unserve(SERVICE)?;
    fetched
}

async fn through_tunnel(demo: &Demo, web: SocketAddr) -> Result<(), Error> {
    let began = Instant::now();
    let forwarding = demo
        .alice
        .forwarder()?
        .forward(&demo.bob.id(), SERVICE, LOOPBACK)
        .await?;
    let local = forwarding.local_addr();
    let response = get(local).await;
    forwarding.close().await?;
    let response = response?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("a response without the end of its head")?;
    let status = head.lines().next().unwrap_or_default();
    step(
        demo.started,
        &format!(
            "Bob offers his web server ({web}) to his friends as \"{SERVICE}\"; Alice forwards \
             {local} to it and sends GET / there: through the tunnel, in {:.1} ms, comes",
            ms(began)
        ),
    );
    println!("             {status}");
    println!("             {body}");
    if status != "HTTP/1.1 200 OK" || body != PAGE {
        return Err("the page is not the one Bob's server sends".into());
    }
    Ok(())
}

/// `GET /` on `addr`, as a browser would send it; the whole response.
async fn get(addr: SocketAddr) -> Result<String, Error> {
    let mut connection = TcpStream::connect(addr).await?;
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    connection.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    connection
        .take(RESPONSE_LIMIT)
        .read_to_end(&mut response)
        .await?;
    Ok(String::from_utf8(response)?)
}
