//! What the web interface reads besides the tree, through HTTP, on SQLite and on
//! PostgreSQL: search by name (`search.rs`), downloads and previews (`content.rs`), zips of
//! a selection (`zip.rs`) and thumbnails (`thumbnail.rs`).

#[path = "../support/mod.rs"]
#[macro_use]
mod support;

mod content;
mod search;
mod thumbnail;
mod zip;
