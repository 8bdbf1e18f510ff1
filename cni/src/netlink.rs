//! A blocking face over `rtnetlink` for this short-lived, single-threaded process.
//!
//! A netlink socket acts in the network namespace it was opened in, whichever thread uses it
//! later. The plugin opens one socket in the node's namespace and one in the pod's (entering
//! it on the main thread only for the `socket()` call, see [`in_netns`]), then drives both
//! from one current-thread tokio runtime, which starts no threads of its own.

use std::{
    fs::File,
    future::Future,
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd as _,
    path::Path,
    rc::Rc,
};

use futures_util::TryStreamExt as _;
use nix::sched::{CloneFlags, setns};
use rtnetlink::{
    Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        address::AddressAttribute,
        link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage},
        neighbour::NeighbourState,
        route::{RouteAddress, RouteAttribute, RouteMessage, RouteScope},
    },
};

use crate::Error;

/// A link as the plugin needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) index: u32,
    pub(crate) name: String,
    pub(crate) mac: Vec<u8>,
    pub(crate) up: bool,
}

/// A route in the main table, reduced to what CHECK compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteEntry {
    pub(crate) dst: IpAddr,
    pub(crate) dst_len: u8,
    pub(crate) gateway: Option<IpAddr>,
    pub(crate) oif: Option<u32>,
}

/// The kernel's errno in a netlink error, if it is one.
pub(crate) fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|c| -c.get()),
        _ => None,
    }
}

/// The runtime every socket of one invocation is driven by.
pub(crate) fn runtime() -> Result<Rc<tokio::runtime::Runtime>, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map(Rc::new)
        .map_err(|source| Error::Io {
            what: "failed to start the netlink runtime".into(),
            source,
        })
}

/// Runs `f` with the calling thread inside the namespace `netns` (opened from `path`), then
/// moves the thread back. Moving back failing is fatal for this invocation: later steps (and
/// /proc/sys writes, which act in the opener's namespace) would hit the wrong namespace.
pub(crate) fn in_netns<T>(
    netns: &File,
    path: &Path,
    f: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    let own = File::open("/proc/thread-self/ns/net").map_err(|source| Error::Io {
        what: "failed to open this thread's network namespace".into(),
        source,
    })?;
    setns(netns, CloneFlags::CLONE_NEWNET).map_err(|source| Error::Netns {
        path: path.to_owned(),
        source: source.into(),
    })?;
    let result = f();
    setns(&own, CloneFlags::CLONE_NEWNET).map_err(|source| Error::Io {
        what: format!("failed to return from network namespace {}", path.display()),
        source: source.into(),
    })?;
    result
}

/// One netlink socket in one namespace.
pub(crate) struct Netlink {
    rt: Rc<tokio::runtime::Runtime>,
    handle: Handle,
    /// For messages: "the node" or the pod's netns path.
    ns: String,
}

impl Netlink {
    /// Opens a socket in the calling thread's current namespace, described as `ns`.
    pub(crate) fn open(rt: &Rc<tokio::runtime::Runtime>, ns: &str) -> Result<Self, Error> {
        // The socket registers with the runtime's reactor, so it must be made inside it.
        let _entered = rt.enter();
        let (connection, handle, _messages) =
            rtnetlink::new_connection().map_err(|source| Error::Io {
                what: format!("failed to open a netlink socket in {ns}"),
                source,
            })?;
        rt.spawn(connection);
        Ok(Self {
            rt: Rc::clone(rt),
            handle,
            ns: ns.to_owned(),
        })
    }

    fn block<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn fail(&self, what: String) -> impl FnOnce(rtnetlink::Error) -> Error {
        let ns = self.ns.clone();
        move |source| Error::Netlink {
            what: format!("{what} in {ns}"),
            source,
        }
    }

    /// The link named `name`, if it exists.
    pub(crate) fn link(&self, name: &str) -> Result<Option<Link>, Error> {
        let request = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match self.block(async move {
            let mut request = std::pin::pin!(request);
            request.try_next().await
        }) {
            Ok(Some(message)) => Ok(Some(to_link(&message))),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(self.fail(format!("failed to look up link {name}"))(e)),
        }
    }

    /// The link named `name`, which must exist.
    pub(crate) fn existing_link(&self, name: &str) -> Result<Link, Error> {
        self.link(name)?.ok_or_else(|| Error::Io {
            what: format!("link {name} vanished in {}", self.ns),
            source: std::io::Error::from_raw_os_error(libc::ENODEV),
        })
    }

    /// Creates a veth pair: `host` here, `peer` directly inside the namespace `peer_netns`
    /// (as `ip link add … peer name P netns N` does), so the peer's name never collides with
    /// anything in this namespace.
    pub(crate) fn add_veth(
        &self,
        host: &str,
        peer: &str,
        peer_netns: &File,
        mtu: Option<u32>,
    ) -> Result<(), Error> {
        let mut peer_message = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_owned())
            .setns_by_fd(peer_netns.as_raw_fd());
        let mut message = LinkVeth::new(host, peer);
        if let Some(mtu) = mtu {
            peer_message = peer_message.mtu(mtu);
            message = message.mtu(mtu);
        }
        let message = message
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_message.build())))
            .build();
        let request = self.handle.link().add(message).execute();
        self.block(request)
            .map_err(self.fail(format!("failed to create veth {host} with peer {peer}")))
    }

    /// Sets the link up.
    pub(crate) fn set_up(&self, link: &Link) -> Result<(), Error> {
        let message = LinkUnspec::new_with_index(link.index).up().build();
        let request = self.handle.link().set(message).execute();
        self.block(request)
            .map_err(self.fail(format!("failed to set link {} up", link.name)))
    }

    /// Deletes the link; a link already gone is fine.
    pub(crate) fn del_link(&self, link: &Link) -> Result<(), Error> {
        let request = self.handle.link().del(link.index).execute();
        match self.block(request) {
            Err(e) if errno(&e) != Some(libc::ENODEV) => {
                Err(self.fail(format!("failed to delete link {}", link.name))(e))
            }
            _ => Ok(()),
        }
    }

    /// Adds `address/prefix_len` to the link.
    pub(crate) fn add_address(
        &self,
        link: &Link,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<(), Error> {
        let request = self
            .handle
            .address()
            .add(link.index, address, prefix_len)
            .execute();
        self.block(request).map_err(self.fail(format!(
            "failed to add address {address}/{prefix_len} to {}",
            link.name
        )))
    }

    /// The link's addresses with prefix lengths.
    pub(crate) fn addresses(&self, link: &Link) -> Result<Vec<(IpAddr, u8)>, Error> {
        let request = self
            .handle
            .address()
            .get()
            .set_link_index_filter(link.index)
            .execute();
        let messages: Vec<_> = self
            .block(request.try_collect())
            .map_err(self.fail(format!("failed to list addresses of {}", link.name)))?;
        Ok(messages
            .iter()
            .filter(|m| m.header.index == link.index)
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some((*ip, m.header.prefix_len)),
                    _ => None,
                })
            })
            .collect())
    }

    /// `ip route add DST/LEN dev LINK scope link`.
    pub(crate) fn add_link_route(
        &self,
        link: &Link,
        dst: Ipv4Addr,
        dst_len: u8,
    ) -> Result<(), Error> {
        let message = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst, dst_len)
            .output_interface(link.index)
            .scope(RouteScope::Link)
            .build();
        self.add_route(message, format!("{dst}/{dst_len} dev {}", link.name))
    }

    /// `ip route add default via GW dev LINK onlink`.
    pub(crate) fn add_default_route(&self, link: &Link, gateway: Ipv4Addr) -> Result<(), Error> {
        let message = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(link.index)
            .onlink()
            .build();
        self.add_route(message, format!("default via {gateway} dev {}", link.name))
    }

    fn add_route(&self, message: RouteMessage, description: String) -> Result<(), Error> {
        let request = self.handle.route().add(message).execute();
        self.block(request)
            .map_err(self.fail(format!("failed to add route {description}")))
    }

    /// IPv4 routes of the main table.
    pub(crate) fn routes_v4(&self) -> Result<Vec<RouteEntry>, Error> {
        let request = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        let messages: Vec<RouteMessage> = self
            .block(request.try_collect())
            .map_err(self.fail("failed to list routes".into()))?;
        Ok(messages
            .iter()
            .filter(|m| m.header.address_family == AddressFamily::Inet)
            .filter(|m| {
                let table = m
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Table(t) => Some(*t),
                        _ => None,
                    })
                    .unwrap_or(u32::from(m.header.table));
                table == u32::from(rtnetlink::packet_route::route::RouteHeader::RT_TABLE_MAIN)
            })
            .map(|m| {
                let addr = |want_gw: bool| {
                    m.attributes.iter().find_map(|a| match (a, want_gw) {
                        (RouteAttribute::Destination(RouteAddress::Inet(ip)), false)
                        | (RouteAttribute::Gateway(RouteAddress::Inet(ip)), true) => {
                            Some(IpAddr::V4(*ip))
                        }
                        _ => None,
                    })
                };
                RouteEntry {
                    dst: addr(false).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                    dst_len: m.header.destination_prefix_length,
                    gateway: addr(true),
                    oif: m.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Oif(i) => Some(*i),
                        _ => None,
                    }),
                }
            })
            .collect())
    }

    /// A permanent neighbour entry `address lladdr mac` on the link.
    pub(crate) fn add_permanent_neighbour(
        &self,
        link: &Link,
        address: IpAddr,
        mac: &[u8],
    ) -> Result<(), Error> {
        let request = self
            .handle
            .neighbours()
            .add(link.index, address)
            .link_layer_address(mac)
            .state(NeighbourState::Permanent)
            .execute();
        self.block(request).map_err(self.fail(format!(
            "failed to add neighbour {address} lladdr {} on {}",
            format_mac(mac),
            link.name
        )))
    }
}

fn to_link(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mac: Vec::new(),
        up: message.header.flags.contains(LinkFlags::Up),
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name.clone_from(name),
            LinkAttribute::Address(mac) => link.mac.clone_from(mac),
            _ => {}
        }
    }
    link
}

/// `aa:bb:cc:dd:ee:ff`.
pub(crate) fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
