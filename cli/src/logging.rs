//! Logging: `tracing` events to stderr through `tracing-subscriber`'s fmt layer.
//!
//! The level comes from `--log-level` (default `info`); `RUST_LOG`, when set, overrides or
//! extends it: a bare level in it (`RUST_LOG=debug`) replaces `--log-level`, targeted
//! directives (`RUST_LOG=uring_tunnel_engine::control=trace`) are added to it.
//! Key material is never logged: public keys appear abbreviated (`short_key`), private and
//! preshared keys nowhere.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The filter directives for a `--log-level` and an optional `RUST_LOG` value.
pub fn directives(level: &str, rust_log: Option<&str>) -> String {
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        // A bare level in RUST_LOG (`debug`) replaces --log-level; targeted directives add to it.
        Some(extra)
            if extra
                .split(',')
                .any(|d| !d.contains('=') && !d.contains('[')) =>
        {
            extra.to_owned()
        }
        Some(extra) => format!("{level},{extra}"),
        None => level.to_owned(),
    }
}

/// Installs the global subscriber (stderr, fmt). Errors name a bad directive.
pub fn init(level: &str) -> anyhow::Result<()> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let spec = directives(level, rust_log.as_deref());
    let filter = EnvFilter::builder()
        .parse(&spec)
        .map_err(|e| anyhow::anyhow!("log filter `{spec}`: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_extends_the_level() {
        assert_eq!(directives("info", None), "info");
        assert_eq!(directives("info", Some("  ")), "info");
        assert_eq!(directives("warn", Some("debug")), "debug");
        assert_eq!(directives("warn", Some("x=trace,error")), "x=trace,error");
        assert_eq!(
            directives("info", Some("uring_tunnel_engine=trace")),
            "info,uring_tunnel_engine=trace"
        );
    }
}
