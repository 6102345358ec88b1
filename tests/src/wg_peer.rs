//! Other WireGuard implementations as test peers: `wireguard-go` and `boringtun-cli`, both
//! userspace daemons configured through their UAPI socket with the `wg` tool.
//!
//! The UAPI socket `/var/run/wireguard/<ifname>.sock` is a file, not per-netns: interface names
//! must be unique across everything running on the host (use [`crate::unique_name`]).

use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::tunnel::{TestDir, wait_for};
use crate::{ChildGuard, Netns, run};

/// Which implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerImpl {
    /// `wireguard-go` (Debian package `wireguard-go`).
    WireguardGo,
    /// `boringtun-cli` (`cargo install boringtun-cli --locked`).
    Boringtun,
}

impl PeerImpl {
    /// The program on PATH.
    pub fn program(self) -> &'static str {
        match self {
            PeerImpl::WireguardGo => "wireguard-go",
            PeerImpl::Boringtun => "boringtun-cli",
        }
    }

    /// A short interface-name prefix (≤ 4 bytes).
    pub fn prefix(self) -> &'static str {
        match self {
            PeerImpl::WireguardGo => "wgo",
            PeerImpl::Boringtun => "btn",
        }
    }

    fn command(self, ns: &Netns, ifname: &str) -> Command {
        let mut c = ns.command(self.program());
        match self {
            PeerImpl::WireguardGo => {
                c.args(["-f", ifname]).env("LOG_LEVEL", "verbose");
            }
            PeerImpl::Boringtun => {
                // Its clap arguments also read WG_* variables: pin the ones that matter and
                // drop the rest so the caller's environment cannot change the daemon.
                for v in [
                    "WG_SUDO",
                    "WG_UAPI_FD",
                    "WG_TUN_FD",
                    "WG_LOG_FILE",
                    "WG_THREADS",
                ] {
                    c.env_remove(v);
                }
                c.env("WG_LOG_LEVEL", "info").args([
                    "-f",
                    "--disable-drop-privileges",
                    "--threads",
                    "2",
                    ifname,
                ]);
            }
        }
        c
    }
}

/// What [`WgPeer::configure`] sets.
#[derive(Debug, Clone)]
pub struct WgPeerConfig<'a> {
    /// The daemon's own private key (base64).
    pub private_key: &'a str,
    /// Its UDP listen port.
    pub listen_port: u16,
    /// Its interface addresses with prefix, e.g. `100.64.1.2/24`.
    pub addresses: &'a [String],
    /// Interface MTU.
    pub mtu: u16,
    /// The remote peer's public key.
    pub peer_public_key: &'a str,
    /// A preshared key (base64) for that peer, if any.
    pub preshared_key: Option<&'a str>,
    /// The remote peer's endpoint, if this side should know it (and so may initiate).
    pub peer_endpoint: Option<String>,
    /// The remote peer's allowed IPs.
    pub peer_allowed_ips: &'a [String],
}

/// A running userspace WireGuard daemon in a namespace; stopped and its UAPI socket removed on
/// drop.
#[derive(Debug)]
pub struct WgPeer {
    kind: PeerImpl,
    child: ChildGuard,
    ifname: String,
    netns: String,
    log: PathBuf,
}

impl WgPeer {
    /// Starts `kind` in `ns` creating `ifname`, logging to `{ifname}.log` in `dir`, and waits
    /// for its interface and UAPI socket.
    pub fn start(kind: PeerImpl, ns: &Netns, dir: &TestDir, ifname: &str) -> io::Result<WgPeer> {
        let sock = sock_path(ifname);
        // A leftover of a crashed earlier run with the same unique name would confuse `wg`.
        let _ = std::fs::remove_file(&sock);
        let (log_file, log) = dir.log_file(ifname)?;
        let child = kind
            .command(ns, ifname)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()?;
        let mut p = WgPeer {
            kind,
            child: ChildGuard(child),
            ifname: ifname.to_owned(),
            netns: ns.name().to_owned(),
            log,
        };
        let ready = wait_for(Duration::from_secs(10), || {
            if let Ok(Some(st)) = p.child.0.try_wait() {
                return Some(Err(io::Error::other(format!(
                    "{} exited early ({st}): {}",
                    kind.program(),
                    p.log_text()
                ))));
            }
            let link = Command::new("ip")
                .args(["-n", &p.netns, "link", "show", &p.ifname])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            (link && sock.exists()).then_some(Ok(()))
        });
        match ready {
            Some(r) => r.map(|()| p),
            None => Err(io::Error::other(format!(
                "{} did not create {} and its UAPI socket within 10 s: {}",
                kind.program(),
                p.ifname,
                p.log_text()
            ))),
        }
    }

    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Everything the daemon logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `wg ARGS...` in the daemon's namespace and returns stdout.
    pub fn wg(&self, args: &[&str]) -> io::Result<String> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, "wg"]).args(args);
        let out = run(&mut c)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sets key, port and the one peer with `wg set`, then addresses, MTU and link up.
    pub fn configure(&self, dir: &TestDir, cfg: &WgPeerConfig<'_>) -> io::Result<()> {
        let key = dir.write_private(&format!("{}.key", self.ifname), cfg.private_key)?;
        let key = key
            .to_str()
            .ok_or_else(|| io::Error::other("non-UTF-8 path"))?;
        let port = cfg.listen_port.to_string();
        let allowed = cfg.peer_allowed_ips.join(",");
        let mut args = vec![
            "set",
            &self.ifname,
            "private-key",
            key,
            "listen-port",
            &port,
            "peer",
            cfg.peer_public_key,
            "allowed-ips",
            &allowed,
        ];
        let psk_path;
        if let Some(psk) = cfg.preshared_key {
            psk_path = dir.write_private(&format!("{}.psk", self.ifname), psk)?;
            args.extend([
                "preshared-key",
                psk_path
                    .to_str()
                    .ok_or_else(|| io::Error::other("non-UTF-8 path"))?,
            ]);
        }
        if let Some(ep) = &cfg.peer_endpoint {
            args.extend(["endpoint", ep.as_str()]);
        }
        self.wg(&args)?;
        let ns = |a: &[&str]| {
            let mut c = Command::new("ip");
            c.args(["-n", &self.netns]).args(a);
            run(&mut c)
        };
        for a in cfg.addresses {
            if a.contains(':') {
                ns(&["addr", "add", a, "dev", &self.ifname, "nodad"])?;
            } else {
                ns(&["addr", "add", a, "dev", &self.ifname])?;
            }
        }
        ns(&[
            "link",
            "set",
            &self.ifname,
            "mtu",
            &cfg.mtu.to_string(),
            "up",
        ])?;
        Ok(())
    }

    /// The endpoint the daemon currently has for `peer_public_key`, from `wg show endpoints`
    /// (`None` when it has none).
    pub fn endpoint_of(&self, peer_public_key: &str) -> io::Result<Option<String>> {
        let out = self.wg(&["show", &self.ifname, "endpoints"])?;
        Ok(out.lines().find_map(|l| {
            let (k, ep) = l.split_once('\t')?;
            (k == peer_public_key && ep != "(none)").then(|| ep.trim().to_owned())
        }))
    }

    /// Bytes received from / sent to `peer_public_key`, from `wg show transfer`.
    pub fn transfer_of(&self, peer_public_key: &str) -> io::Result<(u64, u64)> {
        let out = self.wg(&["show", &self.ifname, "transfer"])?;
        out.lines()
            .find_map(|l| {
                let mut f = l.split('\t');
                (f.next()? == peer_public_key).then_some(())?;
                Some((
                    f.next()?.trim().parse().ok()?,
                    f.next()?.trim().parse().ok()?,
                ))
            })
            .ok_or_else(|| io::Error::other(format!("no transfer line for the peer: {out}")))
    }

    /// SIGTERM, then waits up to 5 s; reports whether it exited by itself.
    pub fn stop(mut self) -> Result<(), String> {
        match self.child.terminate(Duration::from_secs(5)) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(format!("{} ignored SIGTERM for 5 s", self.kind.program())),
            Err(e) => Err(format!("waiting for {}: {e}", self.kind.program())),
        }
    }
}

impl Drop for WgPeer {
    fn drop(&mut self) {
        if matches!(self.child.0.try_wait(), Ok(None)) {
            let _ = self.child.0.kill();
            let _ = self.child.0.wait();
        }
        let _ = std::fs::remove_file(sock_path(&self.ifname));
    }
}

fn sock_path(ifname: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"))
}
