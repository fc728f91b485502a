//! Every future the store returns is `Send`, so axum handlers and spawned tasks can
//! await them. This only has to compile.

use cairn_core::{BlockHash, DeviceId, JournalSeq, NamespaceId, UserId, VersionId};
use cairn_meta::{Actor, CommitFile, MetaStore};

use crate::common::p;

fn assert_send<T: Send>(_: T) {}

#[allow(dead_code, unused_must_use)]
fn futures_are_send(store: &MetaStore, req: CommitFile, actor: &Actor) {
    let (ns, user, path, hash) = (NamespaceId(1), UserId(1), p("/x"), BlockHash([0; 32]));
    assert_send(MetaStore::connect("sqlite::memory:"));
    assert_send(store.create_user("a", "h", false, None));
    assert_send(store.user_count());
    assert_send(store.user_by_name("a"));
    assert_send(store.user_by_id(user));
    assert_send(store.list_users());
    assert_send(store.usage_bytes(user));
    assert_send(store.space_of(ns));
    assert_send(store.check_quota_of(ns, 1));
    assert_send(store.create_device(user, "d"));
    assert_send(store.device(DeviceId(1)));
    assert_send(store.create_token(user, None, &[0; 32]));
    assert_send(store.token_owner(&[0; 32]));
    assert_send(store.delete_token(&[0; 32]));
    assert_send(store.stat(ns, &path));
    assert_send(store.list_folder(ns, &path, None, 1));
    assert_send(store.mkdir(ns, &path, actor));
    assert_send(store.move_entry(ns, &path, &path, actor));
    assert_send(store.copy_entry(ns, &path, &path, actor));
    assert_send(store.delete_entry(ns, &path, actor));
    assert_send(store.commit_file(req));
    assert_send(store.version_blocks(VersionId(1)));
    assert_send(store.blocks_owned_by(user, &[hash]));
    assert_send(store.record_block_upload(user, hash, 1, 1));
    assert_send(store.block_info(hash));
    assert_send(store.journal_since(ns, JournalSeq(0), 1));
    assert_send(store.journal_head(ns));
    assert_send(store.check_consistency());
    assert_send(store.stats());
    assert_send(store.close());
}
