//! The trash end to end: a real server, the `cairn trash` commands, `cairn admin gc`,
//! and the metadata store read directly once the server has stopped.

mod support;

use std::collections::BTreeMap;

use cairn_client::proto::LoginRequest;
use cairn_client::Client;
use cairn_core::BlockHash;
use support::{Server, ADMIN_PASSWORD};

const FILES: usize = 1000;
const FOLDERS: usize = 20;

fn path_of(i: usize) -> String {
    format!("/tree/d{:02}/f{i:03}.txt", i % FOLDERS)
}

fn first_content(i: usize) -> String {
    format!("file {i} of the tree\n")
}

fn later_content(i: usize, version: usize) -> String {
    format!("file {i} of the tree, version {version}\n")
}

/// Every file of the tree with its current content hash and revision, and its whole
/// version history, read through the API.
type Snapshot = BTreeMap<String, (serde_json::Value, serde_json::Value)>;

async fn snapshot(api: &Client) -> Snapshot {
    let mut out = BTreeMap::new();
    for d in 0..FOLDERS {
        for entry in api.list(&format!("/tree/d{d:02}")).await.unwrap() {
            let versions = api.versions(&entry.path).await.unwrap();
            let current = serde_json::json!({
                "content_hash": entry.content_hash,
                "rev": entry.rev,
                "size": entry.size,
            });
            out.insert(
                entry.path.clone(),
                (current, serde_json::to_value(&versions.versions).unwrap()),
            );
        }
    }
    out
}

#[test]
fn a_deleted_tree_comes_back_whole_and_a_purge_then_gc_frees_its_blocks() {
    let server = Server::start();
    let cli = server.login("admin");
    let rt = tokio::runtime::Runtime::new().unwrap();

    // A thousand files, put through the library rather than a thousand processes; every
    // fiftieth has a second version, every two hundredth a third.
    let api = rt.block_on(async {
        let anonymous = Client::new(&server.url, None).unwrap();
        let login = anonymous
            .login(&LoginRequest {
                username: "admin".into(),
                password: ADMIN_PASSWORD.into(),
                device_name: Some("bulk".into()),
            })
            .await
            .unwrap();
        let api = Client::new(&server.url, Some(login.token)).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..8 {
            let api = api.clone();
            tasks.spawn(async move {
                for i in (worker..FILES).step_by(8) {
                    let body = first_content(i).into_bytes();
                    let mut rev = api
                        .put_content(&path_of(i), body.into(), None, false)
                        .await
                        .unwrap()
                        .entry
                        .rev;
                    let versions = match i {
                        _ if i % 200 == 0 => 3,
                        _ if i % 50 == 0 => 2,
                        _ => 1,
                    };
                    for v in 2..=versions {
                        let body = later_content(i, v).into_bytes();
                        rev = api
                            .put_content(&path_of(i), body.into(), rev.as_deref(), false)
                            .await
                            .unwrap()
                            .entry
                            .rev;
                    }
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        // Outside the tree, a file with the same content as one inside it.
        let body = first_content(7).into_bytes();
        api.put_content("/outside/shared.txt", body.into(), None, false)
            .await
            .unwrap();
        api
    });
    let before = rt.block_on(snapshot(&api));
    assert_eq!(before.len(), FILES);
    assert_eq!(before["/tree/d00/f200.txt"].1.as_array().unwrap().len(), 3);
    let cli_versions = cli.json(&["versions", "/tree/d10/f050.txt", "--json"]);
    assert_eq!(cli_versions.as_array().unwrap().len(), 2);

    let before_rm = rt.block_on(api.latest_cursor()).unwrap();
    cli.ok(&["rm", "/tree"]);
    cli.fails(&["stat", "/tree/d00/f000.txt"], "does not exist");
    let items = cli.json(&["trash", "list", "--json"]);
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["path"], "/tree");
    assert_eq!(items[0]["kind"], "folder");
    assert_eq!(items[0]["file_count"], FILES as u64);
    let table = cli.ok(&["trash", "list"]);
    assert!(table.contains("/tree/  (1000 files)"), "{table}");

    let restored = cli.ok(&["trash", "restore", "/tree"]);
    assert_eq!(restored.trim(), "restored /tree to /tree");
    // A sync client reading the delta sees the delete and the restore of every entry:
    // 1,000 files, 20 folders and /tree itself, each way.
    let kinds = rt.block_on(delta_kinds(&api, &before_rm));
    assert_eq!(
        kinds.get("delete"),
        Some(&(FILES + FOLDERS + 1)),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.get("restore"),
        Some(&(FILES + FOLDERS + 1)),
        "{kinds:?}"
    );
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    let after = rt.block_on(snapshot(&api));
    assert!(before == after, "the tree came back different");
    assert_eq!(
        cli.json(&["versions", "/tree/d10/f050.txt", "--json"]),
        cli_versions
    );
    assert_eq!(
        cli.json(&["trash", "list", "--json"]),
        serde_json::json!([])
    );

    let before_purge = rt.block_on(api.latest_cursor()).unwrap();
    cli.ok(&["rm", "/tree"]);
    let purged = cli.ok(&["trash", "purge", "/tree"]);
    let kinds = rt.block_on(delta_kinds(&api, &before_purge));
    assert_eq!(kinds.get("purge"), Some(&1), "{kinds:?}");
    assert!(purged.starts_with("purged 1 item ("), "{purged}");
    assert_eq!(
        cli.json(&["trash", "list", "--json"]),
        serde_json::json!([])
    );
    cli.fails(&["trash", "restore", "/tree"], "nothing deleted from /tree");
    // Emptying an empty trash is fine and says so.
    let emptied = cli.ok(&["trash", "purge"]);
    assert_eq!(emptied.trim(), "purged 0 items (0 B) from the trash");

    // With the server stopped, its metadata shows the references gone: every block
    // only the tree used has none (garbage collection may take it), while the block the
    // outside file shares keeps that file's reference.
    let data = server.stop();
    let url = format!(
        "sqlite://{}?mode=rwc",
        data.path().join("cairn.db").display()
    );
    rt.block_on(async {
        let meta = cairn_meta::MetaStore::connect(&url).await.unwrap();
        let refcount = |content: String| {
            let meta = meta.clone();
            async move {
                meta.block_info(BlockHash::of(content.as_bytes()))
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("no block for {content:?}"))
            }
        };
        for content in [
            first_content(3),
            first_content(999),
            first_content(200),
            later_content(200, 2),
            later_content(200, 3),
            later_content(50, 2),
        ] {
            let info = refcount(content.clone()).await;
            assert_eq!(info.refcount, 0, "{content:?}");
            assert!(info.zero_since.is_some(), "{content:?}");
        }
        let shared = refcount(first_content(7)).await;
        assert_eq!((shared.refcount, shared.zero_since), (1, None));
        assert_eq!(meta.stats().await.unwrap().live_files, 1);
        assert!(meta.check_consistency().await.unwrap().is_empty());
        meta.close().await;
    });

    // Garbage collection (grace 0: the grace period counts as passed) then frees every
    // block only the tree used, and the store's size falls back to the one block the
    // outside file still references. Each small file is one block: 999 first versions
    // (the 1000th is the shared one), 20 second and 5 third versions.
    let (files_before, bytes_before) = block_store_size(data.path());
    assert_eq!(files_before, 1 + 999 + 20 + 5);
    let out = std::process::Command::new(support::BIN)
        .args(["admin", "gc", "--grace", "0", "--json", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["blocks_deleted"], 999 + 20 + 5, "{report}");
    let (files_after, bytes_after) = block_store_size(data.path());
    assert_eq!(files_after, 1, "only the shared block is left");
    assert_eq!(
        report["bytes_freed"].as_u64().unwrap(),
        bytes_before - bytes_after,
        "{report}"
    );
    let server = Server::start_in(data);
    let cli = server.login("admin");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("shared.txt");
    cli.ok(&["get", "/outside/shared.txt", local.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&local).unwrap(), first_content(7));
}

/// How many changes of each kind the delta after `cursor` holds, read page by page.
async fn delta_kinds(api: &Client, cursor: &str) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    let mut cursor = cursor.to_owned();
    loop {
        let page = api.delta(Some(&cursor), Some(500)).await.unwrap();
        for change in &page.changes {
            let kind = serde_json::to_value(change.kind).unwrap();
            *kinds.entry(kind.as_str().unwrap().to_owned()).or_insert(0) += 1;
        }
        cursor = page.cursor;
        if !page.has_more {
            return kinds;
        }
    }
}

/// How many block files the local block store holds, and their bytes on disk.
fn block_store_size(data: &std::path::Path) -> (u64, u64) {
    fn walk(dir: &std::path::Path, total: &mut (u64, u64)) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                walk(&entry.path(), total);
            } else if entry.file_name().len() == 64 {
                total.0 += 1;
                total.1 += meta.len();
            }
        }
    }
    let mut total = (0, 0);
    walk(&data.join("blocks"), &mut total);
    total
}
