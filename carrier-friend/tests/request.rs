//! Friend requests (`carrier-request/1`): exactly one size-bounded frame from anyone.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod common;

use std::time::Duration;

use carrier_friend::quinn::{Connection, ConnectionError, VarInt};
use carrier_friend::{close, Accepted, Alpn, RequestError, MAX_REQUEST_FRAME_BYTES};
use common::node;

const PATIENCE: Duration = Duration::from_secs(20);

/// The code the receiver closed `connection` with.
async fn closed_with(connection: &Connection) -> VarInt {
    match tokio::time::timeout(PATIENCE, connection.closed()).await {
        Ok(ConnectionError::ApplicationClosed(closed)) => closed.error_code,
        other => panic!("expected an application close, got {other:?}"),
    }
}

/// The next request `node` receives, taken as it is (dropped, so its sender hears
/// `REQUEST_RECEIVED`).
async fn taken(node: &common::Node) -> (carrier_friend::dht::id::CarrierId, Vec<u8>) {
    match tokio::time::timeout(PATIENCE, node.links.accept()).await {
        Ok(Some(Accepted::Request(request))) => (request.from, request.frame),
        other => panic!("no request: {other:?}"),
    }
}

fn frame(length: u16, body: &[u8]) -> Vec<u8> {
    let mut bytes = length.to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

#[tokio::test]
async fn a_stranger_s_request_arrives_whole_and_the_connection_closes() {
    let bob = node(&[]).await;
    let stranger = node(&[]).await;
    // The connection stays open until Bob's side takes the request (here: drops it).
    let (sent, (from, frame)) = tokio::join!(
        stranger
            .links
            .send_request(bob.id(), bob.path(), b"hello, I am a stranger"),
        taken(&bob),
    );
    assert_eq!(from, stranger.id());
    assert_eq!(frame, b"hello, I am a stranger");
    sent.unwrap();
    assert_eq!(bob.links.stats().requests_received, 1);
}

#[tokio::test]
async fn the_taker_s_answer_is_the_close_code_the_sender_sees() {
    let bob = node(&[]).await;
    let stranger = node(&[]).await;
    let (sent, ()) = tokio::join!(
        stranger.links.send_request(bob.id(), bob.path(), b"hello"),
        async {
            let Ok(Some(Accepted::Request(request))) =
                tokio::time::timeout(PATIENCE, bob.links.accept()).await
            else {
                panic!("no request");
            };
            request.answer(close::REQUEST_NOT_TAKEN);
        },
    );
    assert!(
        matches!(sent, Err(RequestError::Refused(code)) if code == close::REQUEST_NOT_TAKEN),
        "{sent:?}"
    );
}

#[tokio::test]
async fn a_frame_of_the_largest_size_is_accepted() {
    let bob = node(&[]).await;
    let stranger = node(&[]).await;
    let largest = vec![7u8; MAX_REQUEST_FRAME_BYTES];
    let (sent, (_, frame)) = tokio::join!(
        stranger.links.send_request(bob.id(), bob.path(), &largest),
        taken(&bob),
    );
    assert_eq!(frame, largest);
    sent.unwrap();
}

#[tokio::test]
async fn an_oversized_frame_is_refused_by_both_sides() {
    let bob = node(&[]).await;
    let stranger = node(&[]).await;
    let oversized = vec![0u8; MAX_REQUEST_FRAME_BYTES + 1];
    let error = stranger
        .links
        .send_request(bob.id(), bob.path(), &oversized)
        .await
        .unwrap_err();
    assert!(matches!(error, RequestError::TooLarge(n) if n == oversized.len()));

    // A sender that ignores the cap is refused by the receiver.
    let connection = stranger
        .links
        .connect(bob.id(), bob.path(), Alpn::Request)
        .await
        .unwrap();
    let mut stream = connection.open_uni().await.unwrap();
    let length = u16::try_from(oversized.len()).unwrap();
    let _ = stream.write_all(&frame(length, &oversized)).await;
    assert_eq!(closed_with(&connection).await, close::REQUEST_TOO_LARGE);
    let stats = bob.links.stats();
    assert_eq!((stats.requests_refused, stats.requests_received), (1, 0));
}

#[tokio::test]
async fn a_second_frame_on_the_stream_is_refused() {
    let bob = node(&[]).await;
    let stranger = node(&[]).await;
    let connection = stranger
        .links
        .connect(bob.id(), bob.path(), Alpn::Request)
        .await
        .unwrap();
    let mut stream = connection.open_uni().await.unwrap();
    let mut two = frame(3, b"one");
    two.extend(frame(3, b"two"));
    let _ = stream.write_all(&two).await;
    let _ = stream.finish();
    assert_eq!(closed_with(&connection).await, close::REQUEST_EXTRA_FRAME);
    assert_eq!(bob.links.stats().requests_received, 0);
}

#[tokio::test]
async fn a_second_stream_is_refused() {
    let bob = node(&[]).await;
    let stranger = node(&[]).await;
    let connection = stranger
        .links
        .connect(bob.id(), bob.path(), Alpn::Request)
        .await
        .unwrap();
    // The first frame is still incomplete when a second stream brings another.
    let mut first = connection.open_uni().await.unwrap();
    let _ = first.write_all(&[0, 10, b'h']).await;
    let mut second = connection.open_uni().await.unwrap();
    let _ = second.write_all(&frame(3, b"two")).await;
    let _ = second.finish();
    assert_eq!(closed_with(&connection).await, close::REQUEST_EXTRA_FRAME);
    assert_eq!(bob.links.stats().requests_received, 0);
}

#[tokio::test]
async fn a_stream_ending_inside_the_frame_is_refused() {
    let bob = node(&[]).await;
    let stranger = node(&[]).await;
    let connection = stranger
        .links
        .connect(bob.id(), bob.path(), Alpn::Request)
        .await
        .unwrap();
    let mut stream = connection.open_uni().await.unwrap();
    let _ = stream.write_all(&[0, 10, b'h']).await;
    let _ = stream.finish();
    assert_eq!(closed_with(&connection).await, close::REQUEST_MALFORMED);
}
