//! Library side of the `uring-tunnel` binary: configuration parsing shared by the commands
//! and by the end-to-end tests.
#![warn(missing_docs)]

pub mod config;
pub mod hygiene;
pub mod logging;
pub mod metrics;
pub mod run;
pub mod show;
pub mod uapi;
