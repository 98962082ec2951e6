//! Edgeward's control plane: it reads the fleet's desired state from a Git repository or a
//! folder, renders and validates one bundle per node, ships bundles to nodes over QUIC with
//! mTLS, stores what nodes report (status, acks, telemetry) in SQLite, and serves a JSON API and
//! a fleet page. It is never on the request path: nodes decide locally and keep their
//! last-known-good bundle when the control plane is away.
//!
//! - [`config`]: the control plane's own TOML config.
//! - [`source`], [`render`], [`validate`], [`publish`]: desired state to validated bundles.
//! - [`store`], [`otlp`]: the SQLite store and the decoding of telemetry batches.
//! - [`channel`]: the QUIC server nodes connect to.
//! - [`api`]: the JSON API and the page.
//! - [`run`]: assembles the pieces.

pub mod api;
pub mod channel;
pub mod config;
pub mod metrics;
pub mod otlp;
pub mod publish;
pub mod render;
pub mod run;
pub mod source;
pub mod store;
pub mod validate;
