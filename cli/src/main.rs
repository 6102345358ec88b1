//! `uring-tunnel`: a WireGuard-compatible VPN data plane with one io_uring shard per core.
//!
//! This binary is the only place that prints, exits or uses `anyhow`; the libraries below it
//! return typed errors.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use uring_tunnel_crypto::keys::StaticSecret;
use uring_tunnel_engine::BackendChoice;

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
    /// Bring a tunnel up from a wg-quick configuration file; stays in the foreground.
    ///
    /// Creates the TUN device (named after the config file unless --interface is given), sets
    /// its addresses and MTU, adds routes for the peers' AllowedIPs (unless `Table = off`),
    /// starts one shard per core and runs until SIGINT/SIGTERM, then removes the device.
    /// Needs CAP_NET_ADMIN (root).
    ///
    /// Example: `uring-tunnel run --config wg0.conf --cores 2 --engine epoll`
    Run {
        /// The wg-quick style configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Interface name (default: the config file name without `.conf`).
        #[arg(long, short)]
        interface: Option<String>,
        /// Number of shards (default: the CPUs in the process affinity mask, or in --cpus /
        /// --numa-node).
        #[arg(long)]
        cores: Option<usize>,
        /// Pin shards to these CPUs, e.g. `0-3,8`.
        #[arg(long)]
        cpus: Option<String>,
        /// Use (and pin to) the CPUs of this NUMA node; buffers are allocated after pinning.
        #[arg(long)]
        numa_node: Option<u32>,
        /// I/O backend: `auto` (io_uring when usable, else epoll), `uring`, or `epoll`.
        #[arg(long, value_enum, default_value_t = EngineArg::Auto)]
        engine: EngineArg,
        /// Do not negotiate TUN offloads (no virtio-net header, no TSO/USO): plain packets.
        #[arg(long)]
        no_offload: bool,
        /// Do not use UDP GSO (one datagram per send). For comparisons and tests; the kernel's
        /// own refusal (EIO) switches GSO off by itself, with one warning.
        #[arg(long)]
        no_gso: bool,
        /// Do not ask for UDP GRO (one datagram per receive). For comparisons and tests.
        #[arg(long)]
        no_gro: bool,
        /// After the device, routes and sockets are set up, drop root and run as USER (and its
        /// primary group, or GROUP): names or numeric ids, e.g. `nobody` or `65534:65534`.
        /// The already-open TUN queues and sockets keep working; the TUN device vanishes with
        /// the process's last queue fd at exit.
        #[arg(long, value_name = "USER[:GROUP]")]
        user: Option<String>,
    },
    /// Check a wg-quick configuration file and print what is wrong with it, if anything.
    ///
    /// Exits 0 when the file is usable; warnings for ignored wg-quick keys go to stderr.
    Check {
        /// The wg-quick style configuration file (e.g. /etc/wireguard/wg0.conf).
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// `--engine` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum EngineArg {
    /// io_uring when the kernel has what it needs, else epoll (logged).
    Auto,
    /// io_uring, or fail with the reason.
    Uring,
    /// epoll with batched syscalls.
    Epoll,
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
        Command::Run {
            config,
            interface,
            cores,
            cpus,
            numa_node,
            engine,
            no_offload,
            no_gso,
            no_gro,
            user,
        } => {
            let opts = uring_tunnel::run::RunOptions {
                interface,
                cores,
                cpus,
                numa_node,
                engine: match engine {
                    EngineArg::Auto => BackendChoice::Auto,
                    EngineArg::Uring => BackendChoice::Uring,
                    EngineArg::Epoll => BackendChoice::Epoll,
                },
                no_offload,
                no_gso,
                no_gro,
                user,
            };
            uring_tunnel::run::run(&config, &opts)?;
        }
        Command::Check { config } => {
            let cfg = uring_tunnel::hygiene::load_private_config(&config)?;
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
