//! The network lab: Carrier nodes in Linux network namespaces, behind NAT routers.
//!
//! Loopback tests hide everything NAT does to a node; the lab puts nodes where users are.
//! Each host is a network namespace of its own, wired by the `patchbay` crate with veth
//! pairs, bridges and nftables NAT rules. Its "internet" (the exchange the routers hang off)
//! is 198.18.0.0/24 and hosts on the public router get 198.18.1.0/24, so nothing here may
//! judge reachability by address class; DHT nodes in the lab set `max_per_subnet: None`
//! because every public node shares one /24.
//!
//! - [`NetworkLab::open`] builds an empty lab with its public router, or says why it cannot
//!   (a skip outside CI, a panic under `CI=true`);
//! - [`NetworkLab::public_host`], [`NetworkLab::home`] and [`NetworkLab::device_in`] add
//!   hosts on the internet, NAT routers, and devices behind them; [`NatTopology`] is the
//!   ready-made set most tests use;
//! - [`link`] puts loss on a device's link and cuts and heals it, with nftables rules inside
//!   the lab (this kernel has no `netem`, so patchbay's own link conditions do nothing);
//! - [`SocketDelay`] delays a node's datagrams through the socket's test seam;
//! - [`probe`] sends plain UDP probes: the address a reflector sees, what arrives;
//! - [`nodes`] starts Carrier DHT nodes inside hosts, with settings that suit the lab;
//! - [`daemon`] runs `carrier daemon` processes inside hosts and drives them through their
//!   control sockets;
//! - [`NetworkLab::cut_uplink`] takes a router's LAN off the internet (and
//!   [`NetworkLab::heal_uplink`] puts it back), its LAN still working.
//!
//! The lab needs root, or unprivileged user namespaces entered before the process has
//! threads, and the `nft` binary. Its namespaces live only as long as the [`NetworkLab`]:
//! patchbay holds them by file descriptor and they vanish when it is dropped.

pub mod daemon;
mod delay;
pub mod link;
pub mod nodes;
pub mod probe;

use std::time::Duration;

pub use delay::SocketDelay;
pub use patchbay::{Device, ReflectorGuard, Router};

use patchbay::{Lab, Nat};

/// How long [`NetworkLab::open`] lets patchbay build the root namespace before it gives up.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// What can go wrong while building or changing a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// patchbay refused or failed.
    #[error("{what}: {message}")]
    Patchbay {
        /// What the lab was doing.
        what: String,
        /// patchbay's error, with its causes.
        message: String,
    },
    /// An nftables command inside the lab failed.
    #[error("nft in {host}: {message}")]
    Nft {
        /// The namespace's host name.
        host: String,
        /// What nft said.
        message: String,
    },
    /// The lab has no address where one was expected.
    #[error("{0} has no IPv4 address")]
    NoAddress(String),
}

impl LabError {
    fn patchbay(what: impl Into<String>, error: impl std::fmt::Display) -> LabError {
        LabError::Patchbay {
            what: what.into(),
            // `{:#}` keeps anyhow's chain of causes, which is where the useful part is.
            message: format!("{error:#}"),
        }
    }
}

/// The mapping behaviour of a home router's NAT (RFC 4787), the property a node must learn
/// about its network; or no NAT at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatBehaviour {
    /// No NAT: a router that only routes, its devices with public addresses of its own /24
    /// (patchbay's `Nat::None`, as [`NetworkLab::isp`]).
    None,
    /// Endpoint-independent mapping and filtering (a full cone, patchbay's `Nat::Open`): once a
    /// socket has sent anything, its public port admits packets from anyone, so a node behind
    /// it is reachable unsolicited and proves itself public.
    Open,
    /// Endpoint-independent mapping with address-and-port-dependent filtering (a
    /// port-restricted cone): one public port per local socket whoever it talks to, and only
    /// peers it has sent to may answer. Most home routers.
    PortRestrictedCone,
    /// Endpoint-dependent mapping (symmetric): a fresh random public port per destination,
    /// and only that destination may answer. Carrier-grade and corporate NATs.
    Symmetric,
}

impl NatBehaviour {
    /// Every behaviour, from the most open to the strictest.
    pub const ALL: [NatBehaviour; 4] = [
        NatBehaviour::None,
        NatBehaviour::Open,
        NatBehaviour::PortRestrictedCone,
        NatBehaviour::Symmetric,
    ];

    /// patchbay's name for it: `None`, `Open`, `Moderate`, `Strict`.
    pub fn short_name(self) -> &'static str {
        match self {
            NatBehaviour::None => "None",
            NatBehaviour::Open => "Open",
            NatBehaviour::PortRestrictedCone => "Moderate",
            NatBehaviour::Symmetric => "Strict",
        }
    }

    fn patchbay(self) -> Nat {
        match self {
            NatBehaviour::None => Nat::None,
            NatBehaviour::Open => Nat::Open,
            NatBehaviour::PortRestrictedCone => Nat::Moderate,
            NatBehaviour::Symmetric => Nat::Strict,
        }
    }
}

/// A lab: its namespaces and the public router every other router and public host hangs off.
///
/// Dropping it removes every namespace, interface and nftables rule it made.
pub struct NetworkLab {
    lab: Lab,
    internet: Router,
}

impl NetworkLab {
    /// Builds a lab for the test `test`, or returns `None` after printing why it cannot, so
    /// the test can return early. Under CI (`CI=true`) a lab that cannot be built is a
    /// failure: this panics instead.
    pub async fn open(test: &str) -> Option<NetworkLab> {
        match NetworkLab::try_open(test).await {
            Ok(lab) => Some(lab),
            Err(why) if running_in_ci() => {
                panic!("{test}: the network lab is required under CI and cannot be built: {why}")
            }
            Err(why) => {
                eprintln!("{test}: SKIPPED, no network lab here: {why}");
                None
            }
        }
    }

    /// Builds a lab, or says why it cannot.
    pub async fn try_open(test: &str) -> Result<NetworkLab, LabError> {
        require_nft()?;
        enter_privileges()?;
        // Root in the initial user namespace is what CI gives us, and patchbay refuses it
        // unless told otherwise: it fears its mounts (/proc, /etc/hosts overlays) leaking to
        // the host. Each namespace worker thread first unshares a mount namespace of its own,
        // makes it private, and mounts nothing if it cannot unshare, so they stay inside.
        let builder = Lab::builder()
            .outdir_from_env()
            .label(test)
            .allow_real_root();
        let lab = tokio::time::timeout(OPEN_TIMEOUT, builder.build())
            .await
            .map_err(|_| LabError::patchbay("building the lab", "timed out"))?
            .map_err(|e| LabError::patchbay("building the lab", e))?;
        let internet = lab
            .add_router("internet")
            .build()
            .await
            .map_err(|e| LabError::patchbay("adding the public router", e))?;
        Ok(NetworkLab { lab, internet })
    }

    /// patchbay's lab, for what this module does not wrap.
    pub fn patchbay(&self) -> &Lab {
        &self.lab
    }

    /// Adds a host with a public address (in 198.18.1.0/24), reachable from everywhere.
    pub async fn public_host(&self, name: &str) -> Result<Device, LabError> {
        self.device_in(&self.internet, name).await
    }

    /// Adds a home: a router on the internet whose NAT behaves as `nat`. Devices added with
    /// [`NetworkLab::device_in`] get private addresses (10.0.x.y) behind it, or public ones of
    /// the router's own /24 for [`NatBehaviour::None`].
    pub async fn home(&self, name: &str, nat: NatBehaviour) -> Result<Router, LabError> {
        self.lab
            .add_router(name)
            .nat(nat.patchbay())
            .build()
            .await
            .map_err(|e| LabError::patchbay(format!("adding the home router {name}"), e))
    }

    /// Adds another network with public addresses (a router without NAT on the internet): a
    /// place a device can move to and come back from with a different public address.
    pub async fn isp(&self, name: &str) -> Result<Router, LabError> {
        self.lab
            .add_router(name)
            .nat(Nat::None)
            .build()
            .await
            .map_err(|e| LabError::patchbay(format!("adding the network {name}"), e))
    }

    /// Moves `device` (its `eth0`) onto `router`'s network, as a laptop carried to another
    /// place: it gets an address there and a default route through `router`. Its sockets stay
    /// open; packets they send leave from the new address.
    pub async fn move_device(&self, device: &Device, router: &Router) -> Result<(), LabError> {
        let name = device.name().to_string();
        let iface = device
            .iface("eth0")
            .ok_or_else(|| LabError::NoAddress(name.clone()))?;
        iface
            .replug(router.id())
            .await
            .map_err(|e| LabError::patchbay(format!("moving {name} to {}", router.name()), e))
    }

    /// Cuts `router`'s uplink (its WAN interface): nothing passes between the internet and
    /// the router or the devices behind it until [`NetworkLab::heal_uplink`], while those
    /// devices still reach each other on their LAN. An nftables table in the router's
    /// namespace, as [`link::cut`] is in a device's.
    pub async fn cut_uplink(&self, router: &Router) -> Result<(), LabError> {
        link::cut_uplink(router).await
    }

    /// Undoes [`NetworkLab::cut_uplink`].
    pub async fn heal_uplink(&self, router: &Router) -> Result<(), LabError> {
        link::heal_uplink(router).await
    }

    /// Makes `router` forget the flows it tracks to or from `peer` (see
    /// [`link::forget_flows`]): behind a filtering NAT, `peer` is again a stranger whose
    /// packets are dropped until a device sends to it.
    pub async fn forget_flows(
        &self,
        router: &Router,
        peer: std::net::IpAddr,
    ) -> Result<(), LabError> {
        link::forget_flows(router, peer).await
    }

    /// Adds a device behind `router`.
    pub async fn device_in(&self, router: &Router, name: &str) -> Result<Device, LabError> {
        self.lab
            .add_device(name)
            .iface("eth0", router.id())
            .build()
            .await
            .map_err(|e| LabError::patchbay(format!("adding the device {name}"), e))
    }

    /// Builds the topology most lab tests use (see [`NatTopology`]) with `public_hosts`
    /// hosts on the internet.
    pub async fn nat_topology(&self, public_hosts: usize) -> Result<NatTopology, LabError> {
        let mut public = Vec::with_capacity(public_hosts);
        for i in 0..public_hosts {
            public.push(self.public_host(&format!("public{i}")).await?);
        }
        let cone_home = self.home("cone", NatBehaviour::PortRestrictedCone).await?;
        let cone_devices = [
            self.device_in(&cone_home, "cone-a").await?,
            self.device_in(&cone_home, "cone-b").await?,
        ];
        let symmetric_home = self.home("symmetric", NatBehaviour::Symmetric).await?;
        let symmetric_device = self.device_in(&symmetric_home, "symmetric-a").await?;
        Ok(NatTopology {
            public,
            cone_home,
            cone_devices,
            symmetric_home,
            symmetric_device,
        })
    }
}

/// The lab's standard topology: public hosts (bootstrap nodes, servers, reflectors), a home
/// behind a port-restricted cone NAT with two devices on its LAN, and a home behind a
/// symmetric NAT with one device.
pub struct NatTopology {
    /// Hosts on the internet, `public0`, `public1`, …
    pub public: Vec<Device>,
    /// The router with the endpoint-independent (port-restricted cone) NAT.
    pub cone_home: Router,
    /// Two devices behind `cone_home`, on one LAN: `cone-a` and `cone-b`.
    pub cone_devices: [Device; 2],
    /// The router with the endpoint-dependent (symmetric) NAT.
    pub symmetric_home: Router,
    /// The device behind `symmetric_home`: `symmetric-a`.
    pub symmetric_device: Device,
}

/// A device's IPv4 address, the one patchbay gave its interface.
pub fn ipv4(device: &Device) -> Result<std::net::Ipv4Addr, LabError> {
    device
        .ip()
        .ok_or_else(|| LabError::NoAddress(device.name().to_string()))
}

/// Whether we run under CI, where a lab that cannot be built fails the test.
pub fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The lab's NAT, loss and cut rules are nftables rules: without `nft` there is no lab.
fn require_nft() -> Result<(), LabError> {
    match std::process::Command::new(link::nft())
        .arg("--version")
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(LabError::Nft {
            host: "the test host".into(),
            message: format!("`nft --version` failed: {out:?}"),
        }),
        Err(e) => Err(LabError::Nft {
            host: "the test host".into(),
            message: format!("cannot run nft ({e}); install nftables"),
        }),
    }
}

/// Makes sure the process may create namespaces: as root it may; otherwise patchbay's
/// user-namespace bootstrap is tried, which only works while the process has a single
/// thread (so not inside a normal multi-threaded test binary), and its error says so.
fn enter_privileges() -> Result<(), LabError> {
    if patchbay::check_caps().is_ok() {
        return Ok(());
    }
    patchbay::init_userns().map_err(|e| {
        LabError::patchbay(
            "not root, and entering an unprivileged user namespace failed \
             (run the lab tests as root, as CI does)",
            e,
        )
    })?;
    patchbay::check_caps()
        .map_err(|e| LabError::patchbay("still missing capabilities in the user namespace", e))
}
