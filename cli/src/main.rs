//! `uring-tunnel` command-line front end.
fn main() {}
