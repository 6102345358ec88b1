//! `uring-tunnel`: a WireGuard-compatible VPN data plane with one io_uring shard per core.
//!
//! This binary is the only place that prints, exits or uses `anyhow`; the libraries below it
//! return typed errors.

use uring_tunnel::config;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use uring_tunnel_crypto::keys::StaticSecret;

/// A WireGuard-compatible VPN data plane: one single-threaded io_uring shard per core.
///
/// Speaks the WireGuard wire protocol, so it interoperates with kernel WireGuard,
/// wireguard-go and boringtun, and reads wg-quick configuration files.
#[derive(Parser, Debug)]
#[command(name = "uring-tunnel", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a new random private key (base64), like `wg genkey`.
    ///
    /// Example: `uring-tunnel genkey > private.key`
    Genkey,
    /// Read a private key on stdin, print its public key, like `wg pubkey`.
    ///
    /// Example: `uring-tunnel genkey | tee private.key | uring-tunnel pubkey`
    Pubkey,
    /// Check a wg-quick configuration file and print what is wrong with it, if anything.
    ///
    /// Exits 0 when the file is usable; warnings for ignored wg-quick keys go to stderr.
    Check {
        /// The wg-quick style configuration file (e.g. /etc/wireguard/wg0.conf).
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uring-tunnel: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Genkey => {
            let key = StaticSecret::generate(&mut rand_core::OsRng);
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", key.to_base64()).context("writing to stdout")?;
        }
        Command::Pubkey => {
            let mut input = zeroize::Zeroizing::new(String::new());
            std::io::stdin()
                .read_to_string(&mut input)
                .context("reading the private key from stdin")?;
            let Ok(key) = input.trim().parse::<StaticSecret>() else {
                bail!("stdin is not a base64 private key (as printed by `uring-tunnel genkey`)");
            };
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", key.public_key()).context("writing to stdout")?;
        }
        Command::Check { config } => {
            let cfg = config::Config::load(&config)?;
            for w in &cfg.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} address(es), {} peer(s), MTU {})",
                config.display(),
                cfg.interface.addresses.len(),
                cfg.peers.len(),
                cfg.interface.mtu
            );
        }
    }
    Ok(())
}
