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
//!
//! A route of the JSON API is registered as an [`Endpoint`], built by [`endpoint!`] from
//! handlers annotated with `#[utoipa::path]`: each handler is routed at the methods its
//! documentation names, and the documentation is recorded with the route. The OpenAPI
//! document is made from these records, so an API route cannot exist without its
//! entry, nor an entry without its route. Pages outside the API (`/s/…`, `/healthz`,
//! `/metrics`) are registered with [`Routes::page`] and are not in the document.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use cairn_proto as proto;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::{RefOr, Response, Schema};
use utoipa::PartialSchema;

use crate::config::Config;
use crate::state::AppState;

/// Where the JSON API lives.
pub(crate) const API: &str = "/api/v1";

/// Every routed path, with the body limit of its methods that take a body.
static PATHS: RwLock<BTreeMap<String, BodyLimit>> = RwLock::new(BTreeMap::new());

/// The API's paths that follow a protocol of their own and are not in its document.
static PROTOCOL_PATHS: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// The documentation of every API route, by the path it is routed at.
static DOCS: RwLock<BTreeMap<String, Vec<Documented>>> = RwLock::new(BTreeMap::new());

/// One handler's documentation, as its `#[utoipa::path]` attribute gives it.
#[derive(Clone)]
pub(crate) struct Documented {
    /// The methods the handler is routed at.
    pub(crate) methods: Vec<HttpMethod>,
    pub(crate) operation: Operation,
    /// The schemas its parameters, body and responses refer to.
    pub(crate) schemas: Vec<(String, RefOr<Schema>)>,
}

/// A route of the JSON API: one path, its handlers, and their documentation. Built with
/// [`endpoint!`].
pub(crate) struct Endpoint {
    path: Option<String>,
    route: MethodRouter<AppState>,
    docs: Vec<Documented>,
}

impl Default for Endpoint {
    fn default() -> Self {
        Self {
            path: None,
            route: MethodRouter::new(),
            docs: Vec::new(),
        }
    }
}

impl Endpoint {
    /// Adds `handler`, documented by `P` (the `__path_NAME` struct that
    /// `#[utoipa::path]` generates beside handler `NAME`), at the methods `P` names.
    /// Every handler of one endpoint must be documented at the same path.
    pub(crate) fn with<P, H, T>(mut self, handler: H) -> Self
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences,
        H: Handler<T, AppState>,
        T: 'static,
    {
        let path = P::path();
        match &self.path {
            Some(p) => assert_eq!(p, &path, "one endpoint, one path"),
            None => self.path = Some(path.clone()),
        }
        let methods = P::methods();
        for method in &methods {
            self.route = self.route.on(method_filter(method), handler.clone());
        }
        let mut operation = P::operation();
        // utoipa names an operation after its handler, and several areas have a `list`:
        // the area (the path's first segment, also its tag) makes the name unique, as
        // OpenAPI requires.
        let area = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
            .replace('.', "_");
        operation.operation_id = Some(format!(
            "{area}_{}",
            operation.operation_id.as_deref().unwrap_or_default()
        ));
        operation.tags = Some(vec![area]);
        // Every error the server gives has the one JSON shape (`ApiError`), including
        // axum's own (405, 413, 415 …) through the `json_errors` middleware.
        operation
            .responses
            .responses
            .entry("default".to_owned())
            .or_insert_with(|| {
                RefOr::T(
                    Response::builder()
                        .description("An error, in the JSON error shape")
                        .content(
                            "application/json",
                            utoipa::openapi::Content::new(Some(
                                utoipa::openapi::Ref::from_schema_name("ErrorBody"),
                            )),
                        )
                        .build(),
                )
            });
        let mut schemas = vec![
            ("ErrorBody".to_owned(), proto::ErrorBody::schema()),
            ("ErrorDetail".to_owned(), proto::ErrorDetail::schema()),
            // Parameters refer to these, and parameters' schemas are not collected.
            ("ApiPath".to_owned(), proto::ApiPath::schema()),
            ("EntryPath".to_owned(), proto::EntryPath::schema()),
            ("HashHex".to_owned(), proto::HashHex::schema()),
            ("Revision".to_owned(), proto::Revision::schema()),
            ("DeltaCursor".to_owned(), proto::DeltaCursor::schema()),
        ];
        <P as utoipa::__dev::SchemaReferences>::schemas(&mut schemas);
        self.docs.push(Documented {
            methods,
            operation,
            schemas,
        });
        self
    }
}

fn method_filter(method: &HttpMethod) -> MethodFilter {
    match method {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Options => MethodFilter::OPTIONS,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Trace => MethodFilter::TRACE,
    }
}

/// An [`Endpoint`] of the named handlers, each annotated with `#[utoipa::path]` (and its
/// `__path_NAME` struct in scope beside it).
macro_rules! endpoint {
    ($($handler:ident),+ $(,)?) => {
        paste::paste! {
            $crate::routes::Endpoint::default()
                $(.with::<[<__path_ $handler>], _, _>($handler))+
        }
    };
}
pub(crate) use endpoint;

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

    /// Routes an API endpoint, whose bodies are JSON documents at most, and records it
    /// with its documentation.
    pub(crate) fn at(self, endpoint: Endpoint) -> Self {
        self.at_limited(BodyLimit::Json, endpoint)
    }

    /// Routes an API endpoint whose bodies may be as large as `limit` says, and
    /// records it with its limit and its documentation.
    pub(crate) fn at_limited(self, limit: BodyLimit, endpoint: Endpoint) -> Self {
        assert_eq!(self.prefix, API, "documented endpoints are the API's");
        let path = endpoint.path.expect("an endpoint has a handler");
        DOCS.write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(format!("{}{path}", self.prefix), endpoint.docs);
        self.route_limited(path, limit, endpoint.route)
    }

    /// Routes a path of the API that speaks a protocol with a specification of its
    /// own, which its handlers follow rather than the JSON API's conventions (tus,
    /// `tus/`): recorded with its body limit for the authorization matrix and the body
    /// guard, and left out of the OpenAPI document, whose fuzzing could not know its
    /// rules (see ARCHITECTURE.md, "Resumable uploads").
    pub(crate) fn protocol(
        self,
        path: &'static str,
        limit: BodyLimit,
        route: MethodRouter<AppState>,
    ) -> Self {
        assert_eq!(
            self.prefix, API,
            "protocol routes live under the API's prefix"
        );
        PROTOCOL_PATHS
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(format!("{}{path}", self.prefix));
        self.route_limited(path.to_owned(), limit, route)
    }

    /// Routes a page outside the API (not in its document), whose bodies are JSON
    /// documents or forms at most, and records it.
    pub(crate) fn page(self, path: &'static str, route: MethodRouter<AppState>) -> Self {
        self.page_limited(path, BodyLimit::Json, route)
    }

    /// Routes a page outside the API whose bodies may be as large as `limit` says.
    pub(crate) fn page_limited(
        self,
        path: &'static str,
        limit: BodyLimit,
        route: MethodRouter<AppState>,
    ) -> Self {
        assert_ne!(self.prefix, API, "API routes are documented: Routes::at");
        self.route_limited(path.to_owned(), limit, route)
    }

    /// Routes `path` to `route`, whose bodies may be as large as `limit` says, and
    /// records both. Extractors that buffer a body (`Bytes`, `Multipart`) are given
    /// the same limit.
    fn route_limited(
        mut self,
        path: String,
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
        self.router = self.router.route(&path, route);
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
    drop(crate::dav::router());
    PATHS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(path, limit)| (path.clone(), *limit))
        .collect()
}

/// The paths under `/api/v1` that speak a protocol of their own (tus) and are left out
/// of the OpenAPI document on purpose.
pub fn protocol_paths() -> Vec<String> {
    drop(route_limits());
    PROTOCOL_PATHS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect()
}

/// The documentation of every API route, by its path (with the API's prefix): what the
/// OpenAPI document is made of.
pub(crate) fn route_docs() -> BTreeMap<String, Vec<Documented>> {
    drop(route_limits());
    DOCS.read().unwrap_or_else(|e| e.into_inner()).clone()
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
