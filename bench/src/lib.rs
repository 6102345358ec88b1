//! `uring-tunnel bench`: a self-contained benchmark of uring-tunnel against bare veth, its own
//! epoll backend and other WireGuard implementations.
//!
//! Everything runs inside a pair of network namespaces joined by a veth ([`netns`]); tunnels
//! run as processes ([`tunnels`]); traffic comes from a built-in generator and sink
//! ([`traffic`], run as hidden subcommands of the `uring-tunnel` binary); CPU comes from
//! `/proc` ([`procfs`]) and the engines' shutdown counters ([`summary`]); [`report`] turns the
//! samples into a Markdown table, `results.json` and an SVG chart. [`runner`] ties it together.
#![warn(missing_docs)]

pub mod args;
pub mod netns;
pub mod procfs;
pub mod report;
pub mod runner;
pub mod summary;
pub mod traffic;
pub mod tunnels;

pub use args::{BenchArgs, GenArgs, Plan, SinkArgs, TestKind};
pub use report::Report;
pub use runner::run_bench;

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Bad command-line arguments.
    #[error("invalid arguments: {0}")]
    Args(String),
    /// An I/O operation failed; `what` says which.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The environment is not usable (not root, a tool missing, a tunnel did not come up, ...).
    #[error("{0}")]
    Setup(String),
}

impl BenchError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, BenchError>;
