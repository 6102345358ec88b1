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
        /// Serve Prometheus metrics (text format 0.0.4) on `GET /metrics` at this address,
        /// e.g. `127.0.0.1:9586` or `[::1]:9586`.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// Log level: error, warn, info, debug or trace. `RUST_LOG` adds `tracing` filter
        /// directives on top (e.g. `RUST_LOG=uring_tunnel_engine=debug`).
        #[arg(long, value_name = "LEVEL", default_value = "info")]
        log_level: LogLevel,
        /// Test only: divide every protocol time (Rekey-After-Time, Reject-After-Time,
        /// Rekey-Timeout, Keepalive-Timeout, ...) by N, so soak tests see many rekeys. Not
        /// WireGuard-compatible timing; never use in production.
        #[arg(long, hide = true, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10000))]
        test_timer_scale: Option<u32>,
        /// After the device, routes and sockets are set up, drop root and run as USER (and its
        /// primary group, or GROUP): names or numeric ids, e.g. `nobody` or `65534:65534`.
        /// The already-open TUN queues and sockets keep working; the TUN device vanishes with
        /// the process's last queue fd at exit.
        #[arg(long, value_name = "USER[:GROUP]")]
        user: Option<String>,
    },
    /// Show running tunnels: what `wg show` prints plus the engine (backend, offloads,
    /// per-shard counters, coalescing, syscalls per packet, drops by reason).
    ///
    /// Asks the tunnel over its UAPI socket (/var/run/wireguard/INTERFACE.sock). Without
    /// INTERFACE, every uring-tunnel socket there. `wg show` works on the same sockets.
    ///
    /// Example: `uring-tunnel show wg0 --json`
    Show {
        /// Interface name (default: all running uring-tunnel interfaces).
        interface: Option<String>,
        /// Print JSON (an object for one interface, an array without INTERFACE).
        #[arg(long)]
        json: bool,
    },
    /// Benchmark uring-tunnel (io_uring and epoll) against bare veth and other WireGuard
    /// implementations, in network namespaces it creates. Needs root.
    ///
    /// Prints a Markdown table on stdout and writes results.json, results.md and chart.svg to
    /// --out; a progress line per test goes to stderr. `--quick` takes under a minute.
    ///
    /// Example: `sudo uring-tunnel bench --quick`
    Bench(uring_tunnel_bench::BenchArgs),
    /// Traffic generator of `bench` (internal).
    #[command(hide = true)]
    BenchGen(uring_tunnel_bench::GenArgs),
    /// Traffic sink of `bench` (internal).
    #[command(hide = true)]
    BenchSink(uring_tunnel_bench::SinkArgs),
    /// Check a wg-quick configuration file and print what is wrong with it, if anything.
    ///
    /// Exits 0 when the file is usable; warnings for ignored wg-quick keys go to stderr.
    Check {
        /// The wg-quick style configuration file (e.g. /etc/wireguard/wg0.conf).
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// `--log-level` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Start-up, endpoint changes, warnings (default).
    Info,
    /// Also handshakes completed/refused and initiations sent.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    fn directive(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
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
            metrics,
            log_level,
            test_timer_scale,
            user,
        } => {
            uring_tunnel::logging::init(log_level.directive())?;
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
                metrics,
                test_timer_scale,
                user,
            };
            uring_tunnel::run::run(&config, &opts)?;
        }
        Command::Show { interface, json } => {
            let out = uring_tunnel::show::run_show(interface.as_deref(), json)?;
            print!("{out}");
        }
        Command::Bench(args) => {
            let exe = std::env::current_exe().context("locating the uring-tunnel binary")?;
            // On a terminal the "..." line of a running test is overwritten by its result.
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let report = uring_tunnel_bench::run_bench(&args, &exe, &mut |line| {
                if !tty {
                    eprintln!("bench: {line}");
                } else if line.ends_with("...") {
                    eprint!("\r\x1b[Kbench: {line}");
                } else {
                    eprintln!("\r\x1b[Kbench: {line}");
                }
            })?;
            print!("{}", report.markdown());
            eprintln!(
                "bench: results in {}/results.json, results.md, chart.svg",
                args.out.display()
            );
        }
        Command::BenchGen(args) => uring_tunnel_bench::traffic::gen_main(&args)?,
        Command::BenchSink(args) => uring_tunnel_bench::traffic::sink_main(&args)?,
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
