//! [`ServiceName`]: a service's name, as users type it and as a channel's cookie carries it.

use crate::error::ForwardError;

/// The longest service name, in bytes (well within carrier-mux's cookie limit).
pub const MAX_SERVICE_NAME_BYTES: usize = 64;

/// A service's name: 1 to [`MAX_SERVICE_NAME_BYTES`] ASCII letters, digits, `.`, `_` or `-`.
/// A channel's cookie is the name's bytes, nothing else, so [`parse`](Self::parse) is the
/// one decoder of what a friend sends.
///
/// ```
/// use carrier_forward::ServiceName;
///
/// assert_eq!(ServiceName::parse(b"web-1").unwrap().as_str(), "web-1");
/// assert!(ServiceName::parse(b"no spaces").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);

impl ServiceName {
    /// The name in `bytes` (a cookie, or what a user typed), or
    /// [`ForwardError::InvalidName`].
    pub fn parse(bytes: &[u8]) -> Result<ServiceName, ForwardError> {
        let valid = !bytes.is_empty()
            && bytes.len() <= MAX_SERVICE_NAME_BYTES
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(ForwardError::InvalidName(
                String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_SERVICE_NAME_BYTES + 1)])
                    .into_owned(),
            ));
        }
        // Checked above: ASCII only.
        Ok(ServiceName(bytes.iter().map(|&b| char::from(b)).collect()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The cookie a channel for this service is opened with.
    pub fn cookie(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::str::FromStr for ServiceName {
    type Err = ForwardError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceName::parse(s.as_bytes())
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_at_the_limits() {
        assert!(ServiceName::parse(b"").is_err());
        assert!(ServiceName::parse(&[b'a'; MAX_SERVICE_NAME_BYTES]).is_ok());
        assert!(ServiceName::parse(&[b'a'; MAX_SERVICE_NAME_BYTES + 1]).is_err());
        assert!(ServiceName::parse(b"a/b").is_err());
        assert!(ServiceName::parse("caf\u{e9}".as_bytes()).is_err());
        assert_eq!(
            "ssh_2.local-x".parse::<ServiceName>().unwrap().cookie(),
            b"ssh_2.local-x"
        );
    }

    proptest! {
        /// Arbitrary bytes from a friend never panic the decoder, and what it accepts is
        /// exactly the bytes it was given.
        #[test]
        fn any_cookie_decodes_or_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(name) = ServiceName::parse(&bytes) {
                prop_assert_eq!(name.cookie(), &bytes[..]);
                prop_assert!(name.cookie().len() <= MAX_SERVICE_NAME_BYTES);
            }
        }

        /// Every valid name survives the trip through a cookie.
        #[test]
        fn valid_names_round_trip(name in "[A-Za-z0-9._-]{1,64}") {
            let parsed = ServiceName::parse(name.as_bytes()).unwrap();
            prop_assert_eq!(ServiceName::parse(parsed.cookie()).unwrap(), parsed);
        }
    }
}
