//! Key hygiene of the command line: a configuration file holding a private key must not be
//! readable or writable by group or others, the file's text is wiped from memory after parsing,
//! and `run --user` drops root once the device and sockets exist.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};
use zeroize::Zeroizing;

use crate::config::{Config, ConfigError};

/// Permission bits that must be clear on a file holding a private key: read or write for group
/// or others.
pub const FORBIDDEN_MODE: u32 = 0o066;

/// Why a configuration could not be loaded safely.
#[derive(Debug)]
pub enum LoadError {
    /// Unreadable or invalid (file:line: reason).
    Config(ConfigError),
    /// The file holds a private key and other users may read or change it.
    Permissions {
        /// The file, as given.
        path: PathBuf,
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Config(e) => e.fmt(f),
            LoadError::Permissions { path, mode } => write!(
                f,
                "{p}: holds a PrivateKey but has mode {mode:04o}, so group or others can read or \
                 change it; refusing to use it. Fix: chmod 600 {p}",
                p = path.display()
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads and parses `path` like [`Config::load`], then refuses the file if group or others may
/// read or write it (every configuration holds the interface's PrivateKey). The mode is taken
/// from the open file, so it is the mode of the bytes that were read. The text is zeroized
/// after parsing.
pub fn load_private_config(path: &Path) -> Result<Config, LoadError> {
    let cannot = |e: std::io::Error| {
        LoadError::Config(ConfigError {
            path: path.to_owned(),
            line: 0,
            reason: format!("cannot read: {e}"),
        })
    };
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let mode = file.metadata().map_err(cannot)?.permissions().mode() & 0o7777;
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text).map_err(cannot)?;
    let cfg = Config::parse(&text, path).map_err(LoadError::Config)?;
    if mode & FORBIDDEN_MODE != 0 {
        return Err(LoadError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(cfg)
}

/// `text` with every run of 40 or more base64 characters (a key, or most of one) replaced by
/// `<redacted>`, for messages that quote configuration text.
pub fn redact_keys(text: &str) -> String {
    const MIN_RUN: usize = 40;
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= MIN_RUN {
            out.push_str("<redacted>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_b64(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A user (and group) to run as after set-up: `--user USER[:GROUP]`, names or numeric ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// Name or number as given, for messages.
    pub spec: String,
    /// User id.
    pub uid: Uid,
    /// Group id: the given group, else the user's primary group.
    pub gid: Gid,
}

/// Why `--user` could not be honoured.
#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    /// No such user or group.
    #[error("--user {0}: {1}")]
    Unknown(String, String),
    /// A set*id call failed.
    #[error("--user {spec}: {call}: {err}")]
    Call {
        /// The `--user` value.
        spec: String,
        /// Which call.
        call: &'static str,
        /// errno.
        err: nix::Error,
    },
    /// After dropping, root could be regained: refuse to run.
    #[error("--user {0}: after dropping privileges the process could become root again")]
    Regained(String),
}

impl RunAs {
    /// Resolves `USER[:GROUP]` (names or numbers) before anything is set up.
    pub fn resolve(spec: &str) -> Result<RunAs, PrivError> {
        let unknown = |what: String| PrivError::Unknown(spec.to_owned(), what);
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let found = match user.parse::<u32>() {
            Ok(n) => User::from_uid(Uid::from_raw(n)),
            Err(_) => User::from_name(user),
        }
        .map_err(|e| unknown(format!("looking up user `{user}`: {e}")))?;
        let (uid, primary) = match (found, user.parse::<u32>()) {
            (Some(u), _) => (u.uid, Some(u.gid)),
            (None, Ok(n)) => (Uid::from_raw(n), None),
            (None, Err(_)) => return Err(unknown(format!("no user named `{user}`"))),
        };
        let gid = match group {
            Some(g) => match g.parse::<u32>() {
                Ok(n) => Gid::from_raw(n),
                Err(_) => {
                    Group::from_name(g)
                        .map_err(|e| unknown(format!("looking up group `{g}`: {e}")))?
                        .ok_or_else(|| unknown(format!("no group named `{g}`")))?
                        .gid
                }
            },
            None => primary.ok_or_else(|| {
                unknown(format!(
                    "uid {user} has no passwd entry; give a group: {user}:GROUP"
                ))
            })?,
        };
        if uid.is_root() {
            return Err(unknown("dropping to root is not dropping anything".into()));
        }
        Ok(RunAs {
            spec: spec.to_owned(),
            uid,
            gid,
        })
    }

    /// Drops to this user for good: supplementary groups := [gid], gid, then uid (real,
    /// effective and saved, via `setgroups`/`setgid`/`setuid`, which glibc applies to every
    /// thread of the process). Then checks that `setuid(0)` fails. Open file descriptors (TUN
    /// queues, UDP sockets, netlink socket) stay usable.
    pub fn drop_privileges(&self) -> Result<(), PrivError> {
        let call = |call: &'static str| {
            let spec = self.spec.clone();
            move |err| PrivError::Call { spec, call, err }
        };
        nix::unistd::setgroups(&[self.gid]).map_err(call("setgroups"))?;
        nix::unistd::setgid(self.gid).map_err(call("setgid"))?;
        nix::unistd::setuid(self.uid).map_err(call("setuid"))?;
        if nix::unistd::setuid(Uid::from_raw(0)).is_ok()
            || nix::unistd::seteuid(Uid::from_raw(0)).is_ok()
            || nix::unistd::getuid().is_root()
            || nix::unistd::geteuid().is_root()
        {
            return Err(PrivError::Regained(self.spec.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const KEY: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";

    fn write_conf(dir: &Path, mode: u32) -> PathBuf {
        let p = dir.join(format!("wg-{mode:o}.conf"));
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(f, "[Interface]\nPrivateKey = {KEY}\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ut-hygiene-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn private_modes_are_accepted() {
        let d = tmpdir("ok");
        for mode in [0o600, 0o400, 0o700, 0o500] {
            let p = write_conf(&d, mode);
            load_private_config(&p).unwrap_or_else(|e| panic!("{mode:o}: {e}"));
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn group_or_other_access_is_refused_with_the_fix() {
        let d = tmpdir("bad");
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o666] {
            let p = write_conf(&d, mode);
            let e = load_private_config(&p).expect_err("must refuse");
            assert!(matches!(e, LoadError::Permissions { mode: m, .. } if m == mode));
            let msg = e.to_string();
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
            assert!(msg.contains(&format!("chmod 600 {}", p.display())), "{msg}");
            assert!(!msg.contains(KEY), "{msg}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn config_errors_come_first() {
        let d = tmpdir("err");
        let p = d.join("bad.conf");
        std::fs::write(&p, "[Interface]\nPrivateKey = x\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_private_config(&p).expect_err("invalid");
        assert!(matches!(e, LoadError::Config(ref c) if c.line == 2), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn config_errors_never_quote_a_key() {
        let d = tmpdir("quote");
        for bad in [
            format!("[Interface]\nPrivateKey {KEY}\n"),
            format!("[Interface]\n{KEY}\n"),
            format!("[{KEY}]\n"),
            format!("[Interface]\nPrivateKey = {KEY}\n[Peer]\nPublicKey = {KEY}x\n"),
            format!("[Interface]\nPrivateKey = {KEY}\nAddress = {KEY}\n"),
        ] {
            let p = d.join("q.conf");
            std::fs::write(&p, &bad).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            let e = load_private_config(&p).expect_err(&bad).to_string();
            assert!(!e.contains(&KEY[..40]), "{e}");
        }
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(redact_keys("a `abc` b"), "a `abc` b");
        assert_eq!(redact_keys(&format!("x `{KEY}` y")), "x `<redacted>=` y");
    }

    #[test]
    fn user_specs() {
        let nobody = RunAs::resolve("nobody").expect("nobody exists");
        assert!(!nobody.uid.is_root());
        let n = nobody.uid.as_raw();
        let byid = RunAs::resolve(&format!("{n}:{}", nobody.gid.as_raw())).unwrap();
        assert_eq!((byid.uid, byid.gid), (nobody.uid, nobody.gid));
        assert!(RunAs::resolve("root").is_err());
        assert!(RunAs::resolve("0:0").is_err());
        assert!(RunAs::resolve("no-such-user-xyz").is_err());
        assert!(RunAs::resolve("nobody:no-such-group-xyz").is_err());
        assert!(
            RunAs::resolve("4000000").is_err(),
            "numeric uid without passwd needs a group"
        );
        assert_eq!(
            RunAs::resolve("4000000:4000000").unwrap().uid.as_raw(),
            4_000_000
        );
    }
}
