//! wg-quick configuration files (`wg0.conf`).
//!
//! The format is an INI dialect: `[Interface]` once, `[Peer]` any number of times, `Key = Value`
//! lines, `#` comments. Keys are case-insensitive like in wg-quick. Keys that only wg-quick's
//! shell hooks use (`PostUp`, `DNS`, `SaveConfig`, ...) are accepted with one warning each;
//! anything else unknown, malformed or missing is an error naming the file, the line and why.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

/// Default tunnel MTU, as wg-quick picks for a 1500-byte underlay with IPv6 outer headers.
pub const DEFAULT_MTU: u16 = 1420;

/// A 32-byte key decoded from base64 (`wg genkey` format). Zeroized on drop, redacted in
/// `Debug`, compared in constant time.
#[derive(Clone)]
pub struct KeyBytes(pub [u8; 32]);

impl PartialEq for KeyBytes {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl Eq for KeyBytes {}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBytes(..)")
    }
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Which routing table wg-quick-style routes for AllowedIPs go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Table {
    /// The main table (wg-quick's default).
    #[default]
    Auto,
    /// Add no routes.
    Off,
    /// A numbered routing table.
    Id(u32),
}

/// A peer's endpoint as written: resolved when the tunnel starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address literal (without brackets).
    pub host: String,
    /// UDP port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `[Interface]` section.
#[derive(Debug, Clone)]
pub struct InterfaceConfig {
    /// Our static private key.
    pub private_key: KeyBytes,
    /// UDP listen port; `None` = pick a random free port.
    pub listen_port: Option<u16>,
    /// Addresses of the TUN device, with prefix length.
    pub addresses: Vec<IpNet>,
    /// Tunnel MTU.
    pub mtu: u16,
    /// Route table for AllowedIPs routes.
    pub table: Table,
    /// Firewall mark for outgoing UDP packets.
    pub fwmark: Option<u32>,
}

/// One `[Peer]` section.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The peer's static public key.
    pub public_key: KeyBytes,
    /// Optional preshared key.
    pub preshared_key: Option<KeyBytes>,
    /// Where to send to until the peer roams.
    pub endpoint: Option<Endpoint>,
    /// Inner source addresses accepted from, and destinations routed to, this peer.
    pub allowed_ips: Vec<IpNet>,
    /// Persistent keepalive interval in seconds.
    pub persistent_keepalive: Option<u16>,
    /// Line of the `[Peer]` header, for error messages.
    pub line: usize,
}

/// A whole parsed configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `[Interface]` section.
    pub interface: InterfaceConfig,
    /// The `[Peer]` sections in file order.
    pub peers: Vec<PeerConfig>,
    /// Keys accepted but not used by uring-tunnel (one message per key).
    pub warnings: Vec<String>,
}

/// A configuration error: file, line (0 = the file as a whole) and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given.
    pub path: PathBuf,
    /// 1-based line number, 0 when the error is not tied to one line.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.reason)
        } else {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Keys wg-quick understands that only matter to its shell wrapper; accepted with a warning.
const WG_QUICK_ONLY: &[&str] = &[
    "dns",
    "preup",
    "postup",
    "predown",
    "postdown",
    "saveconfig",
];

impl Config {
    /// Reads and parses a file (the text, which holds keys, is zeroized afterwards).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| ConfigError {
                path: path.to_owned(),
                line: 0,
                reason: format!("cannot read: {e}"),
            })?;
        Config::parse(&text, path)
    }

    /// Parses the text of a file; `path` is used in error messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Parser::new(path).parse(text)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Interface,
    Peer,
}

#[derive(Default)]
struct IfaceDraft {
    private_key: Option<KeyBytes>,
    listen_port: Option<u16>,
    addresses: Vec<IpNet>,
    mtu: Option<u16>,
    table: Table,
    fwmark: Option<u32>,
}

struct PeerDraft {
    line: usize,
    public_key: Option<KeyBytes>,
    preshared_key: Option<KeyBytes>,
    endpoint: Option<Endpoint>,
    allowed_ips: Vec<IpNet>,
    persistent_keepalive: Option<u16>,
}

struct Parser<'p> {
    path: &'p Path,
    line: usize,
    warnings: Vec<String>,
    warned: Vec<String>,
}

impl<'p> Parser<'p> {
    fn new(path: &'p Path) -> Self {
        Parser {
            path,
            line: 0,
            warnings: Vec::new(),
            warned: Vec::new(),
        }
    }

    fn err(&self, line: usize, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.to_owned(),
            line,
            // Messages quote offending text, which may be a key written wrongly.
            reason: crate::hygiene::redact_keys(&reason.into()),
        }
    }

    fn parse(mut self, text: &str) -> Result<Config, ConfigError> {
        let mut section = Section::None;
        let mut iface: Option<(usize, IfaceDraft)> = None;
        let mut peers: Vec<PeerDraft> = Vec::new();

        for (idx, raw) in text.lines().enumerate() {
            self.line = idx + 1;
            let line = match raw.find('#') {
                Some(pos) => &raw[..pos],
                None => raw,
            }
            .trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with('[') {
                let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) else {
                    return Err(self.err(self.line, format!("malformed section header `{line}`")));
                };
                match name.trim().to_ascii_lowercase().as_str() {
                    "interface" => {
                        if let Some((first, _)) = &iface {
                            return Err(self.err(
                                self.line,
                                format!(
                                    "second [Interface] section (the first is on line {first})"
                                ),
                            ));
                        }
                        iface = Some((self.line, IfaceDraft::default()));
                        section = Section::Interface;
                    }
                    "peer" => {
                        peers.push(PeerDraft {
                            line: self.line,
                            public_key: None,
                            preshared_key: None,
                            endpoint: None,
                            allowed_ips: Vec::new(),
                            persistent_keepalive: None,
                        });
                        section = Section::Peer;
                    }
                    other => {
                        return Err(self.err(
                            self.line,
                            format!("unknown section [{other}] (expected [Interface] or [Peer])"),
                        ));
                    }
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(self.err(self.line, format!("expected `Key = Value`, found `{line}`")));
            };
            let key_lc = key.trim().to_ascii_lowercase();
            let value = value.trim();
            match section {
                Section::None => {
                    return Err(self.err(
                        self.line,
                        format!("`{}` outside of any section", key.trim()),
                    ));
                }
                Section::Interface => {
                    let draft = &mut iface.as_mut().expect("section implies draft").1;
                    self.interface_key(draft, &key_lc, key.trim(), value)?;
                }
                Section::Peer => {
                    let draft = peers.last_mut().expect("section implies draft");
                    self.peer_key(draft, &key_lc, key.trim(), value)?;
                }
            }
        }

        let Some((iface_line, iface)) = iface else {
            return Err(self.err(0, "no [Interface] section"));
        };
        let Some(private_key) = iface.private_key else {
            return Err(self.err(iface_line, "[Interface] has no PrivateKey"));
        };
        let interface = InterfaceConfig {
            private_key,
            listen_port: iface.listen_port,
            addresses: iface.addresses,
            mtu: iface.mtu.unwrap_or(DEFAULT_MTU),
            table: iface.table,
            fwmark: iface.fwmark,
        };
        let mut out_peers = Vec::with_capacity(peers.len());
        for p in peers {
            let Some(public_key) = p.public_key else {
                return Err(self.err(p.line, "[Peer] has no PublicKey"));
            };
            if let Some(dup) = out_peers
                .iter()
                .find(|q: &&PeerConfig| q.public_key == public_key)
            {
                return Err(self.err(
                    p.line,
                    format!(
                        "duplicate peer: same PublicKey as the [Peer] on line {}",
                        dup.line
                    ),
                ));
            }
            out_peers.push(PeerConfig {
                public_key,
                preshared_key: p.preshared_key,
                endpoint: p.endpoint,
                allowed_ips: p.allowed_ips,
                persistent_keepalive: p.persistent_keepalive,
                line: p.line,
            });
        }
        Ok(Config {
            interface,
            peers: out_peers,
            warnings: self.warnings,
        })
    }

    fn warn_unused(&mut self, key: &str) {
        let lc = key.to_ascii_lowercase();
        if !self.warned.contains(&lc) {
            self.warnings.push(format!(
                "{}:{}: `{key}` is a wg-quick hook/setting that uring-tunnel does not use; ignored",
                self.path.display(),
                self.line
            ));
            self.warned.push(lc);
        }
    }

    fn interface_key(
        &mut self,
        d: &mut IfaceDraft,
        key_lc: &str,
        key: &str,
        value: &str,
    ) -> Result<(), ConfigError> {
        match key_lc {
            "privatekey" => {
                if d.private_key.is_some() {
                    return Err(self.err(self.line, "PrivateKey given twice"));
                }
                d.private_key = Some(self.key(value, "PrivateKey")?);
            }
            "listenport" => d.listen_port = Some(self.number(value, "ListenPort")?),
            "address" => {
                for item in list(value) {
                    d.addresses.push(self.interface_address(item)?);
                }
            }
            "mtu" => {
                let mtu: u16 = self.number(value, "MTU")?;
                if !(576..=65535 - 80).contains(&mtu) {
                    return Err(self.err(
                        self.line,
                        format!("MTU {mtu} out of range (576..={})", 65535 - 80),
                    ));
                }
                d.mtu = Some(mtu);
            }
            "table" => {
                d.table = match value.to_ascii_lowercase().as_str() {
                    "off" => Table::Off,
                    "auto" | "main" => Table::Auto,
                    other => Table::Id(other.parse().map_err(|_| {
                        self.err(
                            self.line,
                            format!("Table `{value}`: expected off, auto, main or a number"),
                        )
                    })?),
                }
            }
            "fwmark" => {
                d.fwmark = if value.eq_ignore_ascii_case("off") {
                    None
                } else {
                    let v = if let Some(hex) = value.strip_prefix("0x") {
                        u32::from_str_radix(hex, 16).ok()
                    } else {
                        value.parse().ok()
                    };
                    Some(v.ok_or_else(|| {
                        self.err(self.line, format!("FwMark `{value}`: not a 32-bit number"))
                    })?)
                }
            }
            k if WG_QUICK_ONLY.contains(&k) => self.warn_unused(key),
            _ => {
                return Err(self.err(
                    self.line,
                    format!(
                        "unknown key `{key}` in [Interface] (known: PrivateKey, ListenPort, Address, MTU, Table, FwMark, DNS, PreUp, PostUp, PreDown, PostDown, SaveConfig)"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn peer_key(
        &mut self,
        d: &mut PeerDraft,
        key_lc: &str,
        key: &str,
        value: &str,
    ) -> Result<(), ConfigError> {
        match key_lc {
            "publickey" => {
                if d.public_key.is_some() {
                    return Err(self.err(self.line, "PublicKey given twice in one [Peer]"));
                }
                d.public_key = Some(self.key(value, "PublicKey")?);
            }
            "presharedkey" => d.preshared_key = Some(self.key(value, "PresharedKey")?),
            "endpoint" => d.endpoint = Some(self.endpoint(value)?),
            "allowedips" => {
                for item in list(value) {
                    d.allowed_ips.push(self.prefix(item, "AllowedIPs")?);
                }
            }
            "persistentkeepalive" => {
                d.persistent_keepalive = if value.eq_ignore_ascii_case("off") {
                    None
                } else {
                    match self.number::<u16>(value, "PersistentKeepalive")? {
                        0 => None,
                        n => Some(n),
                    }
                }
            }
            _ => {
                return Err(self.err(
                    self.line,
                    format!(
                        "unknown key `{key}` in [Peer] (known: PublicKey, PresharedKey, Endpoint, AllowedIPs, PersistentKeepalive)"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn key(&self, value: &str, what: &str) -> Result<KeyBytes, ConfigError> {
        use base64::Engine as _;
        let bad = || {
            self.err(
                self.line,
                format!("{what}: not a base64 32-byte key (as printed by `uring-tunnel genkey`)"),
            )
        };
        if value.len() != 44 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        let n = base64::engine::general_purpose::STANDARD
            .decode_slice(value, &mut out)
            .map_err(|_| bad())?;
        if n != 32 {
            return Err(bad());
        }
        Ok(KeyBytes(out))
    }

    fn number<T: std::str::FromStr>(&self, value: &str, what: &str) -> Result<T, ConfigError> {
        value.parse().map_err(|_| {
            self.err(
                self.line,
                format!("{what} `{value}`: not a number in range"),
            )
        })
    }

    fn prefix(&self, item: &str, what: &str) -> Result<IpNet, ConfigError> {
        let net = if item.contains('/') {
            item.parse::<IpNet>()
                .map_err(|_| self.err(self.line, format!("{what}: `{item}` is not an IP prefix")))?
        } else {
            let addr: IpAddr = item.parse().map_err(|_| {
                self.err(
                    self.line,
                    format!("{what}: `{item}` is not an IP address or prefix"),
                )
            })?;
            IpNet::from(addr)
        };
        // AllowedIPs are matched as networks: keep the canonical form (host bits cleared).
        Ok(net.trunc())
    }

    fn interface_address(&self, item: &str) -> Result<IpNet, ConfigError> {
        if item.contains('/') {
            item.parse::<IpNet>().map_err(|_| {
                self.err(
                    self.line,
                    format!("Address: `{item}` is not an address/prefix"),
                )
            })
        } else {
            let addr: IpAddr = item.parse().map_err(|_| {
                self.err(self.line, format!("Address: `{item}` is not an IP address"))
            })?;
            Ok(IpNet::from(addr))
        }
    }

    fn endpoint(&self, value: &str) -> Result<Endpoint, ConfigError> {
        let bad = |why: &str| {
            self.err(
                self.line,
                format!(
                    "Endpoint `{value}`: {why} (expected host:port, 1.2.3.4:port or [v6]:port)"
                ),
            )
        };
        let (host, port) = if let Some(rest) = value.strip_prefix('[') {
            let (h, p) = rest
                .split_once("]:")
                .ok_or_else(|| bad("missing `]:port`"))?;
            h.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address inside brackets"))?;
            (h, p)
        } else {
            let (h, p) = value.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
            if h.contains(':') {
                return Err(bad("IPv6 addresses need brackets"));
            }
            (h, p)
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    const K2: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("wg0.conf"))
    }

    #[test]
    fn full_file() {
        let text = format!(
            "# comment\n[Interface]\nPrivateKey = {K1}\nListenPort = 51820\nAddress = 100.64.0.1/24, fd00::1/64\nMTU = 1400\nPostUp = iptables -A ...\nDNS = 1.1.1.1\n\n[Peer]\nPublicKey = {K2}\nEndpoint = [fd00::2]:51820\nAllowedIPs = 100.64.0.2/32, fd00::2/128, 10.1.2.3/8\nPersistentKeepalive = 25\n[Peer]\nPublicKey = {K1}\nEndpoint = example.invalid:1234\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.interface.listen_port, Some(51820));
        assert_eq!(c.interface.mtu, 1400);
        assert_eq!(c.interface.addresses.len(), 2);
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert_eq!(c.peers.len(), 2);
        let p = &c.peers[0];
        assert_eq!(p.endpoint.as_ref().unwrap().to_string(), "[fd00::2]:51820");
        assert_eq!(p.persistent_keepalive, Some(25));
        assert_eq!(p.allowed_ips[2].to_string(), "10.0.0.0/8");
        assert_eq!(
            c.peers[1].endpoint.as_ref().unwrap().host,
            "example.invalid"
        );
    }

    #[test]
    fn defaults() {
        let c = parse(&format!("[Interface]\nPrivateKey={K1}\n")).unwrap();
        assert_eq!(c.interface.mtu, DEFAULT_MTU);
        assert_eq!(c.interface.table, Table::Auto);
        assert!(c.peers.is_empty());
    }

    #[test]
    fn errors_name_line_and_reason() {
        let cases = [
            ("[Interface]\nPrivateKey = abc\n", 2, "PrivateKey"),
            (
                &format!("[Interface]\nPrivateKey={K1}\nListenPort = 70000\n"),
                3,
                "ListenPort",
            ),
            (
                &format!("[Interface]\nPrivateKey={K1}\nBogus = 1\n"),
                3,
                "unknown key",
            ),
            (
                &format!("[Interface]\nPrivateKey={K1}\n[Peer]\nEndpoint = 1.2.3.4\n"),
                4,
                "missing port",
            ),
            (
                &format!("[Interface]\nPrivateKey={K1}\n[Peer]\nAllowedIPs = 1.2.3.4/40\n"),
                4,
                "AllowedIPs",
            ),
            (
                &format!("[Interface]\nPrivateKey={K1}\n[Peer]\n"),
                3,
                "no PublicKey",
            ),
            (
                &format!(
                    "[Interface]\nPrivateKey={K1}\n[Peer]\nPublicKey={K2}\n[Peer]\nPublicKey={K2}\n"
                ),
                5,
                "duplicate peer",
            ),
            ("PrivateKey = x\n", 1, "outside"),
            ("[Interface\n", 1, "malformed"),
            ("[Interface]\n", 1, "no PrivateKey"),
            ("", 0, "no [Interface]"),
            (
                &format!("[Interface]\nPrivateKey={K1}\nMTU = 100\n"),
                3,
                "MTU",
            ),
            (
                &format!("[Interface]\nPrivateKey={K1}\n[Peer]\nEndpoint = fd00::1:5\n"),
                4,
                "brackets",
            ),
            (
                &format!("[Interface]\nPrivateKey={K1}\njunk\n"),
                3,
                "Key = Value",
            ),
        ];
        for (text, line, needle) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?} -> {e}");
            assert!(e.to_string().contains(needle), "{text:?} -> {e}");
            assert!(e.to_string().starts_with("wg0.conf"), "{e}");
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        for text in [
            "[",
            "]",
            "=",
            "[Peer]\n=\n",
            "[Interface]\nAddress=/\n",
            "\u{0}\u{ff}",
        ] {
            let _ = parse(text);
        }
    }
}
