//! The state of one node, with no adapter, wire format or option parsing in it:
//! who is online ([`registry`]), what waits for uids that are not
//! ([`mailbox`]), message ids and `since` ([`ids`]), each connection's shared
//! half ([`conn`]) and the registry's tables of them (`index`), the counters
//! ([`counters`]), the millisecond clock ([`clock`]), the presence events
//! ([`events`]) and what of it outlives the process ([`saved`]).

pub(crate) mod clock;
pub(crate) mod conn;
pub(crate) mod counters;
pub(crate) mod events;
pub(crate) mod groups;
pub(crate) mod ids;
mod index;
pub(crate) mod mailbox;
pub(crate) mod payload;
pub(crate) mod registry;
pub(crate) mod saved;
pub(crate) mod upstream;
