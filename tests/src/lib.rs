//! Test harness: network namespaces, veth pairs and processes that clean up after themselves.
//!
//! Every name carries a per-process unique suffix, everything is torn down in `Drop`, and a test
//! that needs root fails (rather than skips) when `CI=true`. Addresses follow the project's
//! rules: underlay 198.18.0.0/15 and fd00::/8, overlay 100.64.0.0/10 and fd00::/8.
#![warn(missing_docs)]

use std::fs::File;
use std::io;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Whether this run is CI (`CI=true`), where missing prerequisites are failures.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Checks a prerequisite. Returns `true` when it is met. When it is not: panics under CI,
/// otherwise prints why the test is skipped and returns `false`.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if is_ci() {
        panic!("prerequisite missing under CI=true: {what}");
    }
    eprintln!("SKIPPED (not CI): prerequisite missing: {what}");
    false
}

/// Root plus the `ip` tool: what every netns test needs.
pub fn require_netns() -> bool {
    require(
        nix::unistd::geteuid().is_root(),
        "root (network namespaces)",
    ) && require(tool_exists("ip"), "`ip` from iproute2")
}

/// Whether a command is on PATH.
pub fn tool_exists(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Netns tests share `/var/run/wireguard` and the host's CPU: run them one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A name unique to this process and call: `{prefix}{pid%100000}x{n}`, at most 15 bytes
/// (the interface-name limit) for prefixes up to 4 bytes.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

/// Runs a command, failing with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// Runs `ip ARGS...`.
pub fn ip(args: &[&str]) -> io::Result<Output> {
    run(Command::new("ip").args(args))
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `ut{unique}` with loopback up.
    pub fn new() -> io::Result<Netns> {
        let name = unique_name("utn");
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `Command` that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `ip ARGS...` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> io::Result<Output> {
        let mut c = Command::new("ip");
        c.args(["-n", &self.name]).args(args);
        run(&mut c)
    }

    /// Runs `f` on a fresh thread that has entered this namespace, so sockets it opens live
    /// there. The calling thread's namespace is untouched.
    pub fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<std::thread::JoinHandle<T>> {
        let file = File::open(format!("/run/netns/{}", self.name))?;
        Ok(std::thread::spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("setns into test namespace");
            f()
        }))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Two namespaces joined by a veth pair with underlay addresses:
/// `a` = 198.18.{n}.1/24 + fd00:18:{n}::1/64, `b` = .2 / ::2.
#[derive(Debug)]
pub struct VethPair {
    /// Side A.
    pub a: Netns,
    /// Side B.
    pub b: Netns,
    /// veth name in A.
    pub a_dev: String,
    /// veth name in B.
    pub b_dev: String,
    /// Third octet / IPv6 group used for the underlay addresses.
    pub subnet: u8,
}

impl VethPair {
    /// Creates both namespaces and the link, addresses configured and up.
    pub fn new() -> io::Result<VethPair> {
        let a = Netns::new()?;
        let b = Netns::new()?;
        let a_dev = unique_name("va");
        let b_dev = unique_name("vb");
        let subnet = (std::process::id() % 200) as u8 + 1;
        ip(&[
            "link",
            "add",
            &a_dev,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            &b_dev,
            "netns",
            b.name(),
        ])?;
        for (ns, dev, host) in [(&a, &a_dev, 1), (&b, &b_dev, 2)] {
            ns.ip(&[
                "addr",
                "add",
                &format!("198.18.{subnet}.{host}/24"),
                "dev",
                dev,
            ])?;
            ns.ip(&[
                "addr",
                "add",
                &format!("fd00:18:{subnet}::{host}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        Ok(VethPair {
            a,
            b,
            a_dev,
            b_dev,
            subnet,
        })
    }

    /// Underlay IPv4 address of side A (`host` = 1) or B (`host` = 2).
    pub fn v4(&self, host: u8) -> String {
        format!("198.18.{}.{host}", self.subnet)
    }

    /// Underlay IPv6 address of side A (`host` = 1) or B (`host` = 2).
    pub fn v6(&self, host: u8) -> String {
        format!("fd00:18:{}::{host}", self.subnet)
    }
}

/// A child process killed (by its PID, which we started) and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Sends SIGTERM and waits up to `timeout` for exit; returns the exit status if it exited.
    pub fn terminate(
        &mut self,
        timeout: std::time::Duration,
    ) -> io::Result<Option<std::process::ExitStatus>> {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(st) = self.0.try_wait()? {
                return Ok(Some(st));
            }
            if std::time::Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_interface_limit() {
        let a = unique_name("utn");
        let b = unique_name("utn");
        assert_ne!(a, b);
        assert!(a.len() <= 15, "{a}");
    }

    #[test]
    fn veth_pair_pings_and_cleans_up() {
        if !require_netns() || !require(tool_exists("ping"), "ping (iputils-ping)") {
            return;
        }
        let _g = serial();
        let (na, nb);
        {
            let pair = VethPair::new().unwrap();
            na = pair.a.name().to_owned();
            nb = pair.b.name().to_owned();
            let out = pair
                .a
                .command("ping")
                .args(["-c", "1", "-W", "2", &pair.v4(2)])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let peer = pair.v4(2);
            let got = pair
                .b
                .run_in(move || {
                    let s = std::net::UdpSocket::bind("0.0.0.0:40000").unwrap();
                    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                        .unwrap();
                    let mut buf = [0u8; 16];
                    s.recv(&mut buf).map(|n| buf[..n].to_vec())
                })
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(100));
            pair.a
                .run_in(move || {
                    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                    s.send_to(b"hello", (peer.as_str(), 40000)).unwrap();
                })
                .unwrap()
                .join()
                .unwrap();
            assert_eq!(got.join().unwrap().unwrap(), b"hello");
        }
        let list = String::from_utf8(ip(&["netns", "list"]).unwrap().stdout).unwrap();
        assert!(!list.contains(&na) && !list.contains(&nb), "{list}");
    }
}

/// The optimised `uring-tunnel` binary (debug crypto is far too slow for real transfers),
/// built once per test process with `cargo build --release -p uring-tunnel`.
pub fn tunnel_binary() -> std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_owned();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "-p", "uring-tunnel", "--quiet"])
            .current_dir(&root)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the release binary failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("release").join("uring-tunnel")
    })
    .clone()
}

/// A `uring-tunnel run` process inside a namespace; SIGTERM and reaped on drop.
#[derive(Debug)]
pub struct Tunnel {
    child: ChildGuard,
    /// Interface name.
    pub ifname: String,
    stderr_path: std::path::PathBuf,
    _dir: TempDir,
}

impl Tunnel {
    /// Writes `config` to a file named after `ifname` and runs it in `ns` with `extra` args.
    /// Returns once the interface exists and is up (or fails after 10 s).
    pub fn start(ns: &Netns, ifname: &str, config: &str, extra: &[&str]) -> io::Result<Tunnel> {
        let dir = TempDir::new()?;
        let conf = dir.path().join(format!("{ifname}.conf"));
        std::fs::write(&conf, config)?;
        let stderr_path = dir.path().join("stderr");
        let stderr = File::create(&stderr_path)?;
        let child = ns
            .command(tunnel_binary().to_str().expect("utf-8 path"))
            .arg("run")
            .arg("--config")
            .arg(&conf)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        let mut t = Tunnel {
            child: ChildGuard(child),
            ifname: ifname.to_owned(),
            stderr_path,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if t.log().contains(" up: ") {
                return Ok(t);
            }
            if let Some(st) = t.child.0.try_wait()? {
                return Err(io::Error::other(format!(
                    "uring-tunnel exited ({st}): {}",
                    t.log()
                )));
            }
            if std::time::Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "uring-tunnel did not come up: {}",
                    t.log()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGTERM, wait, and return (exit status, full log).
    pub fn stop(mut self) -> (Option<std::process::ExitStatus>, String) {
        let st = self
            .child
            .terminate(std::time::Duration::from_secs(10))
            .ok()
            .flatten();
        (st, self.log())
    }
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system temp dir.
    pub fn new() -> io::Result<TempDir> {
        let p = std::env::temp_dir().join(unique_name("uring-tunnel-test-"));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh key pair as (private base64, public base64), made by the binary under test.
pub fn keypair() -> (String, String) {
    use std::io::Write as _;
    let bin = tunnel_binary();
    let private = Command::new(&bin).arg("genkey").output().expect("genkey");
    let private = String::from_utf8(private.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let mut child = Command::new(&bin)
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("pubkey");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(private.as_bytes())
        .expect("write key");
    let public = child.wait_with_output().expect("pubkey output");
    (
        private,
        String::from_utf8(public.stdout)
            .expect("utf-8")
            .trim()
            .to_owned(),
    )
}

/// Streams `bytes` of deterministic pseudo-random data from a thread in `from` to a listener in
/// `to` at `addr` (already reachable through the tunnel); returns the sha256 of what was sent
/// and of what was received. Bounded by `timeout`.
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    addr: std::net::SocketAddr,
    bytes: u64,
    timeout: std::time::Duration,
) -> io::Result<([u8; 32], [u8; 32])> {
    use sha2::Digest as _;
    use std::io::{Read as _, Write as _};
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let listen = match addr {
        std::net::SocketAddr::V4(_) => std::net::SocketAddr::from(([0, 0, 0, 0], addr.port())),
        std::net::SocketAddr::V6(_) => {
            std::net::SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, addr.port()))
        }
    };
    let receiver = to.run_in(move || -> io::Result<[u8; 32]> {
        let l = std::net::TcpListener::bind(listen)?;
        let _ = ready_tx.send(());
        let (mut s, _) = l.accept()?;
        s.set_read_timeout(Some(timeout))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finalize().into())
    })?;
    ready_rx
        .recv_timeout(std::time::Duration::from_secs(5))
        .map_err(|_| io::Error::other("receiver did not start"))?;
    let sender = from.run_in(move || -> io::Result<[u8; 32]> {
        let mut s =
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10))?;
        s.set_write_timeout(Some(timeout))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut left = bytes;
        while left > 0 {
            for chunk in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            let n = left.min(buf.len() as u64) as usize;
            s.write_all(&buf[..n])?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        Ok(h.finalize().into())
    })?;
    let sent = sender
        .join()
        .map_err(|_| io::Error::other("sender panicked"))??;
    let received = receiver
        .join()
        .map_err(|_| io::Error::other("receiver panicked"))??;
    Ok((sent, received))
}
