//! keystead turns Gumroad sales into software license keys inside the seller's own AWS account.
//!
//! Where things live: `gumroad` reads pings, `domain` holds the license vocabulary, `sale` turns a sale into
//! a license, payment and email, `storage` and `mail` are the ports with their AWS adapters, `http` is the
//! Lambda adapter and `cli` the seller's admin tool (the `cli` feature, on by default; the function, in
//! `keystead-api/`, builds without it).

pub mod auth;
#[cfg(feature = "cli")]
pub mod cli;
pub mod compat;
pub mod config;
pub mod deadline;
pub mod domain;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod gumroad;
pub mod http;
pub mod licensing;
pub mod lifecycle;
pub mod mail;
pub mod portal;
pub mod rotation;
pub mod sale;
pub mod signing;
pub mod storage;
pub mod telemetry;
