//! The web interface in a real browser: `npm test` in `web/` (headless Chromium driven
//! by playwright-core, see `web/tests/`) against this build's `cairn` binary, so that
//! `cargo test --workspace` runs the browser tests with everything else.
//!
//! Needs Chromium at `/usr/bin/chromium` (or `CHROMIUM`) and the test packages in
//! `web/node_modules`: `.ci/web-setup.sh` installs both, idempotently.

use std::path::Path;
use std::process::Command;

#[test]
fn the_web_interface_passes_its_browser_tests() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    let web = web.canonicalize().expect("the web/ folder");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "the browser tests' packages are missing: run .ci/web-setup.sh (Chromium and `npm ci` in web/)"
    );
    let status = Command::new("npm")
        .args(["test", "--silent"])
        .current_dir(&web)
        .env("CAIRN_BIN", env!("CARGO_BIN_EXE_cairn"))
        .status()
        .expect("npm must be installed to run the browser tests");
    assert!(
        status.success(),
        "the browser tests failed (npm test in web/): {status}"
    );
}
