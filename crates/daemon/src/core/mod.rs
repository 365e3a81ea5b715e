//! The state of one node, with no adapter, wire format or option parsing in it:
//! who is online ([`registry`]), each connection's shared half ([`conn`]), the
//! counters ([`counters`]) and the millisecond clock ([`clock`]).

pub(crate) mod clock;
pub(crate) mod conn;
pub(crate) mod counters;
pub(crate) mod registry;
