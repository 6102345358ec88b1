//! The binary's key and config commands, as a user runs them.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_uring-tunnel");

fn run_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    pipe(BIN, args, stdin)
}

/// `wg pubkey` of `key`.
fn wg_pubkey(key: &str) -> Vec<u8> {
    let out = pipe("wg", &["pubkey"], key);
    assert!(out.status.success());
    out.stdout
}

fn pipe(program: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn wg_available() -> bool {
    let ok = Command::new("wg").arg("--version").output().is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "wireguard-tools `wg` is required under CI=true"
        );
        eprintln!("SKIPPED (not CI): `wg` not installed");
    }
    ok
}

#[test]
fn genkey_pubkey_match_wireguard_tools() {
    if !wg_available() {
        return;
    }
    for _ in 0..5 {
        let key = Command::new(BIN).arg("genkey").output().unwrap();
        assert!(key.status.success());
        let key = String::from_utf8(key.stdout).unwrap();
        assert_eq!(key.len(), 45, "44 base64 chars + newline: {key:?}");
        let ours = run_with_stdin(&["pubkey"], &key);
        assert!(ours.status.success());
        assert_eq!(ours.stdout, wg_pubkey(&key));
    }
    // And a key from `wg genkey` through our pubkey.
    let key = Command::new("wg").arg("genkey").output().unwrap().stdout;
    let key = String::from_utf8(key).unwrap();
    let ours = run_with_stdin(&["pubkey"], &key);
    assert_eq!(ours.stdout, wg_pubkey(&key));
}

#[test]
fn pubkey_rejects_garbage() {
    for input in ["", "garbage\n", "AAAA\n", &"A".repeat(44)] {
        let out = run_with_stdin(&["pubkey"], input);
        assert!(!out.status.success(), "{input:?} accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a base64 private key"));
    }
}

#[test]
fn check_reports_file_line_reason() {
    let dir = std::env::temp_dir().join(format!("ut-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "[Interface]\nPrivateKey = nope\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.conf:2: PrivateKey"), "{err}");

    let good = dir.join("good.conf");
    std::fs::write(
        &good,
        "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 100.64.0.1/24\nDNS = 1.1.1.1\n",
    )
    .unwrap();
    // Group/other access to a file holding a PrivateKey is refused, naming the fix.
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mode 0644"), "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", good.display())),
        "{err}"
    );
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DNS"));
    std::fs::remove_dir_all(&dir).unwrap();
}
