//! Rebuilds the server when the web interface's built files change: they are embedded
//! (`src/web.rs`), and a file added to `web/dist` would otherwise go unnoticed.

fn main() {
    println!("cargo:rerun-if-changed=../../web/dist");
}
