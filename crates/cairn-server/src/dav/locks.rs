//! WebDAV locks (RFC 4918 §6, §9.10–9.11), kept in the metadata store
//! (`MetaStore::dav_locks`) so that they hold across nodes and restarts.
//!
//! A lock is stored on a path inside a namespace, so every member of a shared folder
//! meets the same locks whatever name the folder has in their tree; the lock system of
//! a request ([`DbLocks`]) turns the caller's paths into those and back. Which locks
//! conflict and which cover a path are the pure rules below ([`Rules`]), the same ones
//! `dav-server`'s in-memory lock system applies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_core::{NamespaceId, ServerPath};
use cairn_meta::DavLockRow;
use dav_server::davpath::DavPath;
use dav_server::ls::{DavLock, DavLockSystem, LsFuture};
use futures::FutureExt;
use xmltree::Element;

use super::fs::CairnFs;
use super::paths;

/// The longest a lock is granted for, whatever the client asks (Windows asks for
/// "Infinite"); clients refresh the locks they hold.
pub(crate) const MAX_LOCK_SECS: u64 = 3600;

/// The lock rules over one namespace's live locks, by path key (paths match without
/// regard to case, as everywhere in Cairn).
pub(crate) struct Rules<'a> {
    pub(crate) locks: &'a [DavLockRow],
}

/// Whether a lock on `lock` with depth `deep` covers `path`.
fn covers(lock: &str, deep: bool, path: &str) -> bool {
    lock == path || (deep && is_below(path, lock))
}

/// Whether `path` lies strictly below `folder` (keys).
fn is_below(path: &str, folder: &str) -> bool {
    if folder == "/" {
        return path != "/";
    }
    path.len() > folder.len() && path.starts_with(folder) && path.as_bytes()[folder.len()] == b'/'
}

impl Rules<'_> {
    /// The lock a new one at `path` would conflict with, if any: a lock covering the
    /// path, or (for a deep one) a lock below it, unless both are shared.
    pub(crate) fn conflict(&self, path: &str, deep: bool, shared: bool) -> Option<&DavLockRow> {
        self.locks.iter().find(|l| {
            let key = l.path.key();
            let overlaps = covers(&key, l.deep, path) || (deep && is_below(&key, path));
            overlaps && !(shared && l.shared)
        })
    }

    /// The lock that stops a change at `path` (and, with `deep`, below it) by a caller
    /// holding `tokens` as `principal`: any covering lock it does not hold, except
    /// that among shared locks holding one is enough.
    pub(crate) fn blocking(
        &self,
        path: &str,
        deep: bool,
        principal: Option<&str>,
        ignore_principal: bool,
        tokens: &[String],
    ) -> Option<&DavLockRow> {
        let held = |l: &DavLockRow| {
            tokens.contains(&l.token) && (ignore_principal || principal == l.principal.as_deref())
        };
        let relevant: Vec<&DavLockRow> = self
            .locks
            .iter()
            .filter(|l| {
                let key = l.path.key();
                covers(&key, l.deep, path) || (deep && is_below(&key, path))
            })
            .collect();
        if let Some(exclusive) = relevant.iter().find(|l| !l.shared && !held(l)) {
            return Some(exclusive);
        }
        let shared: Vec<&&DavLockRow> = relevant.iter().filter(|l| l.shared).collect();
        if !shared.is_empty() && !shared.iter().any(|l| held(l)) {
            return Some(shared[0]);
        }
        None
    }

    /// The locks that cover `path` (for `lockdiscovery`).
    pub(crate) fn covering(&self, path: &str) -> Vec<&DavLockRow> {
        self.locks
            .iter()
            .filter(|l| covers(&l.path.key(), l.deep, path))
            .collect()
    }

    /// The locks at `path` or below it.
    pub(crate) fn under(&self, path: &str) -> Vec<&DavLockRow> {
        self.locks
            .iter()
            .filter(|l| {
                let key = l.path.key();
                key == path || is_below(&key, path)
            })
            .collect()
    }
}

/// The lock system of one request: the caller's paths resolved through its tree.
#[derive(Debug, Clone)]
pub(crate) struct DbLocks {
    pub(crate) fs: CairnFs,
    /// The live locks of each namespace this request has looked at, read once: a
    /// PROPFIND asks about every entry it lists (`lockdiscovery`).
    pub(crate) seen: Arc<Mutex<HashMap<NamespaceId, Vec<DavLockRow>>>>,
}

impl DbLocks {
    pub(crate) fn new(fs: CairnFs) -> Self {
        Self {
            fs,
            seen: Arc::default(),
        }
    }
}

/// Where a lock path lives: its namespace and path there (key), or `None` when the
/// path is not one the caller can reach.
fn place(fs: &CairnFs, path: &DavPath) -> Option<(NamespaceId, ServerPath)> {
    let path = paths::server_path(path).ok()?;
    let target = fs.access.resolve(&path, crate::access::Need::Read).ok()?;
    Some((target.ns, target.path))
}

fn lock_of(fs: &CairnFs, row: &DavLockRow) -> DavLock {
    let outer = fs.access.outer_path(row.ns, &row.path);
    DavLock {
        token: row.token.clone(),
        path: Box::new(paths::dav_path(&outer)),
        principal: row.principal.clone(),
        owner: row
            .owner_xml
            .as_deref()
            .and_then(|xml| Element::parse(xml.as_bytes()).ok())
            .map(Box::new),
        timeout_at: row
            .timeout_at
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)),
        timeout: row
            .timeout_secs
            .map(|s| Duration::from_secs(s.max(0) as u64)),
        shared: row.shared,
        deep: row.deep,
    }
}

/// A lock's timeout as granted: at most [`MAX_LOCK_SECS`].
fn granted(timeout: Option<Duration>) -> (i64, i64) {
    let secs = timeout
        .map(|t| t.as_secs().clamp(1, MAX_LOCK_SECS))
        .unwrap_or(MAX_LOCK_SECS);
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
        + secs as i64 * 1000;
    (secs as i64, at)
}

fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The `<D:owner>` element as standalone XML: `dav-server` hands it over with the
/// `D` prefix of the request it came in, so the prefix is declared on it.
fn owner_to_xml(owner: &Element) -> String {
    let mut owner = owner.clone();
    let mut namespaces = owner
        .namespaces
        .clone()
        .unwrap_or_else(xmltree::Namespace::empty);
    namespaces.force_put("D", "DAV:");
    owner.namespaces = Some(namespaces);
    let mut out = Vec::new();
    let config = xmltree::EmitterConfig::new().write_document_declaration(false);
    let _ = owner.write_with_config(&mut out, config);
    String::from_utf8_lossy(&out).into_owned()
}

/// The dead lock a refusal points at when the store could not be asked: refusing is
/// the safe answer.
fn unknown_lock(path: &DavPath) -> DavLock {
    DavLock {
        token: String::new(),
        path: Box::new(path.clone()),
        principal: None,
        owner: None,
        timeout_at: None,
        timeout: None,
        shared: false,
        deep: false,
    }
}

impl DbLocks {
    /// The live lock `token`, when it covers `path`.
    async fn held_at(&self, path: &DavPath, token: &str) -> Result<DavLockRow, ()> {
        let (ns, inner) = place(&self.fs, path).ok_or(())?;
        match self.fs.state.meta.dav_lock(token).await.map_err(drop)? {
            Some(l) if l.ns == ns && covers(&l.path.key(), l.deep, &inner.key()) => Ok(l),
            _ => Err(()),
        }
    }

    async fn live(&self, ns: NamespaceId) -> Option<Vec<DavLockRow>> {
        if let Some(rows) = self
            .seen
            .lock()
            .ok()
            .and_then(|seen| seen.get(&ns).cloned())
        {
            return Some(rows);
        }
        match self.fs.state.meta.dav_locks(ns).await {
            Ok(rows) => {
                if let Ok(mut seen) = self.seen.lock() {
                    seen.insert(ns, rows.clone());
                }
                Some(rows)
            }
            Err(err) => {
                tracing::warn!("cannot read WebDAV locks: {err}");
                None
            }
        }
    }
}

impl DavLockSystem for DbLocks {
    fn lock(
        &'_ self,
        path: &DavPath,
        principal: Option<&str>,
        owner: Option<&Element>,
        timeout: Option<Duration>,
        shared: bool,
        deep: bool,
    ) -> LsFuture<'_, Result<DavLock, DavLock>> {
        let path = path.clone();
        let principal = principal.map(str::to_owned);
        let owner_xml = owner.map(owner_to_xml);
        async move {
            let Some((ns, inner)) = place(&self.fs, &path) else {
                return Err(unknown_lock(&path));
            };
            let (secs, at) = granted(timeout);
            let row = DavLockRow {
                token: new_token(),
                ns,
                path: inner.clone(),
                principal,
                owner_xml,
                timeout_secs: Some(secs),
                timeout_at: Some(at),
                shared,
                deep,
            };
            let key = inner.key();
            let made = self
                .fs
                .state
                .meta
                .dav_lock_create(&row, |live| {
                    Rules { locks: live }.conflict(&key, deep, shared).cloned()
                })
                .await;
            match made {
                Ok(Ok(())) => Ok(lock_of(&self.fs, &row)),
                Ok(Err(other)) => Err(lock_of(&self.fs, &other)),
                Err(err) => {
                    tracing::warn!("cannot store a WebDAV lock: {err}");
                    Err(unknown_lock(&path))
                }
            }
        }
        .boxed()
    }

    fn unlock(&'_ self, path: &DavPath, token: &str) -> LsFuture<'_, Result<(), ()>> {
        let (path, token) = (path.clone(), token.to_owned());
        async move {
            self.held_at(&path, &token).await?;
            self.fs
                .state
                .meta
                .dav_locks_remove(&[token])
                .await
                .map_err(drop)?;
            Ok(())
        }
        .boxed()
    }

    fn refresh(
        &'_ self,
        path: &DavPath,
        token: &str,
        timeout: Option<Duration>,
    ) -> LsFuture<'_, Result<DavLock, ()>> {
        let (path, token) = (path.clone(), token.to_owned());
        async move {
            self.held_at(&path, &token).await?;
            let (secs, at) = granted(timeout);
            let row = self
                .fs
                .state
                .meta
                .dav_lock_refresh(&token, Some(secs), Some(at))
                .await
                .map_err(drop)?
                .ok_or(())?;
            Ok(lock_of(&self.fs, &row))
        }
        .boxed()
    }

    fn check(
        &'_ self,
        path: &DavPath,
        principal: Option<&str>,
        ignore_principal: bool,
        deep: bool,
        submitted_tokens: &[String],
    ) -> LsFuture<'_, Result<(), DavLock>> {
        let path = path.clone();
        let principal = principal.map(str::to_owned);
        let tokens = submitted_tokens.to_vec();
        async move {
            // A path outside the caller's reach holds no lock it could meet; the
            // operation itself refuses it.
            let Some((ns, inner)) = place(&self.fs, &path) else {
                return Ok(());
            };
            let Some(live) = self.live(ns).await else {
                return Err(unknown_lock(&path));
            };
            let rules = Rules { locks: &live };
            match rules.blocking(
                &inner.key(),
                deep,
                principal.as_deref(),
                ignore_principal,
                &tokens,
            ) {
                Some(l) => Err(lock_of(&self.fs, l)),
                None => Ok(()),
            }
        }
        .boxed()
    }

    fn discover(&'_ self, path: &DavPath) -> LsFuture<'_, Vec<DavLock>> {
        let path = path.clone();
        async move {
            let Some((ns, inner)) = place(&self.fs, &path) else {
                return Vec::new();
            };
            let live = self.live(ns).await.unwrap_or_default();
            Rules { locks: &live }
                .covering(&inner.key())
                .into_iter()
                .map(|l| lock_of(&self.fs, l))
                .collect()
        }
        .boxed()
    }

    fn delete(&'_ self, path: &DavPath) -> LsFuture<'_, Result<(), ()>> {
        let path = path.clone();
        async move {
            let (ns, inner) = place(&self.fs, &path).ok_or(())?;
            let live = self.live(ns).await.ok_or(())?;
            let tokens: Vec<String> = Rules { locks: &live }
                .under(&inner.key())
                .into_iter()
                .map(|l| l.token.clone())
                .collect();
            self.fs
                .state
                .meta
                .dav_locks_remove(&tokens)
                .await
                .map_err(drop)?;
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(token: &str, path: &str, deep: bool, shared: bool) -> DavLockRow {
        DavLockRow {
            token: token.to_owned(),
            ns: NamespaceId(1),
            path: ServerPath::parse(path).unwrap(),
            principal: Some("alice".to_owned()),
            owner_xml: None,
            timeout_secs: None,
            timeout_at: None,
            shared,
            deep,
        }
    }

    #[test]
    fn a_deep_lock_covers_its_subtree_and_a_shallow_one_only_itself() {
        let locks = [
            lock("a", "/Docs", true, false),
            lock("b", "/x.txt", false, false),
        ];
        let rules = Rules { locks: &locks };
        assert!(rules.conflict("/docs/report.txt", false, false).is_some());
        assert!(rules.conflict("/docs", false, false).is_some());
        assert!(rules.conflict("/docsother", false, false).is_none());
        assert!(rules.conflict("/x.txt", false, false).is_some());
        assert!(rules.conflict("/x.txt/y", false, false).is_none());
        // A deep lock on the root meets every lock below.
        assert!(rules.conflict("/", true, false).is_some());
        assert_eq!(rules.covering("/docs/a/b").len(), 1);
        assert_eq!(rules.under("/").len(), 2);
    }

    #[test]
    fn a_lock_owner_survives_storage() {
        let xml = r#"<D:lockinfo xmlns:D="DAV:"><D:owner><D:href>litmus test suite</D:href></D:owner></D:lockinfo>"#;
        let info = Element::parse(xml.as_bytes()).unwrap();
        let mut owner = info.get_child("owner").unwrap().clone();
        owner.prefix = Some("D".to_owned());
        let stored = owner_to_xml(&owner);
        let back = Element::parse(stored.as_bytes()).unwrap();
        assert_eq!(back.name, "owner");
        let href = back.get_child("href").unwrap();
        assert_eq!(href.get_text().unwrap(), "litmus test suite");
    }

    #[test]
    fn shared_locks_share_and_exclusive_ones_do_not() {
        let locks = [lock("s", "/f", false, true)];
        let rules = Rules { locks: &locks };
        assert!(rules.conflict("/f", false, true).is_none());
        assert!(rules.conflict("/f", false, false).is_some());
    }

    #[test]
    fn a_change_needs_the_token_of_every_exclusive_lock_and_its_taker() {
        let locks = [lock("t", "/f", false, false)];
        let rules = Rules { locks: &locks };
        let t = vec!["t".to_owned()];
        assert!(rules
            .blocking("/f", false, Some("alice"), false, &[])
            .is_some());
        assert!(rules
            .blocking("/f", false, Some("alice"), false, &t)
            .is_none());
        assert!(rules
            .blocking("/f", false, Some("bob"), false, &t)
            .is_some());
        assert!(rules.blocking("/f", false, Some("bob"), true, &t).is_none());
        // Deleting the folder above needs it too.
        assert!(rules
            .blocking("/", true, Some("alice"), false, &[])
            .is_some());
        assert!(rules
            .blocking("/g", true, Some("alice"), false, &[])
            .is_none());
    }
}
