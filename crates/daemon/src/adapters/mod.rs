//! The ways in. Each adapter turns its bytes into calls on `push` and
//! `requests` (or, for the WebSocket, on the registry it feeds) and knows
//! nothing of the others, but for one thing: the HTTP API's `/v1/push`
//! speaks the text-port protocol, so it uses `text::Lines`.

pub(crate) mod accept;
pub(crate) mod admin;
pub(crate) mod http;
mod lines;
pub(crate) mod text;
mod url;
pub(crate) mod ws;
