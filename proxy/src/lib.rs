//! Edgeward's data plane.
//!
//! The request path, in module order: `config` (validated types), `request` (canonical host and
//! path), `route` (which route and cluster), `authz` (Cedar decision), `balance` (locality tier
//! and endpoint choice, health and outlier state).

pub mod admin;
pub mod authz;
pub mod balance;
pub mod config;
pub mod control;
pub mod drain;
pub mod health;
pub mod identity;
pub mod listener;
pub mod metrics;
pub mod pipeline;
pub mod reload;
pub mod request;
pub mod route;
pub mod server;
pub mod signals;
pub mod state;
pub mod telemetry;
pub mod upstream;
