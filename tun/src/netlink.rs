//! A minimal rtnetlink client: link MTU/up, addresses, routes, link delete.
//! Control path only (allocates freely); requests are acknowledged one by one.

use std::io;
use std::net::IpAddr;

use crate::error::TunError;
use crate::sys::NlSocket;

const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;

const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;

const IFF_UP: u32 = 1;
const IFA_F_NODAD: u8 = 0x02;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// A request being built: netlink header, fixed message, attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(ty: u16, flags: u16) -> Self {
        let mut v = Vec::with_capacity(128);
        v.extend_from_slice(&0u32.to_ne_bytes()); // len, patched in finish
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes()); // seq, patched in finish
        v.extend_from_slice(&0u32.to_ne_bytes()); // pid: kernel fills
        Self(v)
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }

    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }

    fn finish(&mut self, seq: u32) -> &[u8] {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.0
    }
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    // family (0), pad, type (0)
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

fn family_and_bytes(addr: &IpAddr) -> (u8, Vec<u8>) {
    match addr {
        IpAddr::V4(a) => (AF_INET, a.octets().to_vec()),
        IpAddr::V6(a) => (AF_INET6, a.octets().to_vec()),
    }
}

/// An rtnetlink connection in the calling thread's network namespace.
#[derive(Debug)]
pub(crate) struct Netlink {
    sock: NlSocket,
    seq: u32,
}

impl Netlink {
    pub(crate) fn open() -> Result<Self, TunError> {
        let sock = NlSocket::open().map_err(|source| TunError::Netlink {
            op: "socket",
            source,
        })?;
        Ok(Self { sock, seq: 1 })
    }

    fn request(&mut self, op: &'static str, msg: Msg) -> Result<(), TunError> {
        self.request_reply(op, msg, |_, _| {})
    }

    /// Sends `msg` and waits for its acknowledgement, handing every other message of
    /// the same sequence number (type, payload after the netlink header) to `reply`.
    fn request_reply(
        &mut self,
        op: &'static str,
        mut msg: Msg,
        mut reply: impl FnMut(u16, &[u8]),
    ) -> Result<(), TunError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let err = |source| TunError::Netlink { op, source };
        self.sock.send(msg.finish(seq)).map_err(err)?;
        let mut buf = [0u8; 8192];
        loop {
            let n = self.sock.recv(&mut buf).map_err(err)?;
            let mut off = 0;
            while off + 16 <= n {
                let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]])
                    as usize;
                if len < 16 || off + len > n {
                    break;
                }
                let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let mseq =
                    u32::from_ne_bytes([buf[off + 8], buf[off + 9], buf[off + 10], buf[off + 11]]);
                if ty == NLMSG_ERROR && mseq == seq && len >= 20 {
                    let code = i32::from_ne_bytes([
                        buf[off + 16],
                        buf[off + 17],
                        buf[off + 18],
                        buf[off + 19],
                    ]);
                    return if code == 0 {
                        Ok(())
                    } else {
                        Err(err(io::Error::from_raw_os_error(-code)))
                    };
                }
                if mseq == seq && ty != NLMSG_ERROR {
                    reply(ty, &buf[off + 16..off + len]);
                }
                off += (len + 3) & !3;
            }
        }
    }

    /// Set MTU and/or administrative state.
    pub(crate) fn set_link(
        &mut self,
        index: u32,
        mtu: Option<u32>,
        up: Option<bool>,
    ) -> Result<(), TunError> {
        let (flags, change) = match up {
            Some(true) => (IFF_UP, IFF_UP),
            Some(false) => (0, IFF_UP),
            None => (0, 0),
        };
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.bytes(&ifinfomsg(index, flags, change));
        if let Some(mtu) = mtu {
            m.attr(IFLA_MTU, &mtu.to_ne_bytes());
        }
        self.request("set link", m)
    }

    /// Add (or replace) an address with a prefix length.
    pub(crate) fn add_addr(
        &mut self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), TunError> {
        let (family, a) = family_and_bytes(&addr);
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
        let flags = if family == AF_INET6 { IFA_F_NODAD } else { 0 };
        let mut hdr = [family, prefix, flags, RT_SCOPE_UNIVERSE, 0, 0, 0, 0];
        hdr[4..8].copy_from_slice(&index.to_ne_bytes());
        m.bytes(&hdr);
        if family == AF_INET {
            m.attr(IFA_LOCAL, &a);
        }
        m.attr(IFA_ADDRESS, &a);
        self.request("add address", m)
    }

    /// Add (or replace) a route to `dst/prefix` through the interface.
    pub(crate) fn add_route(
        &mut self,
        index: u32,
        dst: IpAddr,
        prefix: u8,
    ) -> Result<(), TunError> {
        let (family, a) = family_and_bytes(&dst);
        let scope = if family == AF_INET {
            RT_SCOPE_LINK
        } else {
            RT_SCOPE_UNIVERSE
        };
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
        m.bytes(&[
            family,
            prefix,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_STATIC,
            scope,
            RTN_UNICAST,
        ]);
        m.bytes(&0u32.to_ne_bytes());
        if prefix > 0 {
            m.attr(RTA_DST, &a);
        }
        m.attr(RTA_OIF, &index.to_ne_bytes());
        self.request("add route", m)
    }

    /// Whether the kernel routes `addr` as one of this namespace's own addresses
    /// (a `local` route exists for it). An IPv6 address becomes local only once
    /// the kernel's address-configuration work has run, shortly after it is added.
    pub(crate) fn is_local(&mut self, addr: IpAddr) -> Result<bool, TunError> {
        let (family, a) = family_and_bytes(&addr);
        let mut m = Msg::new(RTM_GETROUTE, 0);
        m.bytes(&[family, (a.len() * 8) as u8, 0, 0, 0, 0, 0, 0]);
        m.bytes(&0u32.to_ne_bytes());
        m.attr(RTA_DST, &a);
        let mut local = false;
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type.
        let res = self.request_reply("route lookup", m, |ty, body| {
            if ty == RTM_NEWROUTE && body.len() >= 8 {
                local = body[7] == RTN_LOCAL;
            }
        });
        match res {
            Ok(()) => Ok(local),
            // No route at all (yet): not local.
            Err(TunError::Netlink { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Delete a link.
    pub(crate) fn del_link(&mut self, index: u32) -> Result<(), TunError> {
        let mut m = Msg::new(RTM_DELLINK, 0);
        m.bytes(&ifinfomsg(index, 0, 0));
        self.request("delete link", m)
    }
}
