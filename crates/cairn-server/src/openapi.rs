//! `/api/v1/info` and the OpenAPI document.

use axum::extract::State;
use axum::Json;
use cairn_proto as proto;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::state::AppState;

/// The API description: its title and its security scheme. The paths and their schemas
/// come from the route registry (`routes.rs`), where every API route is registered with
/// its handlers' `#[utoipa::path]` documentation.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn API",
        description = "Self-hosted file storage and sync."
    ),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

/// The one security scheme: a bearer token from `POST /api/v1/auth/login`. A browser
/// session's cookie (`POST /api/v1/auth/session`) stands in for it wherever it is
/// asked for, with the `X-Cairn-CSRF` header on every method but GET, HEAD and OPTIONS.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "A token from POST /auth/login. A browser session's cookie \
                             (POST /auth/session) works in its place; with it, every \
                             method but GET, HEAD and OPTIONS must send the session's \
                             csrf_token in the X-Cairn-CSRF header.",
                        ))
                        .build(),
                ),
            );
    }
}

/// Builds the document: one operation per handler of every API route, with the schemas
/// they refer to.
pub(crate) fn build_document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for (path, handlers) in crate::routes::route_docs() {
        for handler in handlers {
            doc.paths
                .add_path_operation(&path, handler.methods, handler.operation);
            let components = doc.components.get_or_insert_with(Default::default);
            for (name, schema) in handler.schemas {
                components.schemas.entry(name).or_insert(schema);
            }
        }
    }
    doc
}

/// The OpenAPI document of `/api/v1`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object))
)]
pub(crate) async fn document(State(state): State<AppState>) -> Json<serde_json::Value> {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let mut doc = DOC
        .get_or_init(|| {
            serde_json::to_value(build_document()).expect("the OpenAPI document serializes")
        })
        .clone();
    // The largest block is this server's setting (`chunker.max_size`).
    if let Some(size) = doc.pointer_mut("/components/schemas/BlockRef/properties/size") {
        size["maximum"] = state.config.chunker.max_size.into();
    }
    Json(doc)
}

/// The server's version and chunker sizes.
#[utoipa::path(
    get,
    path = "/info",
    responses((status = 200, description = "The server's version and chunker sizes", body = proto::ServerInfo))
)]
pub(crate) async fn server_info(State(state): State<AppState>) -> Json<proto::ServerInfo> {
    let c = state.config.chunker;
    Json(proto::ServerInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        api_version: proto::API_VERSION.to_owned(),
        chunker: proto::ChunkerInfo {
            min_size: c.min_size as u64,
            avg_size: c.avg_size as u64,
            max_size: c.max_size as u64,
        },
        max_block_size: c.max_size as u64,
    })
}
