//! Progress bars on standard error, hidden when it is not a terminal.

use std::io::IsTerminal;
use std::sync::Arc;

use cairn_client::ProgressFn;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar over `total` bytes on stderr, hidden when stderr is not a terminal.
/// Set a prefix (`bar.set_prefix("checking ")`) to say what it counts.
pub(crate) fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{prefix}{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// A spinner counting bytes of unknown total on stderr, hidden when stderr is not a
/// terminal.
pub(crate) fn progress_spinner() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar
}

/// Moves `bar` as a transfer reports its bytes done.
pub(crate) fn progress_fn(bar: &ProgressBar) -> ProgressFn {
    let bar = bar.clone();
    Arc::new(move |done| bar.set_position(done))
}
