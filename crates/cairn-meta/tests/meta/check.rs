//! The consistency checker notices each kind of damage. Damage is done with raw SQL
//! on a second connection, since the store itself never does any of this.

use cairn_meta::{Inconsistency, MetaStore};
use sqlx::{Connection, Executor};

use crate::common::*;

async fn damage_is_reported(store: MetaStore, url: String) {
    let (u, actor) = user(&store, "u").await;
    put(&store, &u, &actor, "/d/f.txt", &["one", "two"]).await;
    put(&store, &u, &actor, "/g.txt", &["three"]).await;
    store.mkdir(u.home_ns, &p("/e"), &actor).await.unwrap();
    put(&store, &u, &actor, "/h.txt", &["four"]).await;
    store
        .delete_entry(u.home_ns, &p("/h.txt"), &actor)
        .await
        .unwrap();
    assert_eq!(store.check_consistency().await.unwrap(), vec![]);

    let mut raw = sqlx::AnyConnection::connect(&url).await.unwrap();
    let expect = [
        (
            "UPDATE blocks SET refcount = refcount + 1 WHERE refcount = 1 AND size = 5",
            "RefcountMismatch",
        ),
        ("DELETE FROM journal WHERE seq = 2", "JournalGap"),
        (
            "UPDATE entries SET parent_key = '/nope' WHERE path = '/g.txt'",
            "Orphan",
        ),
        (
            "UPDATE entries SET path_key = '/E' WHERE path = '/e'",
            "KeyMismatch",
        ),
        (
            "UPDATE entries SET size = 1 WHERE path = '/d/f.txt'",
            "CurrentVersionMismatch",
        ),
        (
            "UPDATE versions SET block_count = 7 WHERE size = 5",
            "VersionBlocksMismatch",
        ),
        (
            "UPDATE blocks SET zero_since = 1 WHERE size = 3",
            "ZeroSinceMismatch",
        ),
        // The deleted /h.txt loses its trash item, which loses its entry.
        (
            "UPDATE entries SET trash_id = NULL WHERE path = '/h.txt'",
            "TrashMismatch",
        ),
        ("SELECT 1", "EmptyTrashItem"),
    ];
    for (sql, _) in &expect {
        raw.execute(*sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    raw.close().await.unwrap();

    let found = store.check_consistency().await.unwrap();
    let kinds: Vec<String> = found
        .iter()
        .map(|i| {
            format!("{i:?}")
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    for (_, kind) in &expect {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} not reported in {found:#?}"
        );
    }
    // /g.txt is reported both as an orphan and for its wrong keys (its parent_key is
    // no longer its parent's key); every report reads as a sentence.
    assert!(found.iter().all(|i| !i.to_string().is_empty()));
    assert!(found.contains(&Inconsistency::Orphan {
        ns: u.home_ns,
        path: "/g.txt".into()
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_is_reported_sqlite() {
    run_raw(Backend::Sqlite, damage_is_reported).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_is_reported_postgres() {
    run_raw(Backend::Postgres, damage_is_reported).await;
}
