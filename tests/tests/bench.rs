//! `uring-tunnel bench` end to end: a short `--quick` run in the namespaces it creates, checked
//! through its `results.json`; and argument errors, which need no root.
//!
//! Root test: under `CI=true` a missing prerequisite fails it, otherwise it skips.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use uring_tunnel_tests::tunnel::uring_tunnel_bin;
use uring_tunnel_tests::{require_netns, serial, unique_name};

struct OutDir(PathBuf);

impl Drop for OutDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn median(v: &Value, key: &str) -> Option<f64> {
    v[key]["median"].as_f64()
}

fn result<'a>(json: &'a Value, test: &str, row: &str) -> &'a Value {
    json["results"]
        .as_array()
        .expect("results array")
        .iter()
        .find(|r| r["test"] == test && r["row"] == row)
        .unwrap_or_else(|| panic!("no result for {test}/{row}"))
}

#[test]
fn quick_bench_measures_veth_uring_and_epoll() {
    if !require_netns() {
        return;
    }
    let _g = serial();
    let bin = uring_tunnel_bin().expect("uring-tunnel binary");
    let out = OutDir(std::env::temp_dir().join(format!("ut-bench-{}", unique_name("o"))));
    let t0 = std::time::Instant::now();
    let run = Command::new(bin)
        .args([
            "bench",
            "--quick",
            "--tests",
            "tcp1,udp64,udp64fixed,rtt",
            "--duration",
            "0.6",
            "--warmup",
            "0.3",
            "--fixed-rate",
            "20000",
            "--out",
        ])
        .arg(&out.0)
        .output()
        .expect("running bench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench failed:\n{stdout}\n{stderr}");
    assert!(
        t0.elapsed().as_secs() < 60,
        "--quick with 4 tests took {:?}",
        t0.elapsed()
    );
    // Progress: one start and one result line per test run (4 tests × 3 rows).
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("] ") && l.contains(" rep 1/1:"))
            .count(),
        12,
        "{stderr}"
    );
    assert!(stdout.contains("| test | tunnel | Gb/s |"), "{stdout}");
    assert!(out.0.join("chart.svg").is_file());
    assert!(out.0.join("results.md").is_file());

    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.0.join("results.json")).unwrap())
            .expect("results.json parses");
    assert_eq!(json["rows"], serde_json::json!(["veth", "uring", "epoll"]));
    let failures: Vec<&Value> = json["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["error"].is_null())
        .collect();
    assert!(failures.is_empty(), "failed runs: {failures:?}");

    for row in ["veth", "uring", "epoll"] {
        let tcp = result(&json, "tcp1", row);
        let gbps = median(tcp, "gbps").unwrap();
        assert!(gbps > 0.05, "tcp1 {row}: {gbps} Gb/s");
        let udp = result(&json, "udp64", row);
        let pps = median(udp, "pps").unwrap();
        assert!(pps > 1_000.0, "udp64 {row}: {pps} pps");
        let loss = median(udp, "loss").unwrap();
        assert!((0.0..=1.0).contains(&loss), "udp64 {row}: loss {loss}");
        let fixed = result(&json, "udp64fixed", row);
        let offered = median(fixed, "offered_pps").unwrap();
        assert!(
            (15_000.0..=25_000.0).contains(&offered),
            "udp64fixed {row}: offered {offered} pps at 20000"
        );
        let loss = median(fixed, "loss").unwrap();
        assert!(loss < 0.5, "udp64fixed {row}: loss {loss} at 20 kpps");
        let rtt = median(result(&json, "rtt", row), "rtt_median_us").unwrap();
        assert!(rtt > 1.0 && rtt < 50_000.0, "rtt {row}: {rtt} µs");
        let host = median(fixed, "host_us_per_pkt").unwrap();
        assert!(
            host > 0.0 && host < 10_000.0,
            "udp64fixed {row}: host {host} µs/pkt"
        );
    }
    for row in ["uring", "epoll"] {
        for test in ["tcp1", "udp64fixed"] {
            let r = result(&json, test, row);
            let cpu = median(r, "us_per_pkt").unwrap();
            assert!(
                cpu > 0.0 && cpu < 1_000.0,
                "{test} {row}: {cpu} µs of tunnel CPU per packet"
            );
            let sc = median(r, "syscalls_per_pkt").unwrap();
            assert!(sc > 0.0 && sc < 10.0, "{test} {row}: {sc} syscalls/pkt");
            // TCP goes through TSO reads and GRO writes: more than one segment per read.
            if test == "tcp1" {
                let seg = median(r, "tun_segs_per_read").unwrap();
                assert!(seg > 1.0, "{test} {row}: {seg} segments per TUN read");
            }
        }
    }
    // The veth row has no tunnel: no tunnel CPU, but host CPU.
    assert!(result(&json, "tcp1", "veth")["us_per_pkt"].is_null());
    assert_eq!(json["underlay"].as_array().unwrap().len(), 4);
}

#[test]
fn bench_rejects_bad_arguments_before_anything_runs() {
    let bin = uring_tunnel_bin().expect("uring-tunnel binary");
    for (args, needle) in [
        (&["--tests", "tcp9"][..], "tcp9"),
        (&["--engines", "kqueue"][..], "kqueue"),
        (&["--peers", "openvpn"][..], "openvpn"),
        (&["--reps", "0"][..], "--reps"),
        (&["--duration", "0"][..], "--duration"),
    ] {
        let out = Command::new(bin)
            .arg("bench")
            .args(args)
            .args(["--out", "/nonexistent/never-created"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!std::path::Path::new("/nonexistent/never-created").exists());
    }
}
