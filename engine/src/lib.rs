//! The uring-tunnel engine: peers, routing by allowed IPs, and the shard loops.
#![warn(missing_docs)]

pub mod allowed_ips;
pub mod batch;
pub mod stats;
pub mod sys;
