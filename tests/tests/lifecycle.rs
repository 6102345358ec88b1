//! Process lifecycle of `uring-tunnel run`: SIGTERM drains and removes the device and its
//! routes; after SIGKILL the device is gone and a restart under the same name works; a config
//! file others can read is refused with the fix; `--user nobody` drops root and keeps working.
//!
//! Root tests in namespaces they create: under `CI=true` a missing prerequisite fails them,
//! otherwise they skip.

use std::process::Stdio;
use std::time::{Duration, Instant};

use uring_tunnel_tests::tunnel::{TestDir, UringTunnel, genkey, pubkey, stat, wait_for};
use uring_tunnel_tests::{Netns, VethPair, require, require_netns, serial, tool_exists};

fn keypair() -> (String, String) {
    let private = genkey().expect("genkey");
    let public = pubkey(&private).expect("pubkey");
    (private, public)
}

fn prerequisites() -> bool {
    require_netns() && require(tool_exists("ping"), "ping (iputils-ping)")
}

/// A veth pair with the configs of both sides; tunnels are started by the tests.
struct Setup {
    veth: VethPair,
    dir: TestDir,
    conf_a: String,
    conf_b: String,
    ifa: String,
    ifb: String,
    n: u8,
}

impl Setup {
    fn new() -> Setup {
        let veth = VethPair::new().expect("veth pair");
        let n = veth.subnet;
        let (ka, pa) = keypair();
        let (kb, pb) = keypair();
        let conf = |key: &str, me: u8, peer_pub: &str, peer: u8, ep: String| {
            format!(
                "[Interface]\nPrivateKey = {key}\nListenPort = 51820\nAddress = 100.64.{n}.{me}/24\n\n[Peer]\nPublicKey = {peer_pub}\nEndpoint = {ep}:51820\nAllowedIPs = 100.64.{n}.{peer}/32, 100.65.{n}.0/24\n"
            )
        };
        let conf_a = conf(&ka, 1, &pb, 2, veth.v4(2));
        let conf_b = conf(&kb, 2, &pa, 1, veth.v4(1));
        Setup {
            dir: TestDir::new().expect("test dir"),
            conf_a,
            conf_b,
            ifa: format!("fza{n}"),
            ifb: format!("fzb{n}"),
            n,
            veth,
        }
    }

    fn start_a(&self, extra: &[&str]) -> UringTunnel {
        UringTunnel::start(&self.veth.a, &self.dir, &self.ifa, &self.conf_a, extra)
            .expect("tunnel A")
    }

    fn start_b(&self, extra: &[&str]) -> UringTunnel {
        UringTunnel::start(&self.veth.b, &self.dir, &self.ifb, &self.conf_b, extra)
            .expect("tunnel B")
    }

    /// Pings B's inner address from A (the first echo may wait for the handshake).
    fn ping(&self, logs: &[&UringTunnel]) {
        let dst = format!("100.64.{}.2", self.n);
        let out = self
            .veth
            .a
            .command("ping")
            .args(["-c", "3", "-i", "0.2", "-W", "3", "-w", "10", &dst])
            .output()
            .expect("ping");
        let text = String::from_utf8_lossy(&out.stdout);
        let logs: Vec<String> = logs.iter().map(|t| t.log_text()).collect();
        assert!(
            out.status.success() && !text.contains(" 0 received"),
            "ping {dst} failed: {text}\nlogs: {logs:#?}"
        );
    }
}

fn link_exists(ns: &Netns, ifname: &str) -> bool {
    ns.command("ip")
        .args(["link", "show", ifname])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn routes(ns: &Netns) -> String {
    let out = ns.ip(&["route", "show"]).expect("ip route");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn sigterm_drains_and_removes_device_and_routes() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let s = Setup::new();
    let b = s.start_b(&[]);
    let a = s.start_a(&["--cores", "2"]);
    s.ping(&[&a, &b]);
    let r = routes(&s.veth.a);
    assert!(
        r.contains(&format!("100.65.{}.0/24 dev {}", s.n, s.ifa)),
        "{r}"
    );

    let t0 = Instant::now();
    let stats = a.stop().unwrap_or_else(|e| panic!("A: {e}"));
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
    // The pings went through both shards' counters and were accounted before exit.
    assert!(stat(&stats, "tun_rx").is_some_and(|v| v >= 3), "{stats}");
    assert!(stat(&stats, "udp_rx").is_some_and(|v| v >= 3), "{stats}");
    assert!(!link_exists(&s.veth.a, &s.ifa));
    let r = routes(&s.veth.a);
    assert!(!r.contains(&s.ifa), "routes left behind: {r}");
    b.stop().unwrap_or_else(|e| panic!("B: {e}"));
}

#[test]
fn sigkill_leaves_no_device_and_restart_works() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let s = Setup::new();
    let b = s.start_b(&[]);
    let a = s.start_a(&[]);
    s.ping(&[&a, &b]);
    let st = a.kill().expect("SIGKILL");
    assert!(!st.success());
    // A non-persistent TUN disappears with its last queue fd, i.e. with the process.
    let gone = wait_for(Duration::from_secs(3), || {
        (!link_exists(&s.veth.a, &s.ifa)).then_some(())
    });
    assert!(gone.is_some(), "{} survived SIGKILL", s.ifa);
    assert!(!routes(&s.veth.a).contains(&s.ifa));

    // Same name, same port, same keys: up again and passing traffic. B still holds the old
    // session; the new A handshakes afresh.
    let a = s.start_a(&[]);
    s.ping(&[&a, &b]);
    a.stop().unwrap_or_else(|e| panic!("A after restart: {e}"));
    b.stop().unwrap_or_else(|e| panic!("B: {e}"));
}

#[test]
fn config_readable_by_others_is_refused_with_the_fix() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let ns = Netns::new().expect("netns");
    let dir = TestDir::new().expect("test dir");
    let (key, _) = keypair();
    let conf = dir
        .write_private(
            "fzperm.conf",
            &format!("[Interface]\nPrivateKey = {key}\nAddress = 100.64.250.1/24\n"),
        )
        .expect("config");
    let bin = uring_tunnel_tests::tunnel::uring_tunnel_bin().expect("binary");
    for mode in [0o644, 0o640, 0o604, 0o660] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = ns
            .command(bin.to_str().unwrap())
            .args(["run", "--config"])
            .arg(&conf)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "mode {mode:o} accepted: {err}");
        assert!(err.contains(&format!("mode {mode:04o}")), "{err}");
        assert!(
            err.contains(&format!("chmod 600 {}", conf.display())),
            "{err}"
        );
        assert!(!err.contains(&key), "the key was printed: {err}");
        assert!(!link_exists(&ns, "fzperm"), "a device was created");
    }
}

/// `Uid:`/`Gid:` lines of /proc/PID/status: real, effective, saved, filesystem.
fn ids(pid: u32, field: &str) -> Vec<u32> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    st.lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cap_eff(pid: u32) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    st.lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("CapEff")
}

#[test]
fn user_nobody_drops_root_and_keeps_working() {
    if !prerequisites() {
        return;
    }
    let Some(nobody) = nix::unistd::User::from_name("nobody").ok().flatten() else {
        require(false, "a `nobody` user");
        return;
    };
    let _g = serial();
    let s = Setup::new();
    let b = s.start_b(&[]);
    let a = s.start_a(&["--user", "nobody", "--cores", "2"]);
    let pid = a.pid();
    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    assert_eq!(ids(pid, "Uid:"), vec![uid; 4], "{}", a.log_text());
    assert_eq!(ids(pid, "Gid:"), vec![gid; 4]);
    assert_eq!(cap_eff(pid), 0, "capabilities left");
    // Every thread (shards, timer) runs as nobody too.
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let tid: u32 = t.unwrap().file_name().to_string_lossy().parse().unwrap();
        assert_eq!(ids(tid, "Uid:"), vec![uid; 4], "thread {tid}");
    }
    assert!(a.log_text().contains("running as uid"), "{}", a.log_text());
    // Traffic both ways, a rekey-free handshake initiated by each side.
    s.ping(&[&a, &b]);
    let dst = format!("100.64.{}.1", s.n);
    let out = s
        .veth
        .b
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "3", "-w", "10", &dst])
        .output()
        .expect("ping");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Clean shutdown without root: exit 0, device gone (with the last queue fd).
    a.stop()
        .unwrap_or_else(|e| panic!("A (--user nobody): {e}"));
    assert!(!routes(&s.veth.a).contains(&s.ifa));
    b.stop().unwrap_or_else(|e| panic!("B: {e}"));
}
