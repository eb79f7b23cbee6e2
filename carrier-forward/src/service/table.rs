//! [`ServiceTable`]: the services a node offers, and the rule for who may use each.

use std::collections::BTreeMap;

use carrier_mux::stream::msg::friend::dht::id::CarrierId;

use super::ServiceName;
use crate::error::ForwardError;

/// Which friends may use a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// Every friend.
    Everyone,
    /// Only these friends.
    Only(Vec<CarrierId>),
}

impl Allowed {
    /// Whether `friend` may use a service offered so.
    pub fn admits(&self, friend: &CarrierId) -> bool {
        match self {
            Allowed::Everyone => true,
            Allowed::Only(friends) => friends.contains(friend),
        }
    }
}

/// A service as a node offers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Its name.
    pub name: ServiceName,
    /// Where its connections go: `host:port`, resolved at each connection.
    pub target: String,
    /// Who may use it.
    pub allowed: Allowed,
}

/// The services a node offers, by name. A friend asking for a service it may not use gets
/// the same answer as for a service that does not exist ([`resolve`](Self::resolve) returns
/// `None` for both), so a refusal tells nothing about services offered to others.
#[derive(Clone, Debug, Default)]
pub struct ServiceTable {
    services: BTreeMap<ServiceName, ServiceInfo>,
}

impl ServiceTable {
    /// Offers (or offers anew, replacing) `info`; connections already made keep running.
    pub fn insert(&mut self, info: ServiceInfo) {
        self.services.insert(info.name.clone(), info);
    }

    /// Withdraws a service: [`ForwardError::UnknownService`] if it is not offered.
    pub fn remove(&mut self, name: &ServiceName) -> Result<ServiceInfo, ForwardError> {
        self.services
            .remove(name)
            .ok_or_else(|| ForwardError::UnknownService(name.to_string()))
    }

    /// Where `friend`'s connection to `name` goes: `None` when there is no such service or
    /// the friend may not use it, alike.
    pub fn resolve(&self, name: &ServiceName, friend: &CarrierId) -> Option<&str> {
        self.services
            .get(name)
            .filter(|info| info.allowed.admits(friend))
            .map(|info| info.target.as_str())
    }

    /// The services offered, by name.
    pub fn list(&self) -> Vec<ServiceInfo> {
        self.services.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> CarrierId {
        carrier_mux::stream::msg::friend::dht::id::Keypair::generate().id()
    }

    fn name(s: &str) -> ServiceName {
        s.parse().unwrap()
    }

    #[test]
    fn a_friend_not_allowed_sees_what_an_unknown_service_looks_like() {
        let (alice, bob) = (id(), id());
        let mut table = ServiceTable::default();
        table.insert(ServiceInfo {
            name: name("web"),
            target: "127.0.0.1:80".into(),
            allowed: Allowed::Only(vec![alice]),
        });
        table.insert(ServiceInfo {
            name: name("echo"),
            target: "127.0.0.1:7".into(),
            allowed: Allowed::Everyone,
        });
        assert_eq!(table.resolve(&name("web"), &alice), Some("127.0.0.1:80"));
        assert_eq!(table.resolve(&name("web"), &bob), None);
        assert_eq!(table.resolve(&name("nothing"), &bob), None);
        assert_eq!(table.resolve(&name("echo"), &bob), Some("127.0.0.1:7"));
        assert_eq!(table.list().len(), 2);
    }

    #[test]
    fn withdrawing_an_unknown_service_is_its_own_error() {
        let mut table = ServiceTable::default();
        assert_eq!(
            table.remove(&name("web")),
            Err(ForwardError::UnknownService("web".into()))
        );
        table.insert(ServiceInfo {
            name: name("web"),
            target: "h:1".into(),
            allowed: Allowed::Everyone,
        });
        assert!(table.remove(&name("web")).is_ok());
        assert!(table.list().is_empty());
    }
}
