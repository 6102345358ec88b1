//! Sans-IO WireGuard protocol core.
//!
//! Nothing in this crate touches a socket, a file or a clock: every function that needs the
//! time takes `now` (a monotonic [`core::time::Duration`] since an arbitrary origin chosen by
//! the caller) as an argument, every function that needs randomness takes an RNG, and every
//! transport packet is transformed in place in the caller's buffer.
#![warn(missing_docs)]

pub mod aead;
mod error;
pub mod replay;
pub mod timers;
pub mod transport;

pub use error::Error;

pub use aead::{Aead, DefaultAead};
pub use replay::ReplayWindow;
pub use timers::{Actions, TimerConfig, Timers};
pub use transport::{CounterBlock, Decapsulated, Keypair, transport_receiver_index};

pub mod cookie;
pub mod handshake;
pub mod keys;
pub mod messages;
pub mod noise;
pub mod peer;
