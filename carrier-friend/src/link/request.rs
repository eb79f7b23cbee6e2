//! `carrier-request/1`: one friend request from anyone, as one size-bounded frame.
//!
//! The sender opens the connection's first unidirectional stream and writes one frame: a
//! 2-byte big-endian length, then that many bytes (at most [`MAX_REQUEST_FRAME_BYTES`]), then
//! ends the stream. The receiver reads exactly that, and closes the connection with
//! [`close::REQUEST_RECEIVED`]; anything else closes it with its own code: a length over the
//! cap [`close::REQUEST_TOO_LARGE`], bytes after the frame or another stream
//! [`close::REQUEST_EXTRA_FRAME`], a stream ending inside the frame
//! [`close::REQUEST_MALFORMED`], nothing whole in time [`close::REQUEST_TIMED_OUT`]. The
//! receiver closes with `REQUEST_RECEIVED` only once the layer above has taken the request
//! (see [`IncomingRequest`](super::IncomingRequest)), or [`close::REQUEST_NOT_TAKEN`]. What the
//! bytes mean (hello, address, nospam) is the friend layer's to define.

use std::time::Duration;

use quinn::{Connection, RecvStream, VarInt};

use super::close;
use super::error::RequestError;

/// The largest request frame: a 1024-byte hello, a 63-byte name and the signatures and
/// addresses around them fit with room to spare.
pub const MAX_REQUEST_FRAME_BYTES: usize = 2048;

/// The bytes before a frame: its length.
const LENGTH_BYTES: usize = 2;

/// How long a stranger has, from the end of the handshake, to deliver its frame.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A request frame as it goes on the stream, if `frame` fits the cap.
pub(crate) fn encode(frame: &[u8]) -> Option<Vec<u8>> {
    if frame.len() > MAX_REQUEST_FRAME_BYTES {
        return None;
    }
    let length = u16::try_from(frame.len()).ok()?;
    let mut bytes = Vec::with_capacity(LENGTH_BYTES + frame.len());
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(frame);
    Some(bytes)
}

/// Sends `bytes` (an [`encode`]d frame) on a fresh `carrier-request/1` connection and waits
/// for the receiver's answer: its close code.
pub(crate) async fn send(connection: &Connection, bytes: &[u8]) -> Result<(), RequestError> {
    let mut stream = connection.open_uni().await?;
    stream.write_all(bytes).await?;
    // The peer closing the connection is the answer; a finish that races with it is moot.
    let _ = stream.finish();
    match connection.closed().await {
        quinn::ConnectionError::ApplicationClosed(closed)
            if closed.error_code == close::REQUEST_RECEIVED =>
        {
            Ok(())
        }
        quinn::ConnectionError::ApplicationClosed(closed) => {
            Err(RequestError::Refused(closed.error_code))
        }
        other => Err(RequestError::Connection(other)),
    }
}

/// Reads the one frame of a request connection, or gives the close code that refuses it.
/// The caller closes the connection with [`close::REQUEST_RECEIVED`] or that code.
pub(crate) async fn receive(connection: &Connection) -> Result<Vec<u8>, VarInt> {
    let reading = async {
        let mut stream = connection
            .accept_uni()
            .await
            .map_err(|_| close::REQUEST_MALFORMED)?;
        // Streams are accepted in order of opening, so another one means another frame; an
        // error there means the connection is gone.
        let another = |accepted: bool| {
            Err(if accepted {
                close::REQUEST_EXTRA_FRAME
            } else {
                close::REQUEST_MALFORMED
            })
        };
        tokio::select! {
            second = connection.accept_uni() => another(second.is_ok()),
            second = connection.accept_bi() => another(second.is_ok()),
            frame = read_frame(&mut stream) => frame,
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, reading)
        .await
        .unwrap_or(Err(close::REQUEST_TIMED_OUT))
}

/// The frame on `stream`: its length, its bytes, then the end of the stream.
async fn read_frame(stream: &mut RecvStream) -> Result<Vec<u8>, VarInt> {
    let mut length = [0u8; LENGTH_BYTES];
    stream
        .read_exact(&mut length)
        .await
        .map_err(|_| close::REQUEST_MALFORMED)?;
    let length = usize::from(u16::from_be_bytes(length));
    if length > MAX_REQUEST_FRAME_BYTES {
        return Err(close::REQUEST_TOO_LARGE);
    }
    let mut frame = vec![0u8; length];
    stream
        .read_exact(&mut frame)
        .await
        .map_err(|_| close::REQUEST_MALFORMED)?;
    let mut after = [0u8; 1];
    match stream.read(&mut after).await {
        Ok(None) => Ok(frame),
        Ok(Some(_)) => Err(close::REQUEST_EXTRA_FRAME),
        Err(_) => Err(close::REQUEST_MALFORMED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_length_and_respect_the_cap() {
        let bytes = encode(b"hello").unwrap();
        assert_eq!(bytes, [0, 5, b'h', b'e', b'l', b'l', b'o']);
        assert!(encode(&[0; MAX_REQUEST_FRAME_BYTES]).is_some());
        assert!(encode(&[0; MAX_REQUEST_FRAME_BYTES + 1]).is_none());
    }
}
