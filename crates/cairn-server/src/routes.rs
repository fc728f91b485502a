//! The registry of every HTTP route the server answers.
//!
//! Routers are built with [`Routes`], which records each path it routes. The
//! authorization matrix test reads [`route_paths`] and probes every method of every
//! path: an endpoint without a row in the matrix fails it, so no endpoint can be added
//! without saying who may call it. A unit test below makes sure nothing routes around
//! the registry.
//!
//! The registry also records how large a request body each route takes
//! ([`BodyLimit`]), declared where the route is registered: the `limits` middleware
//! refuses a declared `Content-Length` above it with 413 before reading a byte.

use std::collections::BTreeMap;
use std::sync::RwLock;

use axum::extract::DefaultBodyLimit;
use axum::routing::MethodRouter;
use axum::Router;

use crate::config::Config;
use crate::state::AppState;

/// Where the JSON API lives.
pub(crate) const API: &str = "/api/v1";

/// Every routed path, with the body limit of its methods that take a body.
static PATHS: RwLock<BTreeMap<String, BodyLimit>> = RwLock::new(BTreeMap::new());

/// The largest request body a route takes (on its methods that take one: `GET`, `HEAD`,
/// `DELETE` and `OPTIONS` take at most a JSON document's on every route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// A JSON document or a form: the configured `max_json_body`.
    Json,
    /// At most this many bytes: a block, a batch of blocks, a batch of commits.
    Bytes(usize),
    /// Streamed and chunked as it arrives (a whole-file upload, a file dropped through
    /// a link): no cap; the quota and the body idle timeout bound it.
    Streamed,
}

impl BodyLimit {
    /// The limit in bytes under `config`; `None` for no cap.
    pub fn bytes(self, config: &Config) -> Option<u64> {
        match self {
            BodyLimit::Json => Some(config.max_json_body as u64),
            BodyLimit::Bytes(n) => Some(n as u64),
            BodyLimit::Streamed => None,
        }
    }
}

/// A router whose routes are recorded, under `prefix` (the path it is nested at).
pub(crate) struct Routes {
    prefix: &'static str,
    router: Router<AppState>,
}

impl Routes {
    /// Routes of the JSON API, to be nested at [`API`].
    pub(crate) fn api() -> Self {
        Self::nested_at(API)
    }

    /// Routes to be nested at `prefix` (`""` for the top level).
    pub(crate) fn nested_at(prefix: &'static str) -> Self {
        Self {
            prefix,
            router: Router::new(),
        }
    }

    /// Routes `path` (relative to the prefix) to `route`, whose bodies are JSON
    /// documents at most, and records it.
    pub(crate) fn at(self, path: &'static str, route: MethodRouter<AppState>) -> Self {
        self.at_limited(path, BodyLimit::Json, route)
    }

    /// Routes `path` to `route`, whose bodies may be as large as `limit` says, and
    /// records both. Extractors that buffer a body (`Bytes`, `Multipart`) are given
    /// the same limit.
    pub(crate) fn at_limited(
        mut self,
        path: &'static str,
        limit: BodyLimit,
        route: MethodRouter<AppState>,
    ) -> Self {
        PATHS
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(format!("{}{path}", self.prefix), limit);
        let route = match limit {
            // The JSON routers set the configured limit on the whole group.
            BodyLimit::Json => route,
            BodyLimit::Bytes(n) => route.layer(DefaultBodyLimit::max(n)),
            BodyLimit::Streamed => route.layer(DefaultBodyLimit::disable()),
        };
        self.router = self.router.route(path, route);
        self
    }

    pub(crate) fn build(self) -> Router<AppState> {
        self.router
    }
}

/// Every path the server routes, with its parameters as `{name}`: the input of the
/// authorization matrix test.
pub fn route_paths() -> Vec<String> {
    route_limits().into_iter().map(|(path, _)| path).collect()
}

/// Every path the server routes, with its body limit.
pub fn route_limits() -> Vec<(String, BodyLimit)> {
    drop(crate::routes(&crate::Config::for_data_dir(".")));
    drop(crate::links::public_router());
    PATHS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(path, limit)| (path.clone(), *limit))
        .collect()
}

/// The body limit of the route at `path` (as routed, `{name}` for parameters); a JSON
/// document's for a path nothing routes.
pub(crate) fn body_limit(path: &str) -> BodyLimit {
    PATHS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(path)
        .copied()
        .unwrap_or(BodyLimit::Json)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every route must be recorded, or the authorization matrix could miss it.
    #[test]
    fn nothing_routes_around_the_registry() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![src];
        let mut offenders = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("routes.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    if text.contains(".route(") || text.contains(".route_service(") {
                        offenders.push(path.display().to_string());
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "route with Routes::at, not Router::route: {offenders:?}"
        );
    }

    #[test]
    fn paths_are_recorded() {
        let paths = super::route_paths();
        assert!(
            paths.contains(&"/api/v1/files/list".to_owned()),
            "{paths:?}"
        );
        assert!(paths.contains(&"/healthz".to_owned()), "{paths:?}");
    }
}
