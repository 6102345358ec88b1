//! Tunnels as processes: two instances of uring-tunnel (one per namespace, `run --config`) or
//! of another implementation (started in the foreground and configured over its UAPI socket
//! with `wg set`), keys generated fresh and written with mode 0600 to a private directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use uring_tunnel_crypto::keys::StaticSecret;

use crate::args::{EngineKind, PeerKind, RowKind};
use crate::netns::{ChildGuard, Netns, Underlay, run, wait_for, which, write_private};
use crate::summary::Counters;
use crate::{BenchError, Result};

/// UDP port of both tunnel ends.
pub const LISTEN_PORT: u16 = 51820;
/// Tunnel MTU (inner), as in the design notes' reference runs.
pub const MTU: u16 = 1420;

/// A private scratch directory (mode 0700) for keys and configs, removed on drop.
#[derive(Debug)]
pub struct PrivateDir(PathBuf);

impl PrivateDir {
    /// Creates `$TMPDIR/uring-tunnel-bench-{pid}`.
    pub fn new() -> Result<PrivateDir> {
        use std::os::unix::fs::PermissionsExt as _;
        let p = std::env::temp_dir().join(format!("uring-tunnel-bench-{}", std::process::id()));
        fs::create_dir_all(&p).map_err(BenchError::io(format!("creating {}", p.display())))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o700))
            .map_err(BenchError::io(format!("chmod {}", p.display())))?;
        Ok(PrivateDir(p))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One running tunnel end.
#[derive(Debug)]
pub struct TunnelProc {
    child: ChildGuard,
    log: PathBuf,
    ifname: String,
    /// Whether it is uring-tunnel (prints a counter line at shutdown).
    engine: bool,
}

impl TunnelProc {
    /// The process id (for `/proc/PID/stat`).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; returns uring-tunnel's counters (None for other implementations, or when the
    /// line is missing) and whether it exited cleanly.
    pub fn stop(mut self) -> (Option<Counters>, bool) {
        let clean = self.child.terminate(Duration::from_secs(10));
        let counters = if self.engine {
            Counters::from_log(&self.log_text())
        } else {
            None
        };
        let _ = fs::remove_file(sock_path(&self.ifname));
        (counters, clean)
    }
}

fn sock_path(ifname: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"))
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Both ends of one tunnel.
#[derive(Debug)]
pub struct TunnelPair {
    /// Source side.
    pub a: TunnelProc,
    /// Sink side.
    pub b: TunnelProc,
}

impl TunnelPair {
    /// Stops both ends; returns their counters.
    pub fn stop(self) -> (Option<Counters>, Option<Counters>, bool) {
        let (ca, oka) = self.a.stop();
        let (cb, okb) = self.b.stop();
        (ca, cb, oka && okb)
    }
}

struct End<'a> {
    ns: &'a Netns,
    side: &'static str,
    secret: String,
    peer_public: String,
    addr: String,
    peer_underlay: String,
    peer_overlay: String,
}

/// What a tunnel start needs besides the row.
#[derive(Debug)]
pub struct StartCtx<'a> {
    /// The namespaces.
    pub underlay: &'a Underlay,
    /// Private dir for keys/configs.
    pub private: &'a Path,
    /// Where logs go.
    pub logs: &'a Path,
    /// Log-name prefix (`{test}-{row}-{rep}`).
    pub tag: &'a str,
    /// The uring-tunnel binary.
    pub exe: &'a Path,
    /// `run --cores`.
    pub cores: Option<usize>,
}

fn next_ifname(side: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed) % 1000;
    format!("ub{}n{n}{side}", std::process::id() % 10_000)
}

/// Starts both ends of `row` (not `Veth`) and waits until traffic passes.
pub fn start_pair(row: RowKind, ctx: &StartCtx<'_>) -> Result<TunnelPair> {
    let ka = StaticSecret::generate(&mut rand_core::OsRng);
    let kb = StaticSecret::generate(&mut rand_core::OsRng);
    let u = ctx.underlay;
    let ends = [
        End {
            ns: &u.a,
            side: "a",
            secret: ka.to_base64(),
            peer_public: kb.public_key().to_string(),
            addr: u.overlay(1),
            peer_underlay: u.v4(2),
            peer_overlay: u.overlay(2),
        },
        End {
            ns: &u.b,
            side: "b",
            secret: kb.to_base64(),
            peer_public: ka.public_key().to_string(),
            addr: u.overlay(2),
            peer_underlay: u.v4(1),
            peer_overlay: u.overlay(1),
        },
    ];
    let mut procs = Vec::with_capacity(2);
    for e in &ends {
        let p = match row {
            RowKind::Veth => {
                return Err(BenchError::Setup("veth has no tunnel".into()));
            }
            RowKind::Engine(k) => start_engine(k, e, ctx)?,
            RowKind::Peer(k) => start_peer(k, e, ctx)?,
        };
        procs.push(p);
    }
    let b = procs
        .pop()
        .ok_or_else(|| BenchError::Setup("no end b".into()))?;
    let a = procs
        .pop()
        .ok_or_else(|| BenchError::Setup("no end a".into()))?;
    let pair = TunnelPair { a, b };
    wait_path(&u.a, &u.overlay(2)).map_err(|e| {
        BenchError::Setup(format!(
            "{row}: no traffic through the tunnel: {e}\n--- a:\n{}\n--- b:\n{}",
            tail(&pair.a.log_text(), 20),
            tail(&pair.b.log_text(), 20)
        ))
    })?;
    Ok(pair)
}

/// Pings `dst` from `ns` until it answers (the first packet triggers the handshake).
fn wait_path(ns: &Netns, dst: &str) -> Result<()> {
    if which("ping").is_none() {
        std::thread::sleep(Duration::from_secs(1));
        return Ok(());
    }
    for _ in 0..20 {
        let ok = ns
            .command("ping")
            .args(["-c", "1", "-W", "1", "-q", dst])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
    }
    Err(BenchError::Setup(format!("{dst} did not answer ping")))
}

fn log_file(ctx: &StartCtx<'_>, side: &str) -> Result<(fs::File, PathBuf)> {
    let p = ctx.logs.join(format!("{}-{side}.log", ctx.tag));
    let f = fs::File::create(&p).map_err(BenchError::io(format!("creating {}", p.display())))?;
    Ok((f, p))
}

fn start_engine(k: EngineKind, e: &End<'_>, ctx: &StartCtx<'_>) -> Result<TunnelProc> {
    let ifname = next_ifname(e.side);
    let conf = ctx.private.join(format!("{ifname}.conf"));
    write_private(
        &conf,
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = {LISTEN_PORT}\nAddress = {}/24\nMTU = {MTU}\n\n[Peer]\nPublicKey = {}\nEndpoint = {}:{LISTEN_PORT}\nAllowedIPs = {}/32\n",
            e.secret, e.addr, e.peer_public, e.peer_underlay, e.peer_overlay
        ),
    )?;
    let (log, log_path) = log_file(ctx, e.side)?;
    let mut cmd = e.ns.command(ctx.exe);
    cmd.arg("run")
        .arg("--config")
        .arg(&conf)
        .args(["--interface", &ifname, "--engine", k.name()]);
    if let Some(c) = ctx.cores {
        cmd.args(["--cores", &c.to_string()]);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(BenchError::io("log fd"))?)
        .stderr(log)
        .spawn()
        .map_err(BenchError::io("starting uring-tunnel run"))?;
    let mut t = TunnelProc {
        child: ChildGuard(child),
        log: log_path,
        ifname,
        engine: true,
    };
    let up = wait_for(Duration::from_secs(10), || {
        if !t.child.running() {
            return Some(false);
        }
        t.log_text().contains(" up: ").then_some(true)
    });
    if up != Some(true) {
        return Err(BenchError::Setup(format!(
            "uring-tunnel --engine {} did not come up: {}",
            k.name(),
            tail(&t.log_text(), 20)
        )));
    }
    Ok(t)
}

fn start_peer(k: PeerKind, e: &End<'_>, ctx: &StartCtx<'_>) -> Result<TunnelProc> {
    let ifname = next_ifname(e.side);
    let sock = sock_path(&ifname);
    let _ = fs::remove_file(&sock);
    let (log, log_path) = log_file(ctx, e.side)?;
    let mut cmd = e.ns.command(k.program());
    for v in [
        "WG_SUDO",
        "WG_UAPI_FD",
        "WG_TUN_FD",
        "WG_LOG_FILE",
        "WG_THREADS",
        "WG_LOG_LEVEL",
    ] {
        cmd.env_remove(v);
    }
    match k {
        PeerKind::WireguardGo | PeerKind::WireguardGoOffload => {
            cmd.env("LOG_LEVEL", "error").args(["-f", &ifname]);
        }
        PeerKind::Boringtun => {
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            cmd.args([
                "-f",
                "--disable-drop-privileges",
                "--threads",
                &threads.to_string(),
                "-v",
                "error",
                &ifname,
            ]);
        }
        PeerKind::Gotatun => {
            cmd.args(["-f", "--disable-drop-privileges", "-v", "error", &ifname]);
        }
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(BenchError::io("log fd"))?)
        .stderr(log)
        .spawn()
        .map_err(BenchError::io(format!("starting {}", k.program())))?;
    let mut t = TunnelProc {
        child: ChildGuard(child),
        log: log_path,
        ifname: ifname.clone(),
        engine: false,
    };
    let ready = wait_for(Duration::from_secs(10), || {
        if !t.child.running() {
            return Some(false);
        }
        let link = e.ns.ip(&["link", "show", &ifname]).is_ok();
        (link && sock.exists()).then_some(true)
    });
    if ready != Some(true) {
        return Err(BenchError::Setup(format!(
            "{} did not create {ifname} and its UAPI socket: {}",
            k.program(),
            tail(&t.log_text(), 20)
        )));
    }
    let key = ctx.private.join(format!("{ifname}.key"));
    write_private(&key, &e.secret)?;
    let key_s = key.to_string_lossy().into_owned();
    let port = LISTEN_PORT.to_string();
    let endpoint = format!("{}:{LISTEN_PORT}", e.peer_underlay);
    let allowed = format!("{}/32", e.peer_overlay);
    run(e.ns.command("wg").args([
        "set",
        &ifname,
        "private-key",
        &key_s,
        "listen-port",
        &port,
        "peer",
        &e.peer_public,
        "endpoint",
        &endpoint,
        "allowed-ips",
        &allowed,
    ]))?;
    e.ns.ip(&["addr", "add", &format!("{}/24", e.addr), "dev", &ifname])?;
    e.ns.ip(&["link", "set", &ifname, "mtu", &MTU.to_string(), "up"])?;
    Ok(t)
}
