//! The registry of every HTTP route the server answers.
//!
//! Routers are built with [`Routes`], which records each path it routes. The
//! authorization matrix test reads [`route_paths`] and probes every method of every
//! path: an endpoint without a row in the matrix fails it, so no endpoint can be added
//! without saying who may call it. A unit test below makes sure nothing routes around
//! the registry.

use std::collections::BTreeSet;
use std::sync::Mutex;

use axum::routing::MethodRouter;
use axum::Router;

use crate::state::AppState;

/// Where the JSON API lives.
pub(crate) const API: &str = "/api/v1";

static PATHS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

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

    /// Routes `path` (relative to the prefix) to `route`, and records it.
    pub(crate) fn at(mut self, path: &'static str, route: MethodRouter<AppState>) -> Self {
        PATHS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(format!("{}{path}", self.prefix));
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
    drop(crate::routes(&crate::Config::for_data_dir(".")));
    drop(crate::links::public_router());
    PATHS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect()
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
