//! Address tokens: proof that a sender receives packets at the address it claims.
//!
//! A token is a keyed blake3 MAC over the address and the current epoch, under a secret only
//! this node knows. Every response hands the requester a token for the address the request came
//! from; a later request that echoes it proves the address, which lifts the 3x amplification
//! limit and authorizes stores and announces. The epoch rotates, and tokens of the current and
//! previous epoch are accepted, so a token lives between one and two epochs. No state is kept
//! per address.

use std::net::SocketAddr;

use crate::wire::token::Token;

/// Issues and checks tokens.
#[derive(Clone)]
pub(crate) struct TokenIssuer {
    secret: [u8; 32],
    epoch_secs: u64,
}

impl TokenIssuer {
    pub(crate) fn new(secret: [u8; 32], epoch_secs: u64) -> Self {
        Self {
            secret,
            epoch_secs: epoch_secs.max(1),
        }
    }

    fn mac(&self, addr: &SocketAddr, epoch: u64) -> Token {
        let mut hasher = blake3::Hasher::new_keyed(&self.secret);
        hasher.update(&epoch.to_le_bytes());
        crate::wire::path::hash_addr(&mut hasher, addr);
        let mut out = [0u8; 16];
        out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        Token(out)
    }

    /// A token for `addr`, valid this epoch and the next.
    pub(crate) fn issue(&self, addr: &SocketAddr, unix_secs: u64) -> Token {
        self.mac(addr, unix_secs / self.epoch_secs)
    }

    /// Whether `token` was issued to `addr` this epoch or the previous one.
    pub(crate) fn check(&self, token: &Token, addr: &SocketAddr, unix_secs: u64) -> bool {
        let epoch = unix_secs / self.epoch_secs;
        let current = self.mac(addr, epoch);
        let previous = self.mac(addr, epoch.wrapping_sub(1));
        // Not secret-dependent timing worth protecting: a MAC guess fails either way, and the
        // attacker learns nothing from which comparison failed.
        *token == current || *token == previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_proves_only_its_address_for_two_epochs() {
        let issuer = TokenIssuer::new([9; 32], 100);
        let a: SocketAddr = "10.0.0.1:4000".parse().expect("addr");
        let b: SocketAddr = "10.0.0.1:4001".parse().expect("addr");
        let token = issuer.issue(&a, 1_000);
        assert!(issuer.check(&token, &a, 1_000));
        assert!(issuer.check(&token, &a, 1_150));
        assert!(!issuer.check(&token, &a, 1_200));
        assert!(!issuer.check(&token, &b, 1_000));
        assert!(!TokenIssuer::new([8; 32], 100).check(&token, &a, 1_000));
    }
}
