//! Bob's web server: a tiny HTTP/1.1 server on loopback, plain tokio, for the forwarding step
//! to reach through the tunnel. It answers every GET with one short page.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::network::LOOPBACK;
use super::steps::Error;
use super::task::Task;

/// The page it serves.
pub(super) const PAGE: &str = "Hello from Bob's web server";

/// The longest request head it reads.
const HEAD_LIMIT: usize = 8 * 1024;

/// The server, listening on a port of its own on 127.0.0.1; it stops when dropped.
pub(super) struct WebServer {
    addr: SocketAddr,
    _serving: Task<()>,
}

impl WebServer {
    pub(super) async fn start() -> Result<WebServer, Error> {
        let listener = TcpListener::bind(LOOPBACK).await?;
        Ok(WebServer {
            addr: listener.local_addr()?,
            _serving: Task::spawn(serve(listener)),
        })
    }

    /// Where it listens.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Answers each connection on a task of its own, until dropped (with them).
async fn serve(listener: TcpListener) -> Result<(), Error> {
    let mut answering = JoinSet::new();
    loop {
        let (connection, _) = listener.accept().await?;
        answering.spawn(answer(connection));
        while answering.try_join_next().is_some() {}
    }
}

/// Reads one request head and answers it, then closes the connection.
async fn answer(mut connection: TcpStream) -> io::Result<()> {
    let head = read_head(&mut connection).await?;
    let (status, body) = if head.starts_with(b"GET ") {
        ("200 OK", PAGE)
    } else {
        ("405 Method Not Allowed", "Only GET, sorry")
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    connection.write_all(response.as_bytes()).await?;
    connection.shutdown().await
}

/// The request's head, up to and with the blank line that ends it.
async fn read_head(connection: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > HEAD_LIMIT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a request head too long",
            ));
        }
        let n = connection.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}
