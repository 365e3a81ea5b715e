//! Wire formats shared by `pushd` and `pushctl`.
//!
//! Everything both programs must agree on lives here, and only that: the admin
//! protocol ([`admin`]) and its counters ([`counters`]), the text-port line
//! format ([`text`]), what a uid is ([`uid`]), signed tokens ([`token`]) and where
//! the admin socket is by default ([`socket_path`]). The parsers of what a
//! proxy in front of pushd says about the client ([`proxy_header`],
//! [`forwarded`]) live here too, beside the other parsers of untrusted input.
//! The crate has no async runtime in it, so the parsers can be unit-tested,
//! fuzzed and reused without pulling in tokio.

pub mod admin;
pub mod counters;
pub mod forwarded;
pub mod proxy_header;
pub mod socket_path;
pub mod text;
pub mod token;
pub mod uid;
