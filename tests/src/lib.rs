//! Test harness: network namespaces, veth pairs and processes that clean up after themselves.
//!
//! Every name carries a per-process unique suffix, everything is torn down in `Drop`, and a test
//! that needs root fails (rather than skips) when `CI=true`. Addresses follow the project's
//! rules: underlay 198.18.0.0/15 and fd00::/8, overlay 100.64.0.0/10 and fd00::/8.
#![warn(missing_docs)]

pub mod flood;
pub mod impair;
pub mod transfer;
pub mod tunnel;
pub mod wg_peer;

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

    /// A third namespace `C` joined to side A by a second veth (a hub topology):
    /// A = 198.18.{m}.1/24, C = 198.18.{m}.3/24 with `m` = subnet + 100, both up.
    /// Returns `C` and `m`.
    pub fn attach_third(&self) -> io::Result<(Netns, u8)> {
        let c = Netns::new()?;
        let m = self.subnet.wrapping_add(100);
        let (dev_a, dev_c) = (unique_name("vh"), unique_name("vc"));
        ip(&[
            "link",
            "add",
            &dev_a,
            "netns",
            self.a.name(),
            "type",
            "veth",
            "peer",
            "name",
            &dev_c,
            "netns",
            c.name(),
        ])?;
        for (ns, dev, host) in [(&self.a, &dev_a, 1), (&c, &dev_c, 3)] {
            ns.ip(&["addr", "add", &format!("198.18.{m}.{host}/24"), "dev", dev])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        Ok((c, m))
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
