//! Carrier identities (work in progress).
