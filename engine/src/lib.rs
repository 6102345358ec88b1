//! The uring-tunnel engine: peers, routing by allowed IPs, and the shard loops.
#![warn(missing_docs)]

pub mod allowed_ips;
pub mod batch;
pub mod control;
pub mod datapath;
mod engine;
pub mod peers;
pub mod ratelog;
mod reconfig;
mod shard_epoll;
mod shard_uring;
pub mod stats;
pub mod sys;

pub use engine::{
    Backend, BackendChoice, Engine, EngineConfig, EngineError, PeerSpec, probe_uring,
};
pub use reconfig::{ConfigError, DeviceConfig, DeviceUpdate, PeerInfo, PeerUpdate};
