//! Integration tests of the metadata store. Every test in `backend_tests!` runs twice,
//! against SQLite and against PostgreSQL, and ends with a whole-database consistency
//! check. One test binary rather than one per file: each binary links sqlx, and linking
//! dominates build time.

// Test bodies unwrap `Result<_, MetaError>` freely; the error's size does not matter.
#![allow(clippy::result_large_err)]

#[macro_use]
mod common;

mod accounts;
mod app_passwords;
mod batch;
mod check;
mod commit;
mod concurrency;
mod gc;
mod integrity;
mod journal;
mod links;
mod partitioning;
mod quota;
mod secrets;
mod send;
mod throttle;
mod trash;
mod tree;
mod uploads;
mod users;
mod versions;
