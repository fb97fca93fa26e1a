//! keystead turns Gumroad sales into software license keys inside the seller's own AWS account.
//!
//! Where things live (ARCHITECTURE.md has the map): `gumroad` reads pings, `domain` holds the license
//! vocabulary, `app` has one use case per action (`app::record_sale` turns a sale into a license, payment and
//! email), `storage`, `mail` and `signing` are the ports with their AWS adapters, `http` is the Lambda adapter
//! (one router) and `cli` the seller's admin tool (the `cli` feature, on by default; the function, in
//! `keystead-api/`, builds without it).

pub mod app;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod deadline;
#[cfg(feature = "dispatch")]
pub mod dispatch;
pub mod domain;
pub mod files;
pub mod gumroad;
pub mod http;
pub mod mail;
pub mod portal;
pub mod signing;
pub mod storage;
pub mod telemetry;
