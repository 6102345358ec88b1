//! The WireGuard cross-platform configuration protocol (UAPI) on
//! `/var/run/wireguard/<interface>.sock`, so `wg show`, `wg set`, `wg showconf` and
//! `wg syncconf` work on a running tunnel.
//!
//! Protocol (text over a stream UNIX socket): a request is an operation line (`get=1` or
//! `set=1`) followed by `key=value` lines and ends with an empty line. `get` answers with the
//! configuration as `key=value` lines, `set` changes it; both answers end with `errno=N` and an
//! empty line. Keys are lowercase hex. Our extension `show=1` answers one line of JSON (the
//! data of `uring-tunnel show`) before `errno=0`; `wg` never sends it.
//!
//! Parsing and formatting are pure functions ([`parse_request`], [`format_get`]); a `set` is
//! parsed completely before anything is applied, so a bad request changes nothing. The
//! [`UapiServer`] reads bounded requests with timeouts and answers one connection at a time.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use ipnet::IpNet;
use uring_tunnel_crypto::keys::{PresharedKey, PublicKey, StaticSecret};
use uring_tunnel_engine::{DeviceConfig, DeviceUpdate, PeerUpdate};

/// Where the sockets live (wg's compiled-in path).
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/wireguard";
/// Environment variable that overrides [`DEFAULT_SOCKET_DIR`] (tests; `wg` itself always
/// uses the default).
pub const SOCKET_DIR_ENV: &str = "URING_TUNNEL_UAPI_DIR";
/// Largest request accepted, in bytes.
pub const MAX_REQUEST: usize = 1 << 20;
/// Longest time a client may take for one request, and per read/write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

const EINVAL: i32 = 22;
const EPROTO: i32 = 71;
const EMSGSIZE: i32 = 90;

/// The socket directory in use.
pub fn socket_dir() -> PathBuf {
    std::env::var_os(SOCKET_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_DIR))
}

/// The socket path of `interface`.
pub fn socket_path(interface: &str) -> PathBuf {
    socket_dir().join(format!("{interface}.sock"))
}

/// A parsed request.
#[derive(Debug)]
pub enum Request {
    /// `get=1`.
    Get,
    /// `set=1` with its changes.
    Set(DeviceUpdate),
    /// `show=1` (our extension): JSON for `uring-tunnel show`.
    Show,
}

/// Why a request was refused; [`UapiError::errno`] is what the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UapiError {
    /// A value that does not parse, or a key in the wrong place.
    #[error("line {line}: {reason}")]
    Invalid {
        /// 1-based line number in the request.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Not the protocol: unknown operation or key, a line without `=`.
    #[error("line {line}: protocol error: {reason}")]
    Protocol {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

impl UapiError {
    /// The errno sent back (`EINVAL` for bad values, `EPROTO` for protocol violations).
    pub fn errno(&self) -> i32 {
        match self {
            UapiError::Invalid { .. } => EINVAL,
            UapiError::Protocol { .. } => EPROTO,
        }
    }
}

/// Parses one request: the operation line and its `key=value` lines, without the closing
/// empty line. Never panics; nothing is applied here.
pub fn parse_request(text: &str) -> Result<Request, UapiError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let Some((_, op)) = lines.next() else {
        return Err(UapiError::Protocol {
            line: 1,
            reason: "empty request",
        });
    };
    let rest: Vec<(usize, &str)> = lines.collect();
    let no_body = |req: Request| match rest.iter().find(|(_, l)| !l.is_empty()) {
        Some((line, _)) => Err(UapiError::Protocol {
            line: *line,
            reason: "this operation takes no keys",
        }),
        None => Ok(req),
    };
    match op {
        "get=1" => no_body(Request::Get),
        "show=1" => no_body(Request::Show),
        "set=1" => parse_set(&rest).map(Request::Set),
        _ => Err(UapiError::Protocol {
            line: 1,
            reason: "unknown operation (want get=1, set=1 or show=1)",
        }),
    }
}

fn parse_set(lines: &[(usize, &str)]) -> Result<DeviceUpdate, UapiError> {
    let mut update = DeviceUpdate::default();
    let mut peer: Option<PeerUpdate> = None;
    for &(line, text) in lines {
        if text.is_empty() {
            continue;
        }
        let invalid = |reason| UapiError::Invalid { line, reason };
        let Some((key, value)) = text.split_once('=') else {
            return Err(UapiError::Protocol {
                line,
                reason: "line without `=`",
            });
        };
        if key == "public_key" {
            if let Some(p) = peer.take() {
                update.peers.push(p);
            }
            let k = parse_key(value).ok_or(invalid("public_key: want 64 hex digits"))?;
            peer = Some(PeerUpdate::new(PublicKey::from_bytes(k)));
            continue;
        }
        let Some(p) = peer.as_mut() else {
            match key {
                "private_key" => {
                    let k = parse_key(value).ok_or(invalid("private_key: want 64 hex digits"))?;
                    update.private_key = Some(StaticSecret::from_bytes(k));
                }
                "listen_port" => {
                    update.listen_port = Some(
                        value
                            .parse()
                            .map_err(|_| invalid("listen_port: want 0-65535"))?,
                    );
                }
                "fwmark" => {
                    let m: u32 = value
                        .parse()
                        .map_err(|_| invalid("fwmark: want a 32-bit number"))?;
                    update.fwmark = Some((m != 0).then_some(m));
                }
                "replace_peers" => {
                    update.replace_peers =
                        parse_true(value).ok_or(invalid("replace_peers: want true"))?;
                }
                _ => {
                    return Err(UapiError::Protocol {
                        line,
                        reason: "unknown interface key",
                    });
                }
            }
            continue;
        };
        match key {
            "remove" => p.remove = parse_true(value).ok_or(invalid("remove: want true"))?,
            "update_only" => {
                p.update_only = parse_true(value).ok_or(invalid("update_only: want true"))?;
            }
            "preshared_key" => {
                let k = parse_key(value).ok_or(invalid("preshared_key: want 64 hex digits"))?;
                p.preshared_key = Some(PresharedKey::from_bytes(k));
            }
            "endpoint" => {
                p.endpoint = Some(
                    value
                        .parse::<SocketAddr>()
                        .map_err(|_| invalid("endpoint: want IP:port or [IPv6]:port"))?,
                );
            }
            "persistent_keepalive_interval" => {
                let s: u16 = value
                    .parse()
                    .map_err(|_| invalid("persistent_keepalive_interval: want 0-65535"))?;
                p.persistent_keepalive = Some((s != 0).then(|| Duration::from_secs(s.into())));
            }
            "replace_allowed_ips" => {
                p.replace_allowed_ips =
                    parse_true(value).ok_or(invalid("replace_allowed_ips: want true"))?;
            }
            "allowed_ip" => {
                let (remove, net) = match value.strip_prefix('-') {
                    Some(v) => (true, v),
                    None => (false, value),
                };
                let net: IpNet = net
                    .parse()
                    .map_err(|_| invalid("allowed_ip: want an address/prefix"))?;
                if remove {
                    p.remove_allowed_ips.push(net);
                } else {
                    p.allowed_ips.push(net);
                }
            }
            "protocol_version" => {
                if value != "1" {
                    return Err(invalid("protocol_version: only 1 is known"));
                }
            }
            _ => {
                return Err(UapiError::Protocol {
                    line,
                    reason: "unknown peer key",
                });
            }
        }
    }
    if let Some(p) = peer {
        update.peers.push(p);
    }
    Ok(update)
}

fn parse_true(v: &str) -> Option<bool> {
    (v == "true").then_some(true)
}

/// 64 hex digits (either case) → 32 bytes.
pub fn parse_key(hex: &str) -> Option<[u8; 32]> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *o = (hi << 4 | lo) as u8;
    }
    Some(out)
}

/// 32 bytes → 64 lowercase hex digits.
pub fn hex_key(key: &[u8; 32]) -> String {
    let mut s = String::with_capacity(64);
    for b in key {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// An IPv4-mapped IPv6 endpoint (from our dual-stack sockets) shown as IPv4.
pub fn canonical_endpoint(ep: SocketAddr) -> SocketAddr {
    match ep {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => ep,
        },
        SocketAddr::V4(_) => ep,
    }
}

/// The answer to `get=1`, including the closing `errno=0` and empty line.
pub fn format_get(cfg: &DeviceConfig) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "private_key={}", hex_key(&cfg.private_key.to_bytes()));
    let _ = writeln!(s, "listen_port={}", cfg.listen_port);
    if let Some(m) = cfg.fwmark {
        let _ = writeln!(s, "fwmark={m}");
    }
    for p in &cfg.peers {
        let _ = writeln!(s, "public_key={}", hex_key(p.public_key.as_bytes()));
        let _ = writeln!(s, "preshared_key={}", hex_key(p.preshared_key.as_bytes()));
        let _ = writeln!(s, "protocol_version=1");
        if let Some(ep) = p.endpoint {
            let _ = writeln!(s, "endpoint={}", canonical_endpoint(ep));
        }
        let hs = p
            .last_handshake
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let _ = writeln!(s, "last_handshake_time_sec={}", hs.as_secs());
        let _ = writeln!(s, "last_handshake_time_nsec={}", hs.subsec_nanos());
        let _ = writeln!(s, "tx_bytes={}", p.tx_bytes);
        let _ = writeln!(s, "rx_bytes={}", p.rx_bytes);
        let _ = writeln!(
            s,
            "persistent_keepalive_interval={}",
            p.persistent_keepalive.map_or(0, |d| d.as_secs())
        );
        for net in &p.allowed_ips {
            let _ = writeln!(s, "allowed_ip={net}");
        }
    }
    s.push_str("errno=0\n\n");
    s
}

/// What the server asks of the running tunnel.
pub trait Handler: Send + Sync {
    /// The configuration for `get`.
    fn get(&self) -> DeviceConfig;
    /// Applies a `set`; `Err(errno)` when refused.
    fn set(&self, update: DeviceUpdate) -> Result<(), i32>;
    /// One line of JSON for `show=1`.
    fn show(&self) -> String;
}

/// Answers one request text (without the closing empty line).
pub fn answer(handler: &dyn Handler, text: &str) -> String {
    match parse_request(text) {
        Ok(Request::Get) => format_get(&handler.get()),
        Ok(Request::Show) => {
            let json = handler.show().replace('\n', " ");
            format!("{json}\nerrno=0\n\n")
        }
        Ok(Request::Set(u)) => match handler.set(u) {
            Ok(()) => "errno=0\n\n".to_owned(),
            Err(e) => format!("errno={e}\n\n"),
        },
        Err(e) => format!("errno={}\n\n", e.errno()),
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum UapiStartError {
    /// Another process answers on the socket.
    #[error("interface {0} already has a running tunnel (its UAPI socket {1} answers)")]
    InUse(String, PathBuf),
    /// Something else is in the way or the OS refused.
    #[error("UAPI socket {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The socket file; removed on drop if it is still the one we bound.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A bound UAPI socket not served yet (bind before creating the interface, so a second
/// tunnel with the same name fails before touching it).
#[derive(Debug)]
pub struct UapiListener {
    listener: UnixListener,
    file: SocketFile,
}

impl UapiListener {
    /// Binds the socket of `interface` in [`socket_dir`].
    pub fn bind(interface: &str) -> Result<UapiListener, UapiStartError> {
        Self::bind_in(&socket_dir(), interface)
    }

    /// Binds `dir/<interface>.sock`: creates `dir` (0700) if missing; if the path exists and
    /// a process answers on it, fails with [`UapiStartError::InUse`]; a stale socket (nobody
    /// listening: its process was killed) is replaced. The socket gets mode 0600.
    pub fn bind_in(dir: &Path, interface: &str) -> Result<UapiListener, UapiStartError> {
        let path = dir.join(format!("{interface}.sock"));
        let io_err = |source| UapiStartError::Io {
            path: path.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err)?;
        match std::fs::symlink_metadata(&path) {
            Ok(md) if md.file_type().is_socket() => match UnixStream::connect(&path) {
                Ok(_) => return Err(UapiStartError::InUse(interface.to_owned(), path)),
                Err(_) => std::fs::remove_file(&path).map_err(io_err)?,
            },
            Ok(_) => {
                return Err(io_err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a socket",
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let listener = UnixListener::bind(&path).map_err(io_err)?;
        let ino = std::fs::metadata(&path).map_err(io_err)?.ino();
        let file = SocketFile {
            path: path.clone(),
            ino,
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
        Ok(UapiListener { listener, file })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Serves requests with `handler` on a new thread.
    pub fn serve(self, handler: Arc<dyn Handler>) -> Result<UapiServer, UapiStartError> {
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&stop);
        let UapiListener { listener, file } = self;
        let thread = std::thread::Builder::new()
            .name("uapi".into())
            .spawn(move || serve(&listener, &*handler, &st))
            .map_err(|source| UapiStartError::Io {
                path: file.path.clone(),
                source,
            })?;
        Ok(UapiServer {
            file,
            stop,
            thread: Some(thread),
        })
    }
}

/// The served UAPI socket and its thread; the socket is removed on [`UapiServer::stop`] or
/// drop.
#[derive(Debug)]
pub struct UapiServer {
    file: SocketFile,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UapiServer {
    /// Binds ([`UapiListener::bind`]) and serves.
    pub fn start(interface: &str, handler: Arc<dyn Handler>) -> Result<UapiServer, UapiStartError> {
        UapiListener::bind(interface)?.serve(handler)
    }

    /// [`UapiServer::start`] with the socket in `dir`.
    pub fn start_in(
        dir: &Path,
        interface: &str,
        handler: Arc<dyn Handler>,
    ) -> Result<UapiServer, UapiStartError> {
        UapiListener::bind_in(dir, interface)?.serve(handler)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Stops the thread and removes the socket (if it is still ours).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(t) = self.thread.take() else { return };
        self.stop.store(true, Ordering::Release);
        let _ = t.join();
    }
}

impl Drop for UapiServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How often the accept loop looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// Accepts (non-blocking, polled every [`ACCEPT_POLL`], so a stop is seen even if the socket
/// file was removed by someone else) and serves one connection at a time.
fn serve(listener: &UnixListener, handler: &dyn Handler, stop: &AtomicBool) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((conn, _)) => {
                if conn.set_nonblocking(false).is_ok() {
                    let _ = handle_conn(conn, handler);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // e.g. EMFILE: back off instead of spinning.
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

/// Serves the requests of one connection until EOF, an error or the time limit.
fn handle_conn(conn: UnixStream, handler: &dyn Handler) -> io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let started = Instant::now();
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn.take(MAX_REQUEST as u64 * 4));
    loop {
        let mut text = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                return Ok(()); // EOF (a request cut short is not answered)
            }
            if started.elapsed() > IO_TIMEOUT * 2 {
                return Ok(());
            }
            if line == "\n" {
                break;
            }
            if text.len() + line.len() > MAX_REQUEST {
                writer.write_all(format!("errno={EMSGSIZE}\n\n").as_bytes())?;
                return Ok(());
            }
            text.push_str(&line);
        }
        if text.is_empty() {
            continue;
        }
        writer.write_all(answer(handler, &text).as_bytes())?;
    }
}

/// Sends `request` (e.g. `"get=1\n\n"`) to the socket at `path` and returns the answer up to
/// and including its closing empty line.
pub fn query(path: &Path, request: &str) -> io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(s.take(64 << 20));
    let mut out = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if line == "\n" {
            break;
        }
        out.push_str(&line);
    }
    Ok(out)
}

/// Asks the socket at `path` for the `show` JSON; `None` if it does not speak our extension
/// (e.g. wireguard-go answers `errno=` with an error).
pub fn query_show(path: &Path) -> io::Result<Option<String>> {
    let out = query(path, "show=1\n\n")?;
    let mut lines = out.lines();
    match (lines.next(), lines.next()) {
        (Some(json), Some("errno=0")) if json.starts_with('{') => Ok(Some(json.to_owned())),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uring_tunnel_engine::PeerInfo;

    fn key(b: u8) -> [u8; 32] {
        [b; 32]
    }

    #[test]
    fn hex_roundtrip_and_rejects() {
        let k: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        assert_eq!(parse_key(&hex_key(&k)), Some(k));
        assert_eq!(parse_key(&hex_key(&k).to_uppercase()), Some(k));
        assert_eq!(parse_key(&"0".repeat(63)), None);
        assert_eq!(parse_key(&"0".repeat(65)), None);
        assert_eq!(parse_key(&format!("{}g", "0".repeat(63))), None);
        assert_eq!(parse_key(&format!("{}é", "0".repeat(62))), None);
    }

    #[test]
    fn parses_every_set_key() {
        let pk = hex_key(&key(9));
        let text = format!(
            "set=1\nprivate_key={}\nlisten_port=51820\nfwmark=0\nreplace_peers=true\n\
             public_key={pk}\nupdate_only=true\npreshared_key={}\nendpoint=[fd00::2]:51821\n\
             persistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=100.64.0.2/32\n\
             allowed_ip=-fd00:1::/64\nprotocol_version=1\npublic_key={}\nremove=true\n",
            hex_key(&key(1)),
            hex_key(&key(2)),
            hex_key(&key(3))
        );
        let Request::Set(u) = parse_request(&text).unwrap() else {
            panic!("not a set")
        };
        // Private keys are clamped (as the kernel does): compare with the clamped form.
        assert_eq!(
            *u.private_key.unwrap().to_bytes(),
            *StaticSecret::from_bytes(key(1)).to_bytes()
        );
        assert_eq!(u.listen_port, Some(51820));
        assert_eq!(u.fwmark, Some(None));
        assert!(u.replace_peers);
        assert_eq!(u.peers.len(), 2);
        let p = &u.peers[0];
        assert_eq!(p.public_key, PublicKey::from_bytes(key(9)));
        assert!(p.update_only && !p.remove && p.replace_allowed_ips);
        assert_eq!(p.preshared_key.as_ref().unwrap().as_bytes(), &key(2));
        assert_eq!(p.endpoint, Some("[fd00::2]:51821".parse().unwrap()));
        assert_eq!(p.persistent_keepalive, Some(Some(Duration::from_secs(25))));
        assert_eq!(
            p.allowed_ips,
            vec!["100.64.0.2/32".parse::<IpNet>().unwrap()]
        );
        assert_eq!(
            p.remove_allowed_ips,
            vec!["fd00:1::/64".parse::<IpNet>().unwrap()]
        );
        assert!(u.peers[1].remove);
        assert_eq!(u.peers[1].public_key, PublicKey::from_bytes(key(3)));
    }

    #[test]
    fn keepalive_zero_and_fwmark_set() {
        let text = format!(
            "set=1\nfwmark=51\npublic_key={}\npersistent_keepalive_interval=0\n",
            hex_key(&key(4))
        );
        let Request::Set(u) = parse_request(&text).unwrap() else {
            panic!()
        };
        assert_eq!(u.fwmark, Some(Some(51)));
        assert_eq!(u.peers[0].persistent_keepalive, Some(None));
    }

    #[test]
    fn errors_have_the_right_errno() {
        let pk = hex_key(&key(5));
        let cases: &[(&str, i32)] = &[
            ("", EPROTO),
            ("bogus=1", EPROTO),
            ("get=1\nlisten_port=1", EPROTO),
            ("set=1\nlisten_port=65536", EINVAL),
            ("set=1\nlisten_port", EPROTO),
            ("set=1\nprivate_key=abc", EINVAL),
            ("set=1\nreplace_peers=false", EINVAL),
            ("set=1\nfoo=bar", EPROTO),
            ("set=1\npublic_key=zz", EINVAL),
        ];
        for (text, errno) in cases {
            let e = parse_request(text).unwrap_err();
            assert_eq!(e.errno(), *errno, "{text:?}: {e}");
        }
        for (suffix, errno) in [
            ("endpoint=1.2.3.4", EINVAL),
            ("allowed_ip=1.2.3.4/33", EINVAL),
            ("protocol_version=2", EINVAL),
            ("listen_port=1", EPROTO), // interface key inside a peer section
            ("remove=false", EINVAL),
            ("persistent_keepalive_interval=-1", EINVAL),
        ] {
            let text = format!("set=1\npublic_key={pk}\n{suffix}");
            assert_eq!(parse_request(&text).unwrap_err().errno(), errno, "{suffix}");
        }
    }

    fn sample_config() -> DeviceConfig {
        let sk = StaticSecret::from_bytes(key(7));
        DeviceConfig {
            public_key: sk.public_key(),
            private_key: sk,
            listen_port: 51820,
            fwmark: Some(3),
            peers: vec![PeerInfo {
                public_key: PublicKey::from_bytes(key(8)),
                preshared_key: PresharedKey::none(),
                endpoint: Some("[::ffff:198.18.0.2]:51820".parse().unwrap()),
                allowed_ips: vec!["100.64.0.2/32".parse().unwrap()],
                persistent_keepalive: Some(Duration::from_secs(25)),
                last_handshake: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
                rx_bytes: 10,
                tx_bytes: 20,
            }],
        }
    }

    #[test]
    fn get_output_has_the_protocol_lines_in_order() {
        let out = format_get(&sample_config());
        let want = format!(
            "private_key={}\nlisten_port=51820\nfwmark=3\npublic_key={}\npreshared_key={}\n\
             protocol_version=1\nendpoint=198.18.0.2:51820\nlast_handshake_time_sec=1700000000\n\
             last_handshake_time_nsec=5\ntx_bytes=20\nrx_bytes=10\n\
             persistent_keepalive_interval=25\nallowed_ip=100.64.0.2/32\nerrno=0\n\n",
            hex_key(&StaticSecret::from_bytes(key(7)).to_bytes()),
            hex_key(&key(8)),
            hex_key(&[0; 32])
        );
        assert_eq!(out, want);
    }

    #[test]
    fn get_output_parses_back_as_a_set_of_the_same_config() {
        // `wg showconf | wg setconf` in miniature: the config keys of `get` are valid `set` keys.
        let out = format_get(&sample_config());
        let body: String = out
            .lines()
            .filter(|l| {
                !l.starts_with("last_handshake")
                    && !l.starts_with("tx_bytes")
                    && !l.starts_with("rx_bytes")
                    && !l.starts_with("errno")
                    && !l.is_empty()
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let Request::Set(u) = parse_request(&format!("set=1\n{body}")).unwrap() else {
            panic!()
        };
        assert_eq!(u.listen_port, Some(51820));
        assert_eq!(u.fwmark, Some(Some(3)));
        assert_eq!(u.peers.len(), 1);
        assert_eq!(u.peers[0].allowed_ips.len(), 1);
        assert_eq!(
            u.peers[0].endpoint,
            Some("198.18.0.2:51820".parse().unwrap())
        );
    }

    struct Fake {
        sets: std::sync::Mutex<Vec<DeviceUpdate>>,
    }

    impl Handler for Fake {
        fn get(&self) -> DeviceConfig {
            sample_config()
        }
        fn set(&self, update: DeviceUpdate) -> Result<(), i32> {
            let refuse = update.listen_port == Some(1);
            self.sets.lock().unwrap().push(update);
            if refuse { Err(98) } else { Ok(()) }
        }
        fn show(&self) -> String {
            "{\"interface\":\"x\"}".to_owned()
        }
    }

    #[test]
    fn server_answers_and_replaces_a_stale_socket() {
        let dir = std::env::temp_dir().join(format!("uapi-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let name = "utest0";
        let sock = dir.join("utest0.sock");
        // A stale socket: bound by a listener that is gone.
        std::fs::create_dir_all(&dir).unwrap();
        drop(UnixListener::bind(&sock).unwrap());
        assert!(sock.exists());
        let fake = Arc::new(Fake {
            sets: std::sync::Mutex::new(Vec::new()),
        });
        let server = UapiServer::start_in(&dir, name, fake.clone()).unwrap();
        let mode = std::fs::metadata(server.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second server for the same name refuses: the first one answers.
        let err = UapiServer::start_in(&dir, name, fake.clone()).unwrap_err();
        assert!(matches!(err, UapiStartError::InUse(..)), "{err}");
        let got = query(server.path(), "get=1\n\n").unwrap();
        assert!(got.starts_with("private_key="), "{got}");
        assert!(got.ends_with("errno=0\n"), "{got}");
        let set = query(server.path(), "set=1\nlisten_port=7\n\n").unwrap();
        assert_eq!(set, "errno=0\n");
        let set = query(server.path(), "set=1\nlisten_port=1\n\n").unwrap();
        assert_eq!(set, "errno=98\n");
        let bad = query(server.path(), "set=1\nlisten_port=x\n\n").unwrap();
        assert_eq!(bad, format!("errno={EINVAL}\n"));
        assert_eq!(
            fake.sets.lock().unwrap().len(),
            2,
            "a bad set is not applied"
        );
        assert_eq!(
            query_show(server.path()).unwrap().as_deref(),
            Some("{\"interface\":\"x\"}")
        );
        // Oversized request: refused, not buffered forever.
        let mut s = UnixStream::connect(server.path()).unwrap();
        let big = format!("set=1\n{}", "fwmark=1\n".repeat(MAX_REQUEST / 9 + 10));
        let _ = s.write_all(big.as_bytes());
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        assert_eq!(resp, format!("errno={EMSGSIZE}\n\n"));
        let path = server.path().to_owned();
        server.stop();
        assert!(!path.exists(), "socket removed at shutdown");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn server_stops_even_if_its_socket_file_was_removed() {
        let dir = std::env::temp_dir().join(format!("uapi-test2-{}", std::process::id()));
        let fake = Arc::new(Fake {
            sets: std::sync::Mutex::new(Vec::new()),
        });
        let server = UapiServer::start_in(&dir, "utest1", fake).unwrap();
        std::fs::remove_file(server.path()).unwrap();
        let t = Instant::now();
        server.stop();
        assert!(t.elapsed() < Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_request(&text);
            let _ = parse_request(&format!("set=1\n{text}"));
        }

        #[test]
        fn set_lines_from_the_key_alphabet_never_panic(
            lines in proptest::collection::vec(
                (0usize..14, "[0-9a-fA-F:./\\[\\]-]{0,70}"), 0..20)
        ) {
            const KEYS: [&str; 14] = ["private_key", "listen_port", "fwmark", "replace_peers",
                "public_key", "remove", "update_only", "preshared_key", "endpoint",
                "persistent_keepalive_interval", "replace_allowed_ips", "allowed_ip",
                "protocol_version", "x"];
            let mut text = String::from("set=1\n");
            for (k, v) in &lines {
                text.push_str(KEYS[*k]);
                text.push('=');
                text.push_str(v);
                text.push('\n');
            }
            if let Ok(Request::Set(u)) = parse_request(&text) {
                proptest::prop_assert!(u.peers.len() <= lines.len());
            }
        }

        #[test]
        fn valid_peers_round_trip(
            keys in proptest::collection::vec(proptest::prelude::any::<[u8; 32]>(), 1..5),
            port in proptest::prelude::any::<u16>(),
            ka in proptest::prelude::any::<u16>(),
        ) {
            let mut text = format!("set=1\nlisten_port={port}\n");
            for k in &keys {
                let _ = write!(text, "public_key={}\npersistent_keepalive_interval={ka}\nallowed_ip=100.64.{}.0/24\n", hex_key(k), k[0]);
            }
            let Ok(Request::Set(u)) = parse_request(&text) else {
                return Err(proptest::test_runner::TestCaseError::fail("refused"));
            };
            proptest::prop_assert_eq!(u.listen_port, Some(port));
            proptest::prop_assert_eq!(u.peers.len(), keys.len());
            for (p, k) in u.peers.iter().zip(&keys) {
                proptest::prop_assert_eq!(p.public_key.as_bytes(), k);
                proptest::prop_assert_eq!(p.persistent_keepalive, Some((ka != 0).then(|| Duration::from_secs(ka.into()))));
            }
        }
    }
}
