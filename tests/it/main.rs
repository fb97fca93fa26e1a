//! keystead's integration tests, one binary (one link) with a module per area. Each runs against the real local
//! stack (`infra/local/up`'s environment: DynamoDB Local, moto's SES, KMS and S3), on its own tenants, so the
//! tests run in parallel. `cargo test --test it <module>::` runs one area (e.g. `cargo test --test it model::`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

#[path = "../../fuzz/checks.rs"]
#[allow(dead_code)] // the fuzz targets' checks; the corpus replay and the property tests run them
mod checks;
mod cli_support;
mod common;

mod architecture;
mod browser;
mod cli;
mod first_deploy;
mod hostile;
mod import;
mod kits;
mod leases;
mod license_api;
mod lifecycle;
mod load_with_faults;
mod logs;
mod migration;
mod model;
mod outage;
mod ping;
mod portal;
mod properties;
mod read_back;
mod reconcile;
mod releases;
mod router;
mod sale_kinds;
mod template;
mod webhooks;
