//! The client against a small in-memory mock of the API on loopback: error decoding,
//! retries, and upload/download round trips with verification. The real server's
//! end-to-end tests live with the binary.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use cairn_client::proto::{
    BlockCheckRequest, BlockCheckResponse, BlockRef, BlockUploadResponse, ChunkerInfo,
    CommitRequest, CommitResponse, EntryInfo, EntryKind, ErrorBody, ErrorDetail,
    FileBlocksResponse, ServerInfo, TrashItem, TrashListResponse, TrashRestoreRequest,
    TrashRestoreResponse,
};
use cairn_client::{Client, ClientError, DownloadOptions, LocalCopy, UploadOptions};
use cairn_core::{content_hash, BlockHash};
use futures::StreamExt;

#[derive(Default)]
struct Mock {
    blocks: Mutex<HashMap<String, Bytes>>,
    files: Mutex<HashMap<String, (Vec<BlockRef>, u64)>>,
    check_calls: AtomicUsize,
    put_calls: AtomicUsize,
    account_calls: AtomicUsize,
    commit_calls: AtomicUsize,
    /// Answer the first commit with `missing_blocks` for the file's first block.
    forget_on_first_commit: Mutex<bool>,
    /// Serve this block with one byte flipped.
    corrupt: Mutex<Option<String>>,
    /// Blocks stored from a delta, and block patches served.
    delta_puts: AtomicUsize,
    patches_served: AtomicUsize,
    /// Refuse every delta with 422, as the server does one that does not rebuild its
    /// block.
    refuse_deltas: Mutex<bool>,
    /// Serve patches with one byte flipped.
    corrupt_patches: Mutex<bool>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.into(),
            message: message.into(),
            current: None,
            missing_blocks: None,
        },
    };
    (status, Json(body)).into_response()
}

fn entry(path: &str, size: u64, rev: u64, blocks: &[BlockRef]) -> EntryInfo {
    let hashes: Vec<BlockHash> = blocks
        .iter()
        .map(|b| BlockHash::from_hex(&b.hash).unwrap())
        .collect();
    EntryInfo {
        id: 1,
        path: path.into(),
        name: path.rsplit('/').next().unwrap().into(),
        kind: EntryKind::File,
        size,
        rev: Some(rev.to_string()),
        content_hash: Some(content_hash(&hashes).to_hex()),
        mtime: 0,
        modified_at: 0,
        shared: None,
    }
}

#[derive(serde::Deserialize)]
struct PathQuery {
    path: String,
}

fn router(mock: Arc<Mock>) -> Router {
    Router::new()
        .route(
            "/api/v1/info",
            get(|| async {
                Json(ServerInfo {
                    version: "mock".into(),
                    api_version: "v1".into(),
                    chunker: ChunkerInfo {
                        min_size: 1024,
                        avg_size: 4096,
                        max_size: 16384,
                    },
                    max_block_size: 16384,
                })
            }),
        )
        .route(
            "/api/v1/account",
            get(|State(m): State<Arc<Mock>>| async move {
                // Fails twice, then answers: exercises the retry of idempotent reads.
                let n = m.account_calls.fetch_add(1, Ordering::SeqCst);
                if n < 2 {
                    return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "busy");
                }
                (StatusCode::BAD_GATEWAY, "<html>proxy</html>").into_response()
            }),
        )
        .route(
            "/api/v1/files/stat",
            get(
                |State(m): State<Arc<Mock>>, Query(q): Query<PathQuery>| async move {
                    match m.files.lock().unwrap().get(&q.path) {
                        Some((blocks, rev)) => {
                            let size = blocks.iter().map(|b| u64::from(b.size)).sum();
                            Json(entry(&q.path, size, *rev, blocks)).into_response()
                        }
                        None => error(
                            StatusCode::NOT_FOUND,
                            "not_found",
                            &format!("{} does not exist.", q.path),
                        ),
                    }
                },
            ),
        )
        .route(
            "/api/v1/blocks/check",
            post(
                |State(m): State<Arc<Mock>>, Json(req): Json<BlockCheckRequest>| async move {
                    m.check_calls.fetch_add(1, Ordering::SeqCst);
                    assert!(req.hashes.len() <= 1000);
                    let blocks = m.blocks.lock().unwrap();
                    let missing = req
                        .hashes
                        .into_iter()
                        .filter(|h| !blocks.contains_key(h))
                        .collect();
                    Json(BlockCheckResponse { missing })
                },
            ),
        )
        .route(
            "/api/v1/blocks/{hash}",
            put(
                |State(m): State<Arc<Mock>>, UrlPath(hash): UrlPath<String>, body: Bytes| async move {
                    m.put_calls.fetch_add(1, Ordering::SeqCst);
                    if BlockHash::of(&body).to_hex() != hash {
                        return error(StatusCode::BAD_REQUEST, "hash_mismatch", "wrong hash");
                    }
                    let size = body.len() as u64;
                    m.blocks.lock().unwrap().insert(hash.clone(), body);
                    (StatusCode::CREATED, Json(BlockUploadResponse { hash, size })).into_response()
                },
            )
            .get(
                |State(m): State<Arc<Mock>>, UrlPath(hash): UrlPath<String>| async move {
                    let Some(data) = m.blocks.lock().unwrap().get(&hash).cloned() else {
                        return error(StatusCode::NOT_FOUND, "not_found", "no such block");
                    };
                    if m.corrupt.lock().unwrap().as_deref() == Some(hash.as_str()) {
                        let mut bad = data.to_vec();
                        bad[0] ^= 1;
                        return bad.into_response();
                    }
                    data.into_response()
                },
            ),
        )
        .route(
            "/api/v1/blocks/{hash}/signature",
            get(
                |State(m): State<Arc<Mock>>, UrlPath(hash): UrlPath<String>| async move {
                    match m.blocks.lock().unwrap().get(&hash) {
                        Some(data) => cairn_core::delta::signature(data).into_response(),
                        None => error(StatusCode::NOT_FOUND, "not_found", "no such block"),
                    }
                },
            ),
        )
        .route(
            "/api/v1/blocks/{hash}/from/{base}",
            put(
                |State(m): State<Arc<Mock>>,
                 UrlPath((hash, base)): UrlPath<(String, String)>,
                 body: Bytes| async move {
                    let Some(base) = m.blocks.lock().unwrap().get(&base).cloned() else {
                        return error(StatusCode::NOT_FOUND, "not_found", "no such block");
                    };
                    let rebuilt = cairn_core::delta::rsync_apply(&base, &body, 1 << 20);
                    let refused = *m.refuse_deltas.lock().unwrap();
                    match rebuilt {
                        Ok(data) if !refused && BlockHash::of(&data).to_hex() == hash => {
                            m.delta_puts.fetch_add(1, Ordering::SeqCst);
                            let size = data.len() as u64;
                            m.blocks.lock().unwrap().insert(hash.clone(), data.into());
                            (StatusCode::CREATED, Json(BlockUploadResponse { hash, size }))
                                .into_response()
                        }
                        _ => error(StatusCode::UNPROCESSABLE_ENTITY, "bad_delta", "no"),
                    }
                },
            )
            .get(
                |State(m): State<Arc<Mock>>,
                 UrlPath((hash, base)): UrlPath<(String, String)>| async move {
                    let blocks = m.blocks.lock().unwrap().clone();
                    let (Some(data), Some(base)) = (blocks.get(&hash), blocks.get(&base)) else {
                        return error(StatusCode::NOT_FOUND, "not_found", "no such block");
                    };
                    let mut patch = cairn_core::delta::patch_encode(base, data).unwrap();
                    if *m.corrupt_patches.lock().unwrap() {
                        let at = patch.len() / 2;
                        patch[at] ^= 0x40;
                    }
                    m.patches_served.fetch_add(1, Ordering::SeqCst);
                    (
                        [("content-type", cairn_client::proto::BLOCK_PATCH_CONTENT_TYPE)],
                        patch,
                    )
                        .into_response()
                },
            ),
        )
        .route(
            "/api/v1/files/commit",
            post(
                |State(m): State<Arc<Mock>>, Json(req): Json<CommitRequest>| async move {
                    m.commit_calls.fetch_add(1, Ordering::SeqCst);
                    let mut files = m.files.lock().unwrap();
                    let current = files.get(&req.path).map(|(b, rev)| (b.clone(), *rev));
                    let base: Option<u64> = req.base_rev.as_deref().map(|r| r.parse().unwrap());
                    if current.as_ref().map(|c| c.1) != base {
                        let current = current.map(|(blocks, rev)| {
                            let size = blocks.iter().map(|b| u64::from(b.size)).sum();
                            Box::new(entry(&req.path, size, rev, &blocks))
                        });
                        let body = ErrorBody {
                            error: ErrorDetail {
                                code: "conflict".into(),
                                message: format!("file {} was changed on the server", req.path),
                                current,
                                missing_blocks: None,
                            },
                        };
                        return (StatusCode::CONFLICT, Json(body)).into_response();
                    }
                    let mut forget = m.forget_on_first_commit.lock().unwrap();
                    if *forget && !req.blocks.is_empty() {
                        *forget = false;
                        let hash = req.blocks[0].hash.clone();
                        m.blocks.lock().unwrap().remove(&hash);
                    }
                    let blocks = m.blocks.lock().unwrap();
                    let missing: Vec<String> = req
                        .blocks
                        .iter()
                        .filter(|b| !blocks.contains_key(&b.hash))
                        .map(|b| b.hash.clone())
                        .collect();
                    if !missing.is_empty() {
                        let body = ErrorBody {
                            error: ErrorDetail {
                                code: "missing_blocks".into(),
                                message: "upload these blocks first".into(),
                                current: None,
                                missing_blocks: Some(missing),
                            },
                        };
                        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
                    }
                    let rev = base.unwrap_or(0) + 1;
                    let size = req.blocks.iter().map(|b| u64::from(b.size)).sum();
                    let info = entry(&req.path, size, rev, &req.blocks);
                    files.insert(req.path.clone(), (req.blocks, rev));
                    Json(CommitResponse {
                        entry: info,
                        renamed: false,
                    })
                    .into_response()
                },
            ),
        )
        .route(
            "/api/v1/files/blocks",
            get(
                |State(m): State<Arc<Mock>>, Query(q): Query<PathQuery>| async move {
                    match m.files.lock().unwrap().get(&q.path) {
                        Some((blocks, rev)) => {
                            let size = blocks.iter().map(|b| u64::from(b.size)).sum();
                            Json(FileBlocksResponse {
                                entry: entry(&q.path, size, *rev, blocks),
                                blocks: blocks.clone(),
                            })
                            .into_response()
                        }
                        None => error(StatusCode::NOT_FOUND, "not_found", "no such file"),
                    }
                },
            ),
        )
        .route(
            "/api/v1/trash",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                // Five items, ids 5 down to 1, two per page.
                let after: i64 = q.get("after").map_or(i64::MAX, |a| a.parse().unwrap());
                let items: Vec<TrashItem> = (1..=5)
                    .rev()
                    .filter(|&id| id < after)
                    .take(2)
                    .map(|id| TrashItem {
                        id,
                        path: format!("/f{id}"),
                        kind: EntryKind::File,
                        size: 1,
                        file_count: 1,
                        deleted_at: 0,
                        deleted_by: "me".into(),
                        device: None,
                    })
                    .collect();
                let next_after = (items.len() == 2).then(|| items[1].id);
                Json(TrashListResponse { items, next_after })
            }),
        )
        .route(
            "/api/v1/trash/restore",
            post(|Json(req): Json<TrashRestoreRequest>| async move {
                match req.path.as_deref() {
                    Some("/gone") => error(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        "nothing deleted from /gone is in the trash",
                    ),
                    Some(path) => Json(TrashRestoreResponse {
                        entry: entry(path, 0, 1, &[]),
                    })
                    .into_response(),
                    None => error(StatusCode::BAD_REQUEST, "invalid_request", "no path"),
                }
            }),
        )
        .with_state(mock)
}

async fn start() -> (Client, Arc<Mock>) {
    let mock = Arc::new(Mock::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(Arc::clone(&mock));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = Client::new(&format!("http://{addr}/"), Some("token".into())).unwrap();
    (client, mock)
}

/// Deterministic bytes that do not compress or repeat.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("cairn-tmp"))
        .collect()
}

#[tokio::test]
async fn api_errors_are_decoded() {
    let (client, _mock) = start().await;
    let err = client.stat("/nope").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.status(), Some(404));
    assert_eq!(
        err.to_string(),
        "server refused: /nope does not exist (not_found)"
    );
    assert!(client.try_stat("/nope").await.unwrap().is_none());
}

#[tokio::test]
async fn idempotent_reads_are_retried_and_non_json_errors_decoded() {
    let (client, mock) = start().await;
    let err = client.account().await.unwrap_err();
    // 503, 503, then a proxy's 502 page, retried once more: four attempts in all.
    assert_eq!(mock.account_calls.load(Ordering::SeqCst), 4);
    assert_eq!(err.code(), Some("http_502"));
    assert_eq!(
        err.to_string(),
        "server error: HTTP 502 Bad Gateway (http_502)"
    );
}

#[tokio::test]
async fn connection_errors_name_the_server() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = Client::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
    let err = client.server_info().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot connect to http://127.0.0.1:{port}/api/v1/info"
        )),
        "{text}"
    );
    assert!(!text.contains('\n'));
}

#[tokio::test]
async fn upload_then_reupload_sends_only_new_blocks() {
    let (client, mock) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("data.bin");
    // Repeated content too, so the same block appears twice in one file.
    let mut data = pseudo_random(300_000, 7);
    data.extend_from_slice(&data.clone()[..100_000]);
    data.extend(std::iter::repeat_n(0u8, 80_000));
    std::fs::write(&local, &data).unwrap();

    let progress = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&progress);
    let options = UploadOptions {
        progress: Some(Arc::new(move |done| seen.lock().unwrap().push(done))),
        ..UploadOptions::default()
    };
    let first = client
        .upload_file(&local, "/data.bin", options)
        .await
        .unwrap();
    assert_eq!(first.commit.entry.size, data.len() as u64);
    assert_eq!(first.stats.bytes_total, data.len() as u64);
    let distinct = mock.blocks.lock().unwrap().len() as u64;
    assert_eq!(first.stats.blocks_uploaded, distinct);
    assert!(first.stats.blocks_total > distinct, "{:?}", first.stats);
    assert!(first.stats.bytes_sent_payload < data.len() as u64);
    let progress = progress.lock().unwrap().clone();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(progress.last().copied(), Some(data.len() as u64));

    // The same content again, replacing the file: nothing to send.
    let puts_before = mock.put_calls.load(Ordering::SeqCst);
    let again = client
        .upload_file(
            &local,
            "/data.bin",
            UploadOptions {
                base_rev: first.commit.entry.rev.clone(),
                ..UploadOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(again.stats.blocks_uploaded, 0);
    assert_eq!(again.stats.bytes_sent_payload, 0);
    assert_eq!(mock.put_calls.load(Ordering::SeqCst), puts_before);
    assert_eq!(again.commit.entry.rev.as_deref(), Some("2"));

    // And back down, byte for byte.
    let back = dir.path().join("back.bin");
    let outcome = client
        .download_file("/data.bin", &back, DownloadOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);
    assert_eq!(outcome.stats.bytes_total, data.len() as u64);
    assert_eq!(outcome.stats.blocks_downloaded, distinct);
    assert!(leftovers(dir.path()).is_empty());
}

/// The mock server's chunker settings, as `chunk_file` must use them.
fn mock_chunker() -> cairn_core::ChunkerConfig {
    cairn_core::ChunkerConfig {
        min_size: 1024,
        avg_size: 4096,
        max_size: 16384,
    }
}

/// The file's block list as the sync client's scan makes it, with the mock's chunker.
fn chunk(path: &Path) -> cairn_core::chunk::ChunkedFile {
    cairn_client::chunk_file(&std::fs::File::open(path).unwrap(), &mock_chunker()).unwrap()
}

#[tokio::test]
async fn an_upload_with_known_blocks_sends_only_what_changed_and_checks_the_file() {
    let (client, mock) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("data.bin");
    let mut data = pseudo_random(400_000, 11);
    std::fs::write(&local, &data).unwrap();
    let first = chunk(&local);
    let done = client
        .upload_file_with_blocks(&local, "/data.bin", &first.blocks, UploadOptions::default())
        .await
        .unwrap();
    assert_eq!(done.commit.entry.size, data.len() as u64);
    assert_eq!(done.stats.blocks_uploaded, first.blocks.len() as u64);

    // One byte inserted in the middle: only the blocks around it go up.
    data.insert(200_000, b'!');
    std::fs::write(&local, &data).unwrap();
    let edited = chunk(&local);
    let puts_before = mock.put_calls.load(Ordering::SeqCst);
    let again = client
        .upload_file_with_blocks(
            &local,
            "/data.bin",
            &edited.blocks,
            UploadOptions {
                base_rev: done.commit.entry.rev.clone(),
                ..UploadOptions::default()
            },
        )
        .await
        .unwrap();
    let sent = mock.put_calls.load(Ordering::SeqCst) - puts_before;
    assert!(
        (1..=2).contains(&sent),
        "{sent} blocks sent for a 1-byte insert"
    );
    assert_eq!(again.stats.blocks_uploaded, sent as u64);
    let back = dir.path().join("back.bin");
    client
        .download_file("/data.bin", &back, DownloadOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);

    // A list that does not describe the file is refused and nothing is committed: one
    // whose sizes do not add up to the file's, and one naming a block the file's bytes
    // do not hash to (the server lacks it, so it is read back, and the read is checked).
    let mut wrong_size = edited.blocks.clone();
    wrong_size.pop();
    let mut wrong_hash = edited.blocks.clone();
    wrong_hash[0].0 = BlockHash::of(b"not in the file");
    for blocks in [wrong_size, wrong_hash] {
        let err = client
            .upload_file_with_blocks(&local, "/data.bin", &blocks, UploadOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::ChangedDuringUpload { .. }),
            "{err:?}"
        );
    }
    client
        .download_file("/data.bin", &back, DownloadOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);
}

#[tokio::test]
async fn a_download_over_an_older_copy_fetches_only_the_blocks_it_lacks() {
    let (client, _mock) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("data.bin");
    let mut data = pseudo_random(400_000, 12);
    std::fs::write(&local, &data).unwrap();
    let old = chunk(&local);
    let first = client
        .upload_file_with_blocks(&local, "/data.bin", &old.blocks, UploadOptions::default())
        .await
        .unwrap();
    // Another device inserts a byte in the middle.
    data.insert(200_000, b'!');
    let elsewhere = dir.path().join("elsewhere.bin");
    std::fs::write(&elsewhere, &data).unwrap();
    let edited = chunk(&elsewhere);
    client
        .upload_file_with_blocks(
            &elsewhere,
            "/data.bin",
            &edited.blocks,
            UploadOptions {
                base_rev: first.commit.entry.rev.clone(),
                ..UploadOptions::default()
            },
        )
        .await
        .unwrap();

    let reuse = |path: &Path| DownloadOptions {
        reuse: Some(LocalCopy {
            path: path.to_owned(),
            blocks: old.blocks.clone(),
        }),
        ..DownloadOptions::default()
    };
    let done = client
        .download_file("/data.bin", &local, reuse(&local))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&local).unwrap(), data);
    assert_eq!(done.blocks, edited.blocks);
    assert!(
        (1..=2).contains(&done.stats.blocks_downloaded),
        "{:?}",
        done.stats
    );

    // A copy changed since its list was made: its blocks no longer hash as listed, so
    // every block is fetched, and the result is still right.
    let stale = dir.path().join("stale.bin");
    std::fs::write(&stale, pseudo_random(400_000, 40)).unwrap();
    let back = dir.path().join("back.bin");
    let done = client
        .download_file("/data.bin", &back, reuse(&stale))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);
    assert_eq!(done.stats.blocks_downloaded, done.stats.blocks_total);
}

#[tokio::test]
async fn stale_base_rev_is_a_conflict_with_the_current_entry() {
    let (client, _mock) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("a.txt");
    std::fs::write(&local, b"one").unwrap();
    client
        .upload_file(&local, "/a.txt", UploadOptions::default())
        .await
        .unwrap();
    std::fs::write(&local, b"two").unwrap();
    let err = client
        .upload_file(&local, "/a.txt", UploadOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(err.conflict_current().unwrap().rev.as_deref(), Some("1"));
    assert_eq!(
        err.to_string(),
        "server refused: file /a.txt was changed on the server (conflict)"
    );
}

#[tokio::test]
async fn commit_asking_for_missing_blocks_gets_them() {
    let (client, mock) = start().await;
    *mock.forget_on_first_commit.lock().unwrap() = true;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("b.bin");
    let data = pseudo_random(50_000, 3);
    std::fs::write(&local, &data).unwrap();
    let outcome = client
        .upload_file(&local, "/b.bin", UploadOptions::default())
        .await
        .unwrap();
    assert_eq!(mock.commit_calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        outcome.stats.blocks_uploaded,
        mock.blocks.lock().unwrap().len() as u64 + 1
    );
    let back = dir.path().join("b.back");
    client
        .download_file("/b.bin", &back, DownloadOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);
}

#[tokio::test]
async fn empty_files_round_trip() {
    let (client, mock) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("empty");
    std::fs::write(&local, b"").unwrap();
    let outcome = client
        .upload_file(&local, "/empty", UploadOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome.stats, Default::default());
    assert_eq!(mock.check_calls.load(Ordering::SeqCst), 0);
    let back = dir.path().join("empty.back");
    std::fs::write(&back, b"old content").unwrap();
    client
        .download_file("/empty", &back, DownloadOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), b"");
}

#[tokio::test]
async fn corrupt_blocks_are_never_written() {
    let (client, mock) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("c.bin");
    std::fs::write(&local, pseudo_random(40_000, 5)).unwrap();
    client
        .upload_file(&local, "/c.bin", UploadOptions::default())
        .await
        .unwrap();
    let victim = mock.blocks.lock().unwrap().keys().next().unwrap().clone();
    *mock.corrupt.lock().unwrap() = Some(victim.clone());

    let dest = dir.path().join("dest.bin");
    std::fs::write(&dest, b"keep me").unwrap();
    let err = client
        .download_file("/c.bin", &dest, DownloadOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Corrupt { hash } if *hash == victim),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), b"keep me");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[tokio::test]
async fn folders_and_missing_files_are_refused() {
    let (client, _mock) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let err = client
        .upload_file(dir.path(), "/x", UploadOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotAFile { .. }), "{err:?}");
    let missing = dir.path().join("missing");
    let err = client
        .upload_file(&missing, "/x", UploadOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Io { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&missing.display().to_string()));
    let err = client
        .download_file(
            "/missing",
            &dir.path().join("m"),
            DownloadOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert!(leftovers(dir.path()).is_empty());
}

#[tokio::test]
async fn the_trash_is_listed_page_by_page_and_restore_errors_decoded() {
    let (client, _mock) = start().await;
    let ids: Vec<i64> = client
        .trash_list()
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, [5, 4, 3, 2, 1]);
    let back = client
        .trash_restore(&TrashRestoreRequest {
            id: None,
            path: Some("/f3".into()),
        })
        .await
        .unwrap();
    assert_eq!(back.entry.path, "/f3");
    let err = client
        .trash_restore(&TrashRestoreRequest {
            id: None,
            path: Some("/gone".into()),
        })
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

/// A notification server behind a "proxy" that answers the WebSocket upgrade with a
/// plain 200 page and, when `sse_blocked`, SSE with 404. What gets through says: head
/// 7, then advanced to 8. Without `token_ok` the WebSocket endpoint answers 401.
async fn start_notify(sse_blocked: bool, token_ok: bool) -> Client {
    use axum::response::sse::{Event, Sse};
    use cairn_client::proto::{Notification, PollResponse};
    let head = Notification::Head {
        ns: 1,
        seq: 7,
        cursor: "v1.1-7".into(),
    };
    let advanced = Notification::Advanced {
        ns: 1,
        seq: 8,
        cursor: "v1.1-8".into(),
    };
    let (h, a) = (head.clone(), advanced.clone());
    let app = Router::new()
        .route(
            "/api/v1/notify/ws",
            get(move || async move {
                if !token_ok {
                    return error(StatusCode::UNAUTHORIZED, "unauthorized", "invalid token");
                }
                (StatusCode::OK, "a proxy page").into_response()
            }),
        )
        .route(
            "/api/v1/notify/sse",
            get(move || {
                let (h, a) = (h.clone(), a.clone());
                async move {
                    if sse_blocked {
                        return error(StatusCode::NOT_FOUND, "not_found", "no such endpoint");
                    }
                    let events = futures::stream::iter([h, a]).map(|n| {
                        Ok::<_, std::convert::Infallible>(
                            Event::default().data(serde_json::to_string(&n).unwrap()),
                        )
                    });
                    // Stays open after the two events, as a real stream would.
                    Sse::new(events.chain(futures::stream::pending())).into_response()
                }
            }),
        )
        .route(
            "/api/v1/notify/poll",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let (head, advanced) = (head.clone(), advanced.clone());
                async move {
                    let answer = match q.get("cursor").map(String::as_str) {
                        None => PollResponse {
                            changed: true,
                            notifications: vec![head],
                            cursor: "v1.1-7".into(),
                        },
                        Some("v1.1-7") => PollResponse {
                            changed: true,
                            notifications: vec![advanced],
                            cursor: "v1.1-8".into(),
                        },
                        Some(_) => {
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                            PollResponse {
                                changed: false,
                                notifications: vec![],
                                cursor: "v1.1-8".into(),
                            }
                        }
                    };
                    Json(answer).into_response()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Client::new(&format!("http://{addr}/"), Some("token".into())).unwrap()
}

#[tokio::test]
async fn subscriptions_fall_back_when_a_proxy_blocks_websockets() {
    use cairn_client::Transport;
    for (sse_blocked, want) in [(false, Transport::Sse), (true, Transport::LongPoll)] {
        let client = start_notify(sse_blocked, true).await;
        let mut sub = client.subscribe();
        let within = std::time::Duration::from_secs(30);
        let first = tokio::time::timeout(within, sub.next()).await.unwrap();
        let first = first.unwrap().unwrap();
        assert_eq!((first.seq(), first.cursor()), (Some(7), Some("v1.1-7")));
        assert_eq!(sub.transport(), Some(want));
        let second = tokio::time::timeout(within, sub.next()).await.unwrap();
        assert_eq!(second.unwrap().unwrap().seq(), Some(8));
    }
}

#[tokio::test]
async fn a_refused_token_ends_the_subscription_with_the_error() {
    let client = start_notify(false, false).await;
    let mut sub = client.subscribe();
    let within = std::time::Duration::from_secs(30);
    let err = tokio::time::timeout(within, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert!(tokio::time::timeout(within, sub.next())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_fallback_tries_websockets_again_later() {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::response::sse::{Event, Sse};
    use cairn_client::proto::Notification;
    use cairn_client::{SubscribeOptions, Transport};

    let head = serde_json::to_string(&Notification::Head {
        ns: 1,
        seq: 7,
        cursor: "v1.1-7".into(),
    })
    .unwrap();
    // A proxy blocks WebSockets at first, and later no longer does.
    let ws_passes = Arc::new(AtomicBool::new(false));
    let (passes, ws_head, sse_head) = (ws_passes.clone(), head.clone(), head);
    let app = Router::new()
        .route(
            "/api/v1/notify/ws",
            get(move |upgrade: WebSocketUpgrade| async move {
                if !passes.load(Ordering::SeqCst) {
                    return (StatusCode::OK, "a proxy page").into_response();
                }
                upgrade
                    .protocols(["cairn.notify.v1"])
                    .on_upgrade(move |mut socket| async move {
                        let _ = socket.send(Message::Text(ws_head.into())).await;
                        while let Some(Ok(_)) = socket.recv().await {}
                    })
            }),
        )
        .route(
            "/api/v1/notify/sse",
            get(move || async move {
                let first = Ok::<_, std::convert::Infallible>(Event::default().data(sse_head));
                Sse::new(futures::stream::iter([first]).chain(futures::stream::pending()))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = Client::new(&format!("http://{addr}/"), Some("token".into())).unwrap();

    let mut sub = client.subscribe_with(SubscribeOptions {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        retry_better_after: Duration::from_millis(500),
        ..SubscribeOptions::default()
    });
    let within = Duration::from_secs(30);
    let first = tokio::time::timeout(within, sub.next()).await.unwrap();
    assert_eq!(first.unwrap().unwrap().seq(), Some(7));
    assert_eq!(sub.transport(), Some(Transport::Sse));

    ws_passes.store(true, Ordering::SeqCst);
    // The SSE stream is given up after `retry_better_after`; the WebSocket, passing
    // now, starts again with where the namespace stands.
    // (On a slow machine one retry may come before the flag flips, and fall back again.)
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let again = tokio::time::timeout_at(deadline, sub.next()).await.unwrap();
        assert_eq!(again.unwrap().unwrap().seq(), Some(7));
        if sub.transport() == Some(Transport::WebSocket) {
            break;
        }
    }
}

/// Blocks of 64 KiB to 256 KiB, large enough to go as deltas.
fn big_chunk(path: &Path) -> cairn_core::chunk::ChunkedFile {
    let config = cairn_core::ChunkerConfig {
        min_size: 64 << 10,
        avg_size: 128 << 10,
        max_size: 256 << 10,
    };
    cairn_client::chunk_file(&std::fs::File::open(path).unwrap(), &config).unwrap()
}

#[tokio::test]
async fn changed_blocks_go_as_deltas_and_whole_when_a_delta_fails() {
    let (client, mock) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("data.bin");
    let mut data = pseudo_random(2_000_000, 13);
    std::fs::write(&local, &data).unwrap();
    let old = big_chunk(&local);
    let first = client
        .upload_file_with_blocks(&local, "/data.bin", &old.blocks, UploadOptions::default())
        .await
        .unwrap();
    let replica = dir.path().join("replica.bin");
    client
        .download_file("/data.bin", &replica, DownloadOptions::default())
        .await
        .unwrap();

    // Three edits, each one byte inserted; the first goes as deltas both ways, the
    // second meets a server refusing deltas, the third corrupted patches.
    let mut rev = first.commit.entry.rev.clone();
    let mut before = old.blocks.clone();
    for round in 0..3 {
        *mock.refuse_deltas.lock().unwrap() = round == 1;
        *mock.corrupt_patches.lock().unwrap() = round == 2;
        data.insert(1_000_000 + round * 7, b'!');
        std::fs::write(&local, &data).unwrap();
        let edited = big_chunk(&local);
        let (deltas0, puts0) = (
            mock.delta_puts.load(Ordering::SeqCst),
            mock.put_calls.load(Ordering::SeqCst),
        );
        let done = client
            .upload_file_with_blocks(
                &local,
                "/data.bin",
                &edited.blocks,
                UploadOptions {
                    base_rev: rev.clone(),
                    ..UploadOptions::default()
                },
            )
            .await
            .unwrap();
        rev = done.commit.entry.rev.clone();
        let deltas = mock.delta_puts.load(Ordering::SeqCst) - deltas0;
        let wholes = mock.put_calls.load(Ordering::SeqCst) - puts0;
        match round {
            1 => assert!(
                deltas == 0 && wholes >= 1,
                "{deltas} deltas, {wholes} whole"
            ),
            _ => assert!(
                deltas >= 1 && wholes == 0,
                "{deltas} deltas, {wholes} whole"
            ),
        }
        assert!(
            done.stats.bytes_sent_payload < 64 << 10 || round == 1,
            "{:?}",
            done.stats
        );

        let patches0 = mock.patches_served.load(Ordering::SeqCst);
        let got = client
            .download_file(
                "/data.bin",
                &replica,
                DownloadOptions {
                    reuse: Some(LocalCopy {
                        path: replica.clone(),
                        blocks: before.clone(),
                    }),
                    ..DownloadOptions::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(std::fs::read(&replica).unwrap(), data, "round {round}");
        assert!(mock.patches_served.load(Ordering::SeqCst) > patches0);
        match round {
            // A patch that does not rebuild its block is dropped for the whole block.
            2 => assert!(
                got.stats.bytes_received_payload > 64 << 10,
                "{:?}",
                got.stats
            ),
            _ => assert!(
                got.stats.bytes_received_payload < 16 << 10,
                "{:?}",
                got.stats
            ),
        }
        before = edited.blocks;
    }
}
