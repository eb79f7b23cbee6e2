//! Opening a relay session from this node to a node registered at a relay: what a dial
//! through a peer record's relays does first. Hello, challenge (an address token for this
//! node's address at the relay), open, opened; the answers are read from the socket's
//! [`relay_answers`](crate::socket::NodeSocket::relay_answers), beside the relay client's
//! own queue, so opening works whether or not the node is registered anywhere.

use std::net::SocketAddr;
use std::time::Duration;

use carrier_id::CarrierId;
use tokio::sync::broadcast::error::RecvError;

use crate::io::dht::Dht;
use crate::io::error::DhtError;
use crate::relay::frame::{Control, RelayRefusal};
use crate::wire::key::Key;
use crate::wire::path::{canonical_addr, Path};

/// How long a relay has to answer each step before the step is sent again.
const RELAY_ANSWER_TIMEOUT: Duration = Duration::from_millis(500);

/// How often each step is sent at most.
const ATTEMPTS: u32 = 3;

impl Dht {
    /// Opens a session through the relay at `relay` to `target` (registered there), and
    /// makes the socket use it: the returned [`Path::Relayed`] can be dialled at once. The
    /// target's node adds the path on its side when the relay tells it (its relay client
    /// does). Fails with [`DhtError::Relay`] when the relay refuses (the target is not
    /// registered there: `NotRegistered`; `NoSession` for this node itself), with
    /// [`DhtError::Timeout`] when it does not answer (each step is sent up to 3 times,
    /// 500 ms apart).
    pub async fn open_relay_session(
        &self,
        relay: SocketAddr,
        target: &CarrierId,
    ) -> Result<Path, DhtError> {
        let relay = canonical_addr(relay);
        if relay == canonical_addr(self.local_addr()) {
            // Through itself, a node would take its own frames for its peer's.
            return Err(DhtError::Relay(RelayRefusal::NoSession));
        }
        let target = Key::of_node(target);
        let socket = self.socket().clone();
        let mut answers = socket.relay_answers();
        let mut frame = Control::hello().encode();
        let mut opening = false;
        let mut attempts = 0;
        loop {
            if attempts == ATTEMPTS {
                return Err(DhtError::Timeout(RELAY_ANSWER_TIMEOUT * ATTEMPTS));
            }
            attempts += 1;
            socket.send(relay, &frame).await?;
            let deadline = tokio::time::Instant::now() + RELAY_ANSWER_TIMEOUT;
            loop {
                let answer = match tokio::time::timeout_at(deadline, answers.recv()).await {
                    Err(_) => break,
                    Ok(Err(RecvError::Closed)) => return Err(DhtError::Closed),
                    Ok(Err(RecvError::Lagged(_))) => continue,
                    Ok(Ok(answer)) => answer,
                };
                if answer.from != relay {
                    continue;
                }
                match Control::decode(&answer.data) {
                    Ok(Control::Challenge { token }) if !opening => {
                        // The next step: open with the token. (Challenges that come later
                        // answer the relay client's hellos.)
                        frame = Control::Open { target, token }.encode();
                        opening = true;
                        attempts = 0;
                        break;
                    }
                    Ok(Control::Opened { session, target: t }) if t == target => {
                        return match socket.add_relayed_path(relay, session) {
                            Some(_) => Ok(Path::Relayed { relay, session }),
                            None => Err(DhtError::Relay(RelayRefusal::Full)),
                        };
                    }
                    Ok(Control::Refused { reason }) if opening => {
                        return Err(DhtError::Relay(reason));
                    }
                    _ => {}
                }
            }
        }
    }
}
