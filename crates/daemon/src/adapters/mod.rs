//! The ways in. Each adapter turns its bytes into calls on `push` and
//! `requests` (or, for the WebSocket, on the registry it feeds) and knows
//! nothing of the others.

pub(crate) mod accept;
pub(crate) mod admin;
mod lines;
pub(crate) mod metrics;
pub(crate) mod text;
pub(crate) mod ws;
