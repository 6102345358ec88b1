//! Key formats against wireguard-tools: `wg genkey` → our public key == `wg pubkey`, and our
//! generated key → `wg pubkey` == our public key. Needs the `wg` binary (apt wireguard-tools):
//! without it the test fails when CI=true and is skipped (with a message) otherwise.

use std::io::Write;
use std::process::{Command, Stdio};

use uring_tunnel_crypto::keys::{PresharedKey, PublicKey, StaticSecret};

fn wg_available() -> bool {
    let found = Command::new("wg")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("`wg` (wireguard-tools) is required in CI but was not found");
        }
        eprintln!("SKIP: `wg` (wireguard-tools) not installed; key interop not tested");
    }
    found
}

fn wg(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("wg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wg");
    {
        let mut pipe = child.stdin.take().unwrap();
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "wg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn wg_genkey_then_our_pubkey_matches_wg_pubkey() {
    if !wg_available() {
        return;
    }
    for _ in 0..8 {
        let secret_text = wg(&["genkey"], None);
        let theirs = wg(&["pubkey"], Some(&secret_text));
        let secret: StaticSecret = secret_text.parse().unwrap();
        // `wg genkey` prints a clamped key: we print back exactly the same text.
        assert_eq!(secret.to_base64(), secret_text.trim());
        assert_eq!(secret.public_key().to_string(), theirs.trim());
        assert_eq!(
            theirs.trim().parse::<PublicKey>().unwrap(),
            secret.public_key()
        );
    }
}

#[test]
fn our_genkey_then_wg_pubkey_matches_ours() {
    if !wg_available() {
        return;
    }
    let mut rng = rand_core::OsRng;
    for _ in 0..8 {
        let secret = StaticSecret::generate(&mut rng);
        let text = format!("{}\n", secret.to_base64());
        let theirs = wg(&["pubkey"], Some(&text));
        assert_eq!(theirs.trim(), secret.public_key().to_string());
    }
}

#[test]
fn wg_genpsk_parses() {
    if !wg_available() {
        return;
    }
    let text = wg(&["genpsk"], None);
    let psk: PresharedKey = text.parse().unwrap();
    assert_eq!(psk.to_base64(), text.trim());
    assert!(!psk.is_none());
}

#[test]
fn wg_and_we_clamp_unclamped_keys_alike() {
    if !wg_available() {
        return;
    }
    // An unclamped private key is accepted by both and gives the same public key.
    let raw = [0xffu8; 32];
    let text = base64_of(&raw);
    let ours = StaticSecret::from_bytes(raw).public_key();
    let theirs = wg(&["pubkey"], Some(&text));
    assert_eq!(theirs.trim(), ours.to_string());
}

fn base64_of(bytes: &[u8; 32]) -> String {
    // Reuse our public-key encoder: it is plain base64 of the 32 bytes.
    PublicKey::from_bytes(*bytes).to_string()
}
