//! A link's punch key, and what it proves.
//!
//! Both ends of a friend link derive the same 32 bytes from their TLS session (an exporter,
//! RFC 8446 section 7.5) and nobody else can: the key names the link in probes (its *tag*)
//! and authenticates every probe and answer (a keyed blake3 MAC), so a stranger can neither
//! forge one nor learn which link or which IDs a probe belongs to.

use std::net::SocketAddr;

use super::frame::{PunchFrame, MAC_BYTES, TAG_BYTES};

/// The exporter label the 32 bytes of a link's [`PunchKey`] are taken with.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-carrier-punch-v1";

/// Which end of the link (its QUIC side) sent a frame. A MAC covers it, so a frame reflected
/// back to its sender does not verify there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that dialled the link (quinn's client).
    Dialler,
    /// The side that accepted it (quinn's server).
    Accepter,
}

impl Role {
    /// The other end's role.
    pub fn other(self) -> Role {
        match self {
            Role::Dialler => Role::Accepter,
            Role::Accepter => Role::Dialler,
        }
    }

    fn byte(self) -> u8 {
        match self {
            Role::Dialler => 1,
            Role::Accepter => 2,
        }
    }
}

/// The key of one link's punching: its tag and its MAC key.
#[derive(Clone)]
pub struct PunchKey {
    tag: [u8; TAG_BYTES],
    mac_key: [u8; 32],
}

impl std::fmt::Debug for PunchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PunchKey")
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl PunchKey {
    /// The key from the 32 bytes both ends exported from their TLS session
    /// ([`EXPORTER_LABEL`], no context).
    pub fn from_exported(exported: [u8; 32]) -> PunchKey {
        let tag_bytes = blake3::derive_key("carrier/punch/tag/v1", &exported);
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&tag_bytes[..TAG_BYTES]);
        PunchKey {
            tag,
            mac_key: blake3::derive_key("carrier/punch/mac/v1", &exported),
        }
    }

    /// What names the link in its frames.
    pub fn tag(&self) -> [u8; TAG_BYTES] {
        self.tag
    }

    /// A probe from `sender` with `nonce`.
    pub fn probe(&self, sender: Role, nonce: u64) -> PunchFrame {
        PunchFrame::Probe {
            tag: self.tag,
            nonce,
            mac: self.mac(1, sender, nonce, None),
        }
    }

    /// The answer from `sender` to a probe with `nonce` seen from `seen`.
    pub fn answer(&self, sender: Role, nonce: u64, seen: SocketAddr) -> PunchFrame {
        PunchFrame::Answer {
            tag: self.tag,
            nonce,
            seen,
            mac: self.mac(2, sender, nonce, Some(seen)),
        }
    }

    /// Whether `frame` names this link and was made by the end whose role is `sender`.
    pub fn verifies(&self, frame: &PunchFrame, sender: Role) -> bool {
        let (kind, tag, nonce, seen, mac) = match frame {
            PunchFrame::Probe { tag, nonce, mac } => (1, tag, *nonce, None, mac),
            PunchFrame::Answer {
                tag,
                nonce,
                seen,
                mac,
            } => (2, tag, *nonce, Some(*seen), mac),
        };
        if *tag != self.tag {
            return false;
        }
        let expected = self.mac(kind, sender, nonce, seen);
        // Constant time, as for any MAC.
        blake3::Hash::from_bytes(pad(&expected)) == blake3::Hash::from_bytes(pad(mac))
    }

    fn mac(&self, kind: u8, sender: Role, nonce: u64, seen: Option<SocketAddr>) -> [u8; MAC_BYTES] {
        let mut hasher = blake3::Hasher::new_keyed(&self.mac_key);
        hasher.update(&[kind, sender.byte()]);
        hasher.update(&self.tag);
        hasher.update(&nonce.to_be_bytes());
        if let Some(seen) = seen {
            match seen {
                SocketAddr::V4(v4) => {
                    hasher.update(&[4]);
                    hasher.update(&v4.ip().octets());
                }
                SocketAddr::V6(v6) => {
                    hasher.update(&[6]);
                    hasher.update(&v6.ip().octets());
                }
            }
            hasher.update(&seen.port().to_be_bytes());
        }
        let mut mac = [0u8; MAC_BYTES];
        mac.copy_from_slice(&hasher.finalize().as_bytes()[..MAC_BYTES]);
        mac
    }
}

/// A MAC padded to blake3's hash size, so its constant-time comparison can be used.
fn pad(mac: &[u8; MAC_BYTES]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..MAC_BYTES].copy_from_slice(mac);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_verifies_only_under_its_key_from_the_other_role_unchanged() {
        let key = PunchKey::from_exported([7; 32]);
        let other = PunchKey::from_exported([8; 32]);
        let probe = key.probe(Role::Dialler, 42);
        assert!(key.verifies(&probe, Role::Dialler));
        assert!(!key.verifies(&probe, Role::Accepter), "reflected");
        assert!(!other.verifies(&probe, Role::Dialler), "another link");
        let seen: SocketAddr = "198.51.100.7:4000".parse().unwrap();
        let answer = key.answer(Role::Accepter, 42, seen);
        assert!(key.verifies(&answer, Role::Accepter));
        let PunchFrame::Answer {
            tag, nonce, mac, ..
        } = answer
        else {
            unreachable!()
        };
        let moved = PunchFrame::Answer {
            tag,
            nonce,
            seen: "203.0.113.9:4000".parse().unwrap(),
            mac,
        };
        assert!(!key.verifies(&moved, Role::Accepter), "another address");
        let renonced = PunchFrame::Answer {
            tag,
            nonce: nonce + 1,
            seen,
            mac,
        };
        assert!(!key.verifies(&renonced, Role::Accepter), "another nonce");
    }
}
