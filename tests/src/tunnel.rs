//! The `uring-tunnel` binary under test: an optimised build made once per test process, keys,
//! and a running tunnel inside a namespace that is stopped (and checked) on demand.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{ChildGuard, Netns, run, unique_name};

/// The workspace root (the parent of this crate's manifest directory).
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Path of an optimised `uring-tunnel` binary.
///
/// `URING_TUNNEL_BIN` names a ready binary; otherwise the first call runs
/// `cargo build --release -p uring-tunnel` (a no-op when it is up to date) and later calls reuse
/// the result. Debug builds encrypt too slowly for bulk transfers, hence `--release`.
pub fn uring_tunnel_bin() -> Result<&'static Path, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("URING_TUNNEL_BIN") {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(format!("URING_TUNNEL_BIN={} is not a file", p.display()))
            };
        }
        let root = workspace_root();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        // `cargo test` gives this process the variables cargo sets for a crate it compiles
        // (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...); dependencies' build scripts (ring) watch some
        // of them, so passing them on would make this build differ from a plain
        // `cargo build --release` and rebuild everything each time the two alternate.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
            ]
            .iter()
            .any(|p| k.starts_with(p))
                || k == "OUT_DIR"
            {
                cmd.env_remove(k.as_ref());
            }
        }
        let out = cmd
            .args([
                "build",
                "--release",
                "--locked",
                "--quiet",
                "-p",
                "uring-tunnel",
            ])
            .current_dir(&root)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running cargo build: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo build --release -p uring-tunnel failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let bin = root.join(target).join("release").join("uring-tunnel");
        if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("built, but {} is missing", bin.display()))
        }
    })
    .as_ref()
    .map(PathBuf::as_path)
    .map_err(Clone::clone)
}

/// A scratch directory for configs, keys and logs; removed on drop. When dropped during a panic
/// it prints every `*.log` file in it first, so a failing test shows what the daemons said.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Creates `$TMPDIR/uring-tunnel-test-{unique}`.
    pub fn new() -> io::Result<TestDir> {
        let path = std::env::temp_dir().join(format!("uring-tunnel-test-{}", unique_name("d")));
        fs::create_dir_all(&path)?;
        Ok(TestDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` in the directory, readable by the owner only.
    pub fn write_private(&self, name: &str, contents: &str) -> io::Result<PathBuf> {
        let p = self.path.join(name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p)?;
        f.write_all(contents.as_bytes())?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600))?;
        Ok(p)
    }

    /// Creates (truncates) a log file in the directory and returns it with its path.
    pub fn log_file(&self, name: &str) -> io::Result<(fs::File, PathBuf)> {
        let p = self.path.join(format!("{name}.log"));
        Ok((fs::File::create(&p)?, p))
    }

    /// Prints every log file in the directory to stderr.
    pub fn dump_logs(&self) {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for p in logs {
            let text = fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!("----- {} (last {} lines) -----", p.display(), tail.len());
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// `uring-tunnel genkey`.
pub fn genkey() -> io::Result<String> {
    let bin = uring_tunnel_bin().map_err(io::Error::other)?;
    let out = run(Command::new(bin).arg("genkey"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs `program` with `input` (plus a newline; nothing when empty) on stdin and returns its
/// trimmed stdout.
pub fn pipe_through(program: &Path, args: &[&str], input: &str) -> io::Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("no stdin"))?;
    if !input.is_empty() {
        // A program that does not read its input (or exits first) closes the pipe: its exit
        // status below is what counts, not EPIPE here.
        match stdin.write_all(format!("{input}\n").as_bytes()) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e),
            _ => {}
        }
    }
    drop(stdin);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{} {args:?} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `uring-tunnel pubkey` of a private key.
pub fn pubkey(private: &str) -> io::Result<String> {
    let bin = uring_tunnel_bin().map_err(io::Error::other)?;
    pipe_through(bin, &["pubkey"], private)
}

/// Polls `cond` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `uring-tunnel run` process inside a namespace, killed on drop if still running.
#[derive(Debug)]
pub struct UringTunnel {
    child: ChildGuard,
    log: PathBuf,
    ifname: String,
    netns: String,
}

impl UringTunnel {
    /// Writes `config` to `{ifname}.conf` in `dir`, starts `uring-tunnel run` in `ns` with
    /// `extra_args` (e.g. `--engine epoll`), logging to `{ifname}.log`, and waits until it says
    /// the interface is up.
    pub fn start(
        ns: &Netns,
        dir: &TestDir,
        ifname: &str,
        config: &str,
        extra_args: &[&str],
    ) -> io::Result<UringTunnel> {
        let bin = uring_tunnel_bin().map_err(io::Error::other)?;
        let conf = dir.write_private(&format!("{ifname}.conf"), config)?;
        let (log_file, log) = dir.log_file(ifname)?;
        let child = ns
            .command(
                bin.to_str()
                    .ok_or_else(|| io::Error::other("non-UTF-8 path"))?,
            )
            .arg("run")
            .arg("--config")
            .arg(&conf)
            .args(["--interface", ifname])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()?;
        let mut t = UringTunnel {
            child: ChildGuard(child),
            log,
            ifname: ifname.to_owned(),
            netns: ns.name().to_owned(),
        };
        let up = wait_for(Duration::from_secs(10), || {
            if let Ok(Some(st)) = t.child.0.try_wait() {
                return Some(Err(io::Error::other(format!(
                    "uring-tunnel exited early ({st}): {}",
                    t.log_text()
                ))));
            }
            t.log_text().contains(" up: ").then_some(Ok(()))
        });
        match up {
            Some(r) => r.map(|()| t),
            None => Err(io::Error::other(format!(
                "uring-tunnel did not come up within 10 s: {}",
                t.log_text()
            ))),
        }
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id (of `uring-tunnel` itself: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// SIGKILL (no clean-up by the process) and reap; returns the exit status.
    pub fn kill(mut self) -> io::Result<std::process::ExitStatus> {
        self.child.0.kill()?;
        self.child.0.wait()
    }

    /// Sends SIGTERM and checks the shutdown contract: exit status 0 within 10 s, a stats line
    /// (`tun_rx=...`) in the log, and the interface gone. Returns the stats line.
    pub fn stop(mut self) -> Result<String, String> {
        let status = self
            .child
            .terminate(Duration::from_secs(10))
            .map_err(|e| format!("waiting for uring-tunnel: {e}"))?;
        let log = self.log_text();
        match status {
            Some(st) if st.success() => {}
            Some(st) => return Err(format!("uring-tunnel exited with {st}: {log}")),
            None => return Err(format!("uring-tunnel ignored SIGTERM for 10 s: {log}")),
        }
        let stats = log
            .lines()
            .find(|l| l.contains("tun_rx="))
            .ok_or_else(|| format!("no stats line at shutdown: {log}"))?
            .to_owned();
        let still_there = Command::new("ip")
            .args(["-n", &self.netns, "link", "show", &self.ifname])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if still_there {
            return Err(format!("{} still exists after shutdown", self.ifname));
        }
        Ok(stats)
    }
}

/// Reads one counter (`name=value`) from a stats line; `None` when absent.
pub fn stat(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_reads_counters() {
        let l = "uring-tunnel: ut1: tun_rx=12 tun_tx=3 drop_replay=7";
        assert_eq!(stat(l, "tun_rx"), Some(12));
        assert_eq!(stat(l, "tun_tx"), Some(3));
        assert_eq!(stat(l, "drop_replay"), Some(7));
        assert_eq!(stat(l, "rx"), None);
        assert_eq!(stat(l, "udp_rx"), None);
    }
}
