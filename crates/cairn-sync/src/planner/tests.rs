//! Plans compared with expected plans, one situation per test.

use cairn_core::ContentHash;

use super::*;
use crate::tree::p;

/// Builds the three trees. Files are written `path=content` (content one letter, which
/// becomes the hash), folders `path/`; local inodes and remote entry ids are given per
/// node so tests can express moves.
#[derive(Default)]
struct World {
    local: Tree<LocalNode>,
    remote: Tree<RemoteNode>,
    synced: Tree<SyncedNode>,
}

fn hash(c: char) -> ContentHash {
    ContentHash([c as u8; 32])
}

impl World {
    fn local(mut self, path: &str, id: u64, content: Option<char>) -> Self {
        self.local.insert(
            p(path),
            LocalNode {
                kind: if content.is_some() {
                    Kind::File
                } else {
                    Kind::Folder
                },
                id,
                size: 1,
                mtime_ns: 1,
                hash: content.map(hash),
            },
        );
        self
    }

    fn remote(mut self, path: &str, id: i64, content: Option<char>) -> Self {
        self.remote.insert(p(path), remote_node(id, content));
        self
    }

    /// A remote file at a revision of its own (not the one its content letter names).
    fn remote_at_rev(mut self, path: &str, id: i64, content: char, rev: &str) -> Self {
        let mut node = remote_node(id, Some(content));
        node.rev = Some(rev.into());
        self.remote.insert(p(path), node);
        self
    }

    fn synced(mut self, path: &str, local_id: u64, remote_id: i64, content: Option<char>) -> Self {
        self.synced.insert(
            p(path),
            SyncedNode {
                kind: if content.is_some() {
                    Kind::File
                } else {
                    Kind::Folder
                },
                local_id,
                remote_id,
                rev: content.map(|c| format!("r{c}")),
                hash: content.map(hash),
            },
        );
        self
    }

    /// The same node on all three trees.
    fn both(self, path: &str, id: u64, content: Option<char>) -> Self {
        self.local(path, id, content)
            .remote(path, id as i64, content)
            .synced(path, id, id as i64, content)
    }

    fn plan(&self) -> Vec<Operation> {
        plan_sync(
            Trees {
                local: &self.local,
                remote: &self.remote,
                synced: &self.synced,
            },
            &PlanContext {
                device: "laptop".into(),
                stamp: "2026-12-01 120000".into(),
            },
        )
    }
}

fn remote_node(id: i64, content: Option<char>) -> RemoteNode {
    RemoteNode {
        kind: if content.is_some() {
            Kind::File
        } else {
            Kind::Folder
        },
        id,
        rev: content.map(|c| format!("r{c}")),
        hash: content.map(hash),
        size: 1,
    }
}

const FOLDER: Option<char> = None;

#[test]
fn in_sync_plans_nothing() {
    let w = World::default()
        .both("/a", 1, FOLDER)
        .both("/a/f", 2, Some('x'));
    assert_eq!(w.plan(), []);
}

#[test]
fn new_local_items_go_up_parents_first() {
    let w = World::default()
        .local("/a", 1, FOLDER)
        .local("/a/f", 2, Some('x'))
        .local("/g", 3, Some('y'));
    assert_eq!(
        w.plan(),
        [
            Operation::MkdirRemote { path: p("/a") },
            Operation::Upload {
                path: p("/g"),
                base_rev: None
            },
        ]
    );
}

#[test]
fn new_remote_items_come_down_parents_first() {
    let w = World::default()
        .remote("/a", 1, FOLDER)
        .remote("/a/f", 2, Some('x'))
        .remote("/g", 3, Some('y'));
    assert_eq!(
        w.plan(),
        [
            Operation::MkdirLocal { path: p("/a") },
            Operation::Download {
                path: p("/g"),
                remote: remote_node(3, Some('y')),
                expect_local: None
            },
        ]
    );
}

#[test]
fn edits_go_the_right_way() {
    let w = World::default()
        .local("/f", 1, Some('y'))
        .remote("/f", 1, Some('x'))
        .synced("/f", 1, 1, Some('x'))
        .local("/g", 2, Some('x'))
        .remote("/g", 2, Some('z'))
        .synced("/g", 2, 2, Some('x'));
    let plan = w.plan();
    assert_eq!(
        plan[0],
        Operation::Upload {
            path: p("/f"),
            base_rev: Some("rx".into())
        }
    );
    assert!(
        matches!(&plan[1], Operation::Download { path, expect_local: Some(l), .. }
        if *path == p("/g") && l.hash == Some(hash('x')))
    );
    assert_eq!(plan.len(), 2);
}

#[test]
fn both_edited_makes_a_conflict_copy_of_the_local_file() {
    let w = World::default()
        .local("/doc.txt", 1, Some('y'))
        .remote("/doc.txt", 1, Some('z'))
        .synced("/doc.txt", 1, 1, Some('x'));
    assert_eq!(
        w.plan(),
        [Operation::ConflictLocal {
            path: p("/doc.txt"),
            to: p("/doc (conflicted copy from laptop 2026-12-01 120000).txt"),
        }]
    );
}

#[test]
fn conflict_copy_names_do_not_clash() {
    let w = World::default()
        .local("/doc.txt", 1, Some('y'))
        .remote("/doc.txt", 2, Some('z'))
        .remote(
            "/doc (conflicted copy from laptop 2026-12-01 120000).txt",
            3,
            Some('q'),
        );
    let conflict = Operation::ConflictLocal {
        path: p("/doc.txt"),
        to: p("/doc (conflicted copy from laptop 2026-12-01 120000 2).txt"),
    };
    assert!(w.plan().contains(&conflict), "{:?}", w.plan());
}

#[test]
fn the_same_change_on_both_sides_is_just_recorded() {
    let w = World::default()
        .local("/f", 5, Some('y'))
        .remote("/f", 9, Some('y'))
        .local("/d", 6, FOLDER)
        .remote("/d", 10, FOLDER);
    let plan = w.plan();
    assert!(
        matches!(&plan[..], [Operation::Record { path: d, node: Some(_) }, Operation::Record { path: f, node: Some(n) }]
        if *d == p("/d") && *f == p("/f") && n.local_id == 5 && n.remote_id == 9)
    );
}

#[test]
fn deletes_carry_over_only_unchanged_content() {
    // Deleted here, unchanged there: delete there, naming the synced revision.
    let w = World::default()
        .remote("/f", 1, Some('x'))
        .synced("/f", 1, 1, Some('x'));
    assert_eq!(
        w.plan(),
        [Operation::DeleteRemote {
            path: p("/f"),
            kind: Kind::File,
            base_rev: Some("rx".into())
        }]
    );
    // Deleted here, edited there: the edit comes back.
    let w = World::default()
        .remote("/f", 1, Some('y'))
        .synced("/f", 1, 1, Some('x'));
    assert!(matches!(
        &w.plan()[..],
        [Operation::Download {
            expect_local: None,
            ..
        }]
    ));
    // Deleted there, edited here: the edit goes up as a new file.
    let w = World::default()
        .local("/f", 1, Some('y'))
        .synced("/f", 1, 1, Some('x'));
    assert_eq!(
        w.plan(),
        [Operation::Upload {
            path: p("/f"),
            base_rev: None
        }]
    );
    // Deleted there, unchanged here: delete here, if still as seen.
    let w = World::default()
        .local("/f", 1, Some('x'))
        .synced("/f", 1, 1, Some('x'));
    assert!(matches!(&w.plan()[..], [Operation::DeleteLocal { expect, .. }] if expect.len() == 1));
}

#[test]
fn a_folder_deleted_here_keeps_what_changed_on_the_server() {
    let w = World::default()
        .remote("/d", 1, FOLDER)
        .synced("/d", 1, 1, FOLDER)
        .remote("/d/old", 2, Some('x'))
        .synced("/d/old", 2, 2, Some('x'))
        .remote("/d/new", 3, Some('y'));
    assert_eq!(
        w.plan(),
        [
            Operation::MkdirLocal { path: p("/d") },
            Operation::DeleteRemote {
                path: p("/d/old"),
                kind: Kind::File,
                base_rev: Some("rx".into())
            },
        ]
    );
    // With nothing new below, the folder goes whole.
    let w = World::default()
        .remote("/d", 1, FOLDER)
        .synced("/d", 1, 1, FOLDER)
        .remote("/d/old", 2, Some('x'))
        .synced("/d/old", 2, 2, Some('x'));
    assert_eq!(
        w.plan(),
        [Operation::DeleteRemote {
            path: p("/d"),
            kind: Kind::Folder,
            base_rev: None
        }]
    );
}

#[test]
fn a_folder_deleted_on_the_server_keeps_local_edits() {
    let w = World::default()
        .local("/d", 1, FOLDER)
        .synced("/d", 1, 1, FOLDER)
        .local("/d/old", 2, Some('x'))
        .synced("/d/old", 2, 2, Some('x'))
        .local("/d/edited", 3, Some('z'))
        .synced("/d/edited", 3, 3, Some('y'));
    let plan = w.plan();
    assert_eq!(plan[0], Operation::MkdirRemote { path: p("/d") });
    assert!(matches!(&plan[1], Operation::DeleteLocal { path, .. } if *path == p("/d/old")));
    assert_eq!(plan.len(), 2, "{plan:?}");
}

#[test]
fn a_local_folder_rename_is_one_server_move() {
    let w = World::default()
        .local("/new", 1, FOLDER)
        .local("/new/f", 2, Some('x'))
        .remote("/old", 1, FOLDER)
        .remote("/old/f", 2, Some('x'))
        .synced("/old", 1, 1, FOLDER)
        .synced("/old/f", 2, 2, Some('x'));
    assert_eq!(
        w.plan(),
        [Operation::MoveRemote {
            from: p("/old"),
            to: p("/new"),
            base_rev: None
        }]
    );
}

#[test]
fn a_server_move_is_one_local_rename() {
    let w = World::default()
        .both("/a", 1, FOLDER)
        .local("/a/f", 2, Some('x'))
        .remote("/f", 2, Some('x'))
        .synced("/a/f", 2, 2, Some('x'));
    assert_eq!(
        w.plan(),
        [Operation::MoveLocal {
            from: p("/a/f"),
            to: p("/f"),
            synced_from: Some(p("/a/f")),
        }]
    );
}

#[test]
fn moves_into_each_other_undo_the_local_one() {
    // Here A went into B; on the server B went into A.
    let w = World::default()
        .local("/B", 2, FOLDER)
        .local("/B/A", 1, FOLDER)
        .remote("/A", 1, FOLDER)
        .remote("/A/B", 2, FOLDER)
        .synced("/A", 1, 1, FOLDER)
        .synced("/B", 2, 2, FOLDER);
    assert_eq!(
        w.plan(),
        [Operation::MoveLocal {
            from: p("/B/A"),
            to: p("/A"),
            synced_from: None,
        }]
    );
}

#[test]
fn the_same_node_moved_two_ways_follows_the_server() {
    let w = World::default()
        .local("/x", 1, Some('a'))
        .remote("/y", 1, Some('a'))
        .synced("/f", 1, 1, Some('a'));
    assert_eq!(
        w.plan(),
        [Operation::MoveLocal {
            from: p("/x"),
            to: p("/y"),
            synced_from: Some(p("/f")),
        }]
    );
    let w = World::default()
        .local("/y", 1, Some('a'))
        .remote("/y", 1, Some('a'))
        .synced("/f", 1, 1, Some('a'));
    assert_eq!(
        w.plan(),
        [Operation::RecordMove {
            from: p("/f"),
            to: p("/y")
        }]
    );
}

#[test]
fn an_atomic_save_is_an_edit_not_a_move() {
    // The editor wrote a new file (new inode) over the old name.
    let w = World::default()
        .local("/f", 7, Some('y'))
        .remote("/f", 1, Some('x'))
        .synced("/f", 1, 1, Some('x'));
    assert_eq!(
        w.plan(),
        [Operation::Upload {
            path: p("/f"),
            base_rev: Some("rx".into())
        }]
    );
}

#[test]
fn a_local_move_of_a_file_edited_on_the_server_names_the_servers_revision() {
    // Found by the simulation: naming the synced revision ("rx") made the server refuse
    // the move every round, and sync never settled.
    let w = World::default()
        .local("/g", 1, Some('x'))
        .remote("/f", 1, Some('y'))
        .synced("/f", 1, 1, Some('x'));
    assert_eq!(
        w.plan(),
        [Operation::MoveRemote {
            from: p("/f"),
            to: p("/g"),
            base_rev: Some("ry".into())
        }]
    );
}

#[test]
fn unchanged_content_at_a_new_revision_is_deleted_or_updated_at_that_revision() {
    // Found by the simulation: another device wrote the same content again (a new
    // revision, here even a new entry); a local delete naming the synced revision was
    // refused every round.
    let w = World::default()
        .remote_at_rev("/f", 9, 'x', "r2")
        .synced("/f", 1, 1, Some('x'));
    assert_eq!(
        w.plan(),
        [Operation::DeleteRemote {
            path: p("/f"),
            kind: Kind::File,
            base_rev: Some("r2".into())
        }]
    );
    let w = w.local("/f", 1, Some('y'));
    assert_eq!(
        w.plan(),
        [Operation::Upload {
            path: p("/f"),
            base_rev: Some("r2".into())
        }]
    );
}

fn conflict(path: &str, to: &str) -> Operation {
    Operation::ConflictLocal {
        path: p(path),
        to: p(to),
    }
}

#[test]
fn a_new_local_name_that_clashes_by_case_is_renamed() {
    // `Notes.txt` beside a synced `notes.txt`: the server would refuse it forever.
    let w = World::default()
        .both("/notes.txt", 1, Some('a'))
        .local("/Notes.txt", 2, Some('b'));
    assert_eq!(
        w.plan(),
        [conflict(
            "/Notes.txt",
            "/Notes (conflicted copy from laptop 2026-12-01 120000).txt"
        )]
    );
    // Also when the clashing name is only on the server so far: a case-insensitive
    // disk would take the download for the local file.
    let w = World::default()
        .remote("/Photos", 7, None)
        .local("/photos", 3, None)
        .local("/photos/x.jpg", 4, Some('x'));
    assert_eq!(
        w.plan(),
        [conflict(
            "/photos",
            "/photos (conflicted copy from laptop 2026-12-01 120000)"
        )],
        "the folder moves aside with what it holds, and nothing below it is renamed"
    );
}

#[test]
fn new_local_names_that_clash_with_each_other_keep_the_first() {
    let w = World::default()
        .local("/d", 1, None)
        .local("/D", 2, None)
        .local("/dD", 3, Some('x'));
    assert_eq!(
        w.plan(),
        [conflict(
            "/d",
            "/d (conflicted copy from laptop 2026-12-01 120000)"
        )]
    );
}

#[test]
fn a_case_rename_is_not_a_clash() {
    // Renamed on disk (same inode): one server move.
    let w = World::default()
        .remote("/a.txt", 1, Some('a'))
        .synced("/a.txt", 1, 1, Some('a'))
        .local("/A.txt", 1, Some('a'));
    assert_eq!(
        w.plan(),
        [Operation::MoveRemote {
            from: p("/a.txt"),
            to: p("/A.txt"),
            base_rev: Some("ra".into())
        }]
    );
    // Saved under the new name as a new file (a new inode): the old name is deleted on
    // the server, and the new one waits for that rather than being renamed.
    let w = World::default()
        .remote("/a.txt", 1, Some('a'))
        .synced("/a.txt", 1, 1, Some('a'))
        .local("/A.txt", 2, Some('b'));
    let plan = w.plan();
    assert!(
        plan.iter()
            .all(|op| !matches!(op, Operation::ConflictLocal { .. })),
        "{plan:?}"
    );
    assert!(plan.contains(&Operation::DeleteRemote {
        path: p("/a.txt"),
        kind: Kind::File,
        base_rev: Some("ra".into())
    }));
    // Renamed on the server: one local rename.
    let w = World::default()
        .remote("/Report", 5, None)
        .synced("/report", 5, 5, None)
        .local("/report", 5, None);
    assert_eq!(
        w.plan(),
        [Operation::MoveLocal {
            from: p("/report"),
            to: p("/Report"),
            synced_from: Some(p("/report")),
        }]
    );
}
