//! End-to-end tests: the real `pushd` and `pushctl` binaries, real sockets on
//! loopback, a real WebSocket client. One module per part of
//! the behaviour the README documents.

mod harness;
mod http;
mod http_api;

mod auth;
mod browser;
mod clients;
mod cluster;
mod cluster_channels;
mod cluster_events;
mod cluster_groups;
mod cluster_harness;
mod connections;
mod deploy;
mod edge;
mod events;
mod groups;
mod hostile;
mod lifecycle;
mod limits;
mod mailbox;
mod proxies;
mod pushctl;
mod reliability;
mod resume;
mod sentinel;
mod service;
mod sse_pages;
mod state;
mod text_port;
mod upgrade;
mod websocket;
