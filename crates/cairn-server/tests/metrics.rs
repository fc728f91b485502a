//! Metrics count from the server's start, not from the first scrape. A test binary of
//! its own: the recorder is process-wide, and this must be the first server of its
//! process, scraped for the first time after it has worked.

// The harness's per-backend macro is not needed here.
#[allow(unused_macros)]
mod support;

use support::{metric, put_file_as, Backend, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_happens_before_the_first_scrape_is_counted() {
    let s = TestServer::start(Backend::Sqlite).await;
    put_file_as(&s, &s.token, "/before-any-scrape.txt", b"counted").await;
    // The first scrape of this process.
    assert!(metric(&s, "cairn_commits_total").await >= 1.0);
    assert!(metric(&s, "cairn_blocks_stored_total").await >= 1.0);
    assert!(metric(&s, "cairn_http_requests_total").await >= 2.0);
    s.finish().await;
}
