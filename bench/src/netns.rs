//! The bench's own harness: two network namespaces joined by a veth, set up the way the
//! design notes say for a fast underlay (GRO, UDP GRO forwarding, threaded NAPI), torn down on
//! drop; and a child-process guard.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::{BenchError, Result};

/// Whether a program is on PATH; returns its path.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs a command, failing with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(BenchError::io(format!("running {cmd:?}")))?;
    if !out.status.success() {
        return Err(BenchError::Setup(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// Runs `ip ARGS...`.
pub fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace with loopback up.
    pub fn new(name: String) -> Result<Netns> {
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command running `program` inside the namespace (`ip netns exec` execs it, so the
    /// child's PID is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// `ip -n NS ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut c = Command::new("ip");
        c.args(["-n", &self.name]).args(args);
        run(&mut c)
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

/// One underlay setting and whether it took.
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    /// Namespace side (`a` or `b`).
    pub side: &'static str,
    /// What was set.
    pub what: String,
    /// `ok` or the error.
    pub result: String,
}

/// Two namespaces joined by a veth: `a` = 198.18.{subnet}.1/24 (traffic source), `b` = .2.
#[derive(Debug)]
pub struct Underlay {
    /// Source side.
    pub a: Netns,
    /// Sink side.
    pub b: Netns,
    /// veth in `a`.
    pub a_dev: String,
    /// veth in `b`.
    pub b_dev: String,
    /// Third octet of the addresses.
    pub subnet: u8,
    /// Offload settings applied, for the report.
    pub settings: Vec<Setting>,
}

impl Underlay {
    /// Creates the namespaces and the veth, and sets GRO, UDP GRO forwarding and threaded
    /// NAPI on both ends (each recorded in `settings`).
    pub fn new(tag: &str) -> Result<Underlay> {
        let pid = std::process::id() % 100_000;
        let a = Netns::new(format!("utbench-{tag}{pid}-a"))?;
        let b = Netns::new(format!("utbench-{tag}{pid}-b"))?;
        let a_dev = format!("vb{pid}a");
        let b_dev = format!("vb{pid}b");
        let subnet = (pid % 200) as u8 + 20;
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
        let mut settings = Vec::new();
        for (side, ns, dev, host) in [("a", &a, &a_dev, 1), ("b", &b, &b_dev, 2)] {
            ns.ip(&[
                "addr",
                "add",
                &format!("198.18.{subnet}.{host}/24"),
                "dev",
                dev,
            ])?;
            ns.ip(&["link", "set", dev, "up"])?;
            let mut record = |what: String, r: Result<()>| {
                settings.push(Setting {
                    side,
                    what,
                    result: match r {
                        Ok(()) => "ok".into(),
                        Err(e) => e.to_string(),
                    },
                })
            };
            let eth = if which("ethtool").is_some() {
                run(ns.command("ethtool").args([
                    "-K",
                    dev,
                    "gro",
                    "on",
                    "rx-udp-gro-forwarding",
                    "on",
                ]))
                .map(|_| ())
            } else {
                Err(BenchError::Setup("ethtool not on PATH".into()))
            };
            record(
                format!("ethtool -K {dev} gro on rx-udp-gro-forwarding on"),
                eth,
            );
            let threaded = run(ns
                .command("sh")
                .args(["-c", &format!("echo 1 > /sys/class/net/{dev}/threaded")]))
            .map(|_| ());
            record(format!("echo 1 > /sys/class/net/{dev}/threaded"), threaded);
        }
        Ok(Underlay {
            a,
            b,
            a_dev,
            b_dev,
            subnet,
            settings,
        })
    }

    /// Underlay address of side `a` (1) or `b` (2).
    pub fn v4(&self, host: u8) -> String {
        format!("198.18.{}.{host}", self.subnet)
    }

    /// Overlay address of side `a` (1) or `b` (2).
    pub fn overlay(&self, host: u8) -> String {
        format!("100.64.{}.{host}", self.subnet)
    }
}

/// A child process we started: SIGTERM/SIGKILL by its own PID and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// The PID.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits up to `timeout`; SIGKILL after that. Returns whether it exited by
    /// itself with status 0.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        if self.running() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.0.try_wait() {
                Ok(Some(st)) => return st.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = self.0.kill();
                    let _ = self.0.wait();
                    return false;
                }
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Polls `cond` every 10 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Writes a file readable by the owner only (keys, configs).
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(BenchError::io(format!("creating {}", path.display())))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)))
        .map_err(BenchError::io(format!("writing {}", path.display())))
}
