//! Who may do what, decided in one place.
//!
//! A caller's tree is its home namespace with shared folders mounted into it (at the
//! top, as ordinary folder entries of the home). Every handler that takes a path asks
//! [`Access::resolve`] where the path lives and whether the caller may read or change
//! it there, and gets back the namespace, the path inside it and the caller's role;
//! every entry, change and error it answers with is put back into the caller's view by
//! the same [`Access`]. Nothing else in the server compares users to namespaces.

use cairn_core::{NamespaceId, ServerPath};
use cairn_meta::{Entry, JournalEntry, Membership, MetaError, Role, User};

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// What a request needs to do at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// See it: list, stat, download, versions, trash listing.
    Read,
    /// Change it: upload, mkdir, move, copy into, delete, restore, purge.
    Write,
}

/// The caller and the shared folders mounted in its tree. Loaded once per request.
#[derive(Debug, Clone)]
pub struct Access {
    pub auth: AuthUser,
    mounts: Vec<Membership>,
}

/// Where a path of the caller's tree lives.
#[derive(Debug, Clone)]
pub struct Target {
    /// The namespace holding it.
    pub ns: NamespaceId,
    /// The path inside that namespace (`/` for a mount folder itself).
    pub path: ServerPath,
    /// The caller's role there.
    pub role: Role,
    /// The mount it was reached through; `None` in the home namespace.
    pub mount: Option<Membership>,
}

impl Target {
    /// Whether the path is a mount folder itself (the top of a shared folder).
    pub fn is_mount_point(&self) -> bool {
        self.mount.is_some() && self.path.is_root()
    }
}

impl axum::extract::FromRequestParts<AppState> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let auth = AuthUser::from_request_parts(parts, state).await?;
        Access::load(state, auth).await
    }
}

impl Access {
    /// The caller's access: its home and the shared folders it reads.
    pub async fn load(state: &AppState, auth: AuthUser) -> ApiResult<Self> {
        let mounts = state.meta.memberships_of(auth.user.id).await?;
        Ok(Self { auth, mounts })
    }

    /// The access of a public link's creator, with which the link reads or writes;
    /// `None` while the creator's account is disabled, so its links stop working with
    /// its tokens (and work again when it is enabled).
    pub async fn for_link_creator(state: &AppState, creator: User) -> ApiResult<Option<Self>> {
        if !creator.is_enabled() {
            return Ok(None);
        }
        Self::load(state, AuthUser::acting_as(creator))
            .await
            .map(Some)
    }

    /// The caller's home namespace.
    pub fn home(&self) -> NamespaceId {
        self.auth.user.home_ns
    }

    /// The shared folders in the caller's tree.
    pub fn mounts(&self) -> &[Membership] {
        &self.mounts
    }

    /// Every namespace the caller reads, the home first.
    pub fn namespaces(&self) -> Vec<NamespaceId> {
        self.readable().into_iter().map(|(ns, _)| ns).collect()
    }

    /// Every namespace the caller reads, the home first, with its mount (none for the
    /// home).
    pub fn readable(&self) -> Vec<(NamespaceId, Option<&Membership>)> {
        std::iter::once((self.home(), None))
            .chain(self.mounts.iter().map(|m| (m.ns, Some(m))))
            .collect()
    }

    /// The mount reached by `path`, and the path inside its namespace. Mounts are
    /// top-level folders, so only the first segment is compared (by key, as paths are
    /// matched everywhere).
    fn mount_of(&self, path: &ServerPath) -> Option<(&Membership, ServerPath)> {
        let first = path.segments().next()?;
        let first_key = ServerPath::root().join(first).ok()?.key();
        let mount = self
            .mounts
            .iter()
            .find(|m| m.mount_path.key() == first_key)?;
        let rest: Vec<&str> = path.segments().skip(1).collect();
        let inner = if rest.is_empty() {
            ServerPath::root()
        } else {
            ServerPath::parse(&format!("/{}", rest.join("/"))).ok()?
        };
        Some((mount, inner))
    }

    /// Where `path` lives, refused with 403 when the caller's role does not allow
    /// `need` there.
    pub fn resolve(&self, path: &ServerPath, need: Need) -> ApiResult<Target> {
        let Some((mount, inner)) = self.mount_of(path) else {
            return Ok(Target {
                ns: self.home(),
                path: path.clone(),
                role: Role::Owner,
                mount: None,
            });
        };
        if need == Need::Write && !mount.role.can_write() {
            return Err(read_only(mount));
        }
        Ok(Target {
            ns: mount.ns,
            path: inner,
            role: mount.role,
            mount: Some(mount.clone()),
        })
    }

    /// The mount of namespace `ns` in the caller's tree, if it is a shared one.
    pub fn mount_for(&self, ns: NamespaceId) -> Option<&Membership> {
        self.mounts.iter().find(|m| m.ns == ns)
    }

    /// A path inside namespace `ns` as the caller sees it.
    pub fn outer_path(&self, ns: NamespaceId, inner: &ServerPath) -> ServerPath {
        match self.mount_for(ns) {
            Some(m) => inner
                .rebase(&ServerPath::root(), &m.mount_path)
                .unwrap_or_else(|| m.mount_path.clone()),
            None => inner.clone(),
        }
    }

    /// An entry of namespace `ns` as the caller sees it: a shared folder's root is its
    /// mount folder.
    pub fn outer_entry(&self, mut entry: Entry) -> Entry {
        if let Some(m) = self.mount_for(entry.ns) {
            if entry.path.is_root() {
                entry.id = m.mount_entry;
            }
            entry.path = self.outer_path(entry.ns, &entry.path);
        }
        entry
    }

    /// A journal row of namespace `ns` as the caller sees it.
    pub fn outer_change(&self, mut row: JournalEntry) -> JournalEntry {
        if self.mount_for(row.ns).is_some() {
            row.path = self.outer_path(row.ns, &row.path);
            if let cairn_meta::ChangeKind::Move { from } | cairn_meta::ChangeKind::Copy { from } =
                &mut row.kind
            {
                *from = self.outer_path(row.ns, from);
            }
        }
        row
    }

    /// A store error about namespace `ns`, with its paths as the caller sees them.
    pub fn outer_error(&self, ns: NamespaceId, err: MetaError) -> ApiError {
        if self.mount_for(ns).is_none() {
            return err.into();
        }
        let out = |p: ServerPath| self.outer_path(ns, &p);
        let err = match err {
            MetaError::NotFound(p) => MetaError::NotFound(out(p)),
            MetaError::AlreadyExists(p) => MetaError::AlreadyExists(out(p)),
            MetaError::NotAFolder(p) => MetaError::NotAFolder(out(p)),
            MetaError::IsAFolder(p) => MetaError::IsAFolder(out(p)),
            MetaError::InvalidMove { from, to } => MetaError::InvalidMove {
                from: out(from),
                to: out(to),
            },
            MetaError::RevConflict { path, current } => MetaError::RevConflict {
                path: out(path),
                current: current.map(|e| self.outer_entry(e)),
            },
            other => other,
        };
        err.into()
    }
}

/// The caller of an administrators' endpoint: an account with the admin flag (401
/// without a token, 403 for any other account).
#[derive(Debug, Clone)]
pub struct Admin(pub AuthUser);

impl axum::extract::FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let auth = AuthUser::from_request_parts(parts, state).await?;
        if !auth.user.is_admin {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "admin_only",
                "only an administrator may do this",
            ));
        }
        Ok(Admin(auth))
    }
}

impl Admin {
    /// The administrator's name, for the log.
    pub fn name(&self) -> &str {
        &self.0.user.name
    }
}

/// 403 for a change a viewer asked for.
pub fn read_only(mount: &Membership) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "read_only",
        format!(
            "{} is shared with you by {} as a viewer: you can read it but not change it; \
             ask {} to make you an editor",
            mount.mount_path, mount.owner_name, mount.owner_name
        ),
    )
}
