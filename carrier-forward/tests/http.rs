//! A real HTTP server (hyper) behind a service, fetched through a forwarding by a real HTTP
//! client (hyper): a 64 MiB body with a matching hash, and 50 connections in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use carrier_forward::{Allowed, ForwardEvent, Side};
use common::{any_local, friends, pattern, within};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The big body's size.
const BIG_BYTES: usize = 64 << 20;
/// Connections fetched at once.
const PARALLEL: usize = 50;

/// The body of `/small/N`.
fn small(n: u64) -> Vec<u8> {
    pattern(n, 10_000 + n as usize * 37)
}

/// An HTTP/1 server on loopback: `/big` answers `big`, `/small/N` answers [`small`]`(N)`.
async fn http_server(big: Bytes) -> SocketAddr {
    let listener = TcpListener::bind(any_local()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let big = big.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let big = big.clone();
                    async move {
                        let path = request.uri().path();
                        let response = if path == "/big" {
                            Response::new(Full::new(big))
                        } else if let Some(n) = path.strip_prefix("/small/") {
                            Response::new(Full::new(Bytes::from(small(n.parse().unwrap()))))
                        } else {
                            let mut response = Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = StatusCode::NOT_FOUND;
                            response
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// GET `path` on a new connection to `addr`: the status and the body's hash and length,
/// hashed as it arrives.
async fn get(addr: SocketAddr, path: &str) -> (StatusCode, blake3::Hash, usize) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", "service")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let mut body = response.into_body();
    let mut hasher = blake3::Hasher::new();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            hasher.update(&data);
            len += data.len();
        }
    }
    drop(sender);
    let _ = driver.await;
    (status, hasher.finalize(), len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_body_arrives_through_a_forwarding_with_its_hash() {
    let (_net, mut alice, mut bob) = friends(71, 0).await;
    let big = Bytes::from(pattern(64, BIG_BYTES));
    let server = http_server(big.clone()).await;
    bob.forwarder
        .serve("web", &server.to_string(), Allowed::Everyone)
        .unwrap();
    let forwarding = within(
        "the forwarding",
        alice.forwarder.forward(&bob.id(), "web", any_local()),
    )
    .await
    .unwrap();
    let (status, hash, len) = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        get(forwarding.local_addr(), "/big"),
    )
    .await
    .expect("64 MiB within a minute");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(len, BIG_BYTES);
    assert_eq!(hash, blake3::hash(&big));
    // Both ends counted the body (and the headers) from the friend's side.
    let closed = alice
        .until_event(|e| {
            matches!(
                e,
                ForwardEvent::Closed {
                    side: Side::Forwarding,
                    ..
                }
            )
        })
        .await;
    assert!(
        matches!(closed, ForwardEvent::Closed { bytes_in, error: None, .. } if bytes_in > BIG_BYTES as u64),
        "{closed:?}"
    );
    let served = bob
        .until_event(|e| {
            matches!(
                e,
                ForwardEvent::Closed {
                    side: Side::Serving,
                    ..
                }
            )
        })
        .await;
    assert!(
        matches!(served, ForwardEvent::Closed { bytes_out, .. } if bytes_out > BIG_BYTES as u64),
        "{served:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_connections_fetch_in_parallel_through_one_forwarding() {
    let (_net, mut alice, bob) = friends(71, 20).await;
    let server = http_server(Bytes::new()).await;
    bob.forwarder
        .serve("web", &server.to_string(), Allowed::Everyone)
        .unwrap();
    let forwarding = within(
        "the forwarding",
        alice.forwarder.forward(&bob.id(), "web", any_local()),
    )
    .await
    .unwrap();
    let local = forwarding.local_addr();
    let mut fetches = JoinSet::new();
    for n in 0..PARALLEL as u64 {
        fetches.spawn(async move { (n, get(local, &format!("/small/{n}")).await) });
    }
    let mut done = 0;
    within("50 fetches", async {
        while let Some(fetched) = fetches.join_next().await {
            let (n, (status, hash, len)) = fetched.unwrap();
            let expected = small(n);
            assert_eq!(status, StatusCode::OK, "fetch {n}");
            assert_eq!(
                (hash, len),
                (blake3::hash(&expected), expected.len()),
                "fetch {n}"
            );
            done += 1;
        }
    })
    .await;
    assert_eq!(done, PARALLEL);
    let mut opened = 0;
    while opened < PARALLEL {
        alice
            .until_event(|e| {
                matches!(
                    e,
                    ForwardEvent::Opened {
                        side: Side::Forwarding,
                        ..
                    }
                )
            })
            .await;
        opened += 1;
    }
}
