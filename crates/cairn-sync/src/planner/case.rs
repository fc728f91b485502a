//! Names that differ only in letter case. The server holds one entry per name whatever
//! its case (as Dropbox, macOS and Windows do), but a Linux disk can hold `Report.txt`
//! beside `report.txt`. Left alone, the second could never be uploaded (the server
//! refuses it every round), and on a case-insensitive disk a download of one would land
//! on the other. So before anything else is carried over, a local item whose name
//! clashes with another item's is renamed to a conflict copy, which then syncs like
//! any new file; the rename is reported as a conflict.
//!
//! Which item keeps its name: the one on the server, else the one last synced, else
//! (all of them new on this disk) the first in path order. A new local item is not
//! renamed while the item it clashes with is gone from the disk but still synced: that
//! is a delete (or a rename the disk did not show as one, such as an editor saving
//! `a.txt` as `A.txt`) on its way to the server, after which the new name is free. It
//! waits for that instead (were it uploaded meanwhile, the server would refuse it); if
//! the other item comes back (changed on the server while deleted here), the new one
//! is renamed then.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use cairn_core::ServerPath;

use super::{conflict_local, local_subtree_unchanged, Operation, PlanContext, Trees};
use crate::tree::Tree;

/// What the case rule found.
#[derive(Default)]
pub(super) struct CaseClashes {
    /// Conflict-copy renames for the local items whose names clash, by case only, with
    /// another item's.
    pub renames: Vec<Operation>,
    /// New local items that wait, with what is below them, for the item they clash
    /// with to leave the server: nothing is planned for them until it has.
    pub wait: Vec<ServerPath>,
}

/// Finds the clashes by case (see the module's comment).
pub(super) fn plan_case_clashes(t: Trees<'_>, ctx: &PlanContext) -> CaseClashes {
    let mut found = CaseClashes::default();
    let groups = clashing_groups(t);
    if groups.is_empty() {
        return found;
    }
    let mut renamed: Vec<ServerPath> = Vec::new();
    for members in groups.into_values() {
        // Keys sort parents first; what lies below a renamed folder moved with it.
        if members
            .iter()
            .any(|m| renamed.iter().any(|r| m.starts_with(r)))
        {
            continue;
        }
        let keeper = members
            .iter()
            .find(|m| t.remote.get(m).is_some())
            .or_else(|| members.iter().find(|m| t.synced.get(m).is_some()))
            .unwrap_or(&members[0]);
        let keeper_leaving = t.synced.get(keeper).is_some() && t.local.get(keeper).is_none();
        for member in &members {
            // A local item the server lacks at this exact path, which is to go up: new
            // here, or changed here since the server deleted it. (One the server
            // deleted and this disk left alone is simply deleted here.)
            let goes_up = t.local.get(member).is_some()
                && t.remote.get(member).is_none()
                && (t.synced.get(member).is_none() || !local_subtree_unchanged(t, member));
            if member == keeper || !goes_up {
                continue;
            }
            if keeper_leaving {
                found.wait.push((*member).clone());
            } else {
                found.renames.push(conflict_local(t, ctx, member));
                renamed.push((*member).clone());
            }
        }
    }
    found
}

/// The paths of the three trees that share their key with another path, by key, each
/// group sorted. This runs every round, over every path, so it allocates only for the
/// few paths that can clash. Of the paths sharing a key at most one is its own key (has
/// no upper-case letter), so only keys of the others are collected first; a tree
/// without capitals costs one pass and nothing else. Keys are then compared by hash,
/// and built in full only for the groups the hashes put together.
fn clashing_groups<'t>(t: Trees<'t>) -> BTreeMap<String, Vec<&'t ServerPath>> {
    let all = || {
        t.local
            .paths()
            .chain(t.remote.paths())
            .chain(t.synced.paths())
    };
    let mixed: HashSet<u64> = all()
        .filter(|p| !is_own_key(p))
        .map(|p| hash_of(&p.key()))
        .collect();
    if mixed.is_empty() {
        return BTreeMap::new();
    }
    // Per hash of a mixed-case key: the first path seen, or every distinct one once a
    // second turned up.
    let mut seen: HashMap<u64, Seen<'t>> = HashMap::new();
    for path in all() {
        let hash = if is_own_key(path) {
            hash_of(path.as_str())
        } else {
            hash_of(&path.key())
        };
        if !mixed.contains(&hash) {
            continue;
        }
        match seen.entry(hash) {
            Entry::Vacant(slot) => {
                slot.insert(Seen::One(path));
            }
            Entry::Occupied(mut slot) => match slot.get_mut() {
                Seen::One(first) if *first == path => {}
                Seen::One(first) => {
                    let first = *first;
                    slot.insert(Seen::Many(vec![first, path]));
                }
                Seen::Many(paths) => paths.push(path),
            },
        }
    }
    let mut groups: BTreeMap<String, Vec<&ServerPath>> = BTreeMap::new();
    for seen in seen.into_values() {
        if let Seen::Many(paths) = seen {
            for path in paths {
                groups.entry(path.key()).or_default().push(path);
            }
        }
    }
    groups.retain(|_, members| {
        members.sort_unstable();
        members.dedup();
        members.len() > 1
    });
    groups
}

enum Seen<'t> {
    One(&'t ServerPath),
    Many(Vec<&'t ServerPath>),
}

fn hash_of(key: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// Finds, in one tree, the paths that share a key with a given path. Only the paths
/// that are not their own key are indexed (see [`clashing_groups`]); the one that is
/// is looked up directly.
pub(super) struct KeyIndex<'a> {
    mixed: HashMap<String, Vec<&'a ServerPath>>,
}

impl<'a> KeyIndex<'a> {
    pub(super) fn of<N: Clone>(tree: &'a Tree<N>) -> Self {
        let mut mixed: HashMap<String, Vec<&'a ServerPath>> = HashMap::new();
        for path in tree.paths() {
            if !is_own_key(path) {
                mixed.entry(path.key()).or_default().push(path);
            }
        }
        KeyIndex { mixed }
    }

    /// Whether `tree` (the one indexed) holds a path other than `except` with the key
    /// of `path`.
    pub(super) fn taken<N: Clone>(
        &self,
        tree: &Tree<N>,
        path: &ServerPath,
        except: &ServerPath,
    ) -> bool {
        let key = path.key();
        let lower = ServerPath::parse(&key)
            .ok()
            .filter(|lower| lower != except && tree.get(lower).is_some());
        lower.is_some()
            || self
                .mixed
                .get(&key)
                .is_some_and(|paths| paths.iter().any(|p| *p != except))
    }
}

/// Whether the path is its own key: lower-casing changes nothing.
fn is_own_key(path: &ServerPath) -> bool {
    let s = path.as_str();
    if s.is_ascii() {
        return !s.bytes().any(|b| b.is_ascii_uppercase());
    }
    s.chars().all(|c| c.to_lowercase().eq(std::iter::once(c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::p;

    #[test]
    fn own_keys() {
        assert!(is_own_key(&p("/a/b.txt")));
        assert!(!is_own_key(&p("/a/B.txt")));
        assert!(is_own_key(&p("/straße/ü")));
        assert!(!is_own_key(&p("/Ü")));
        assert!(!is_own_key(&p("/ǅ")), "a title-case letter lower-cases too");
    }
}
