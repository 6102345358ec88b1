//! TUN device and virtio-net offload helpers.
#![warn(missing_docs)]
