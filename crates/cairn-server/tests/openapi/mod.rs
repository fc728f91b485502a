//! The OpenAPI document against the routes the server answers: every `/api/v1` route of
//! the registry is documented with each method it answers, the document names nothing
//! else, and what it says is complete (every reference resolves, every path parameter is
//! declared, every operation documents its success and the error shape).

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{Backend, TestServer};

/// The methods an API route might answer.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

async fn document(s: &TestServer) -> Value {
    let (status, doc) = s
        .call_as(None, Method::GET, "/api/v1/openapi.json", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    doc
}

/// Every (method, path) the document describes.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if METHODS
                .iter()
                .any(|m| m.as_str().eq_ignore_ascii_case(method))
            {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// Every (method, path) of the registry's `/api/v1` routes that the running server
/// answers with something other than 405, asked without a token or a body: the router
/// refuses a method it does not route before any extractor runs.
async fn routed(s: &TestServer) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    // The tus endpoints follow the tus protocol's own specification and are left out
    // of the document on purpose (the registry lists them).
    let protocol = cairn_server::routes::protocol_paths();
    for path in cairn_server::route_paths() {
        if !path.starts_with("/api/v1/") || protocol.contains(&path) {
            continue;
        }
        let concrete: String = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in METHODS {
            let resp = s
                .http
                .request(method.clone(), s.url(&concrete))
                .send()
                .await
                .unwrap();
            if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
                out.insert((method.as_str().to_owned(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_api_route_is_documented_and_nothing_else() {
    let s = TestServer::start(Backend::Sqlite).await;
    let doc = document(&s).await;
    let documented = documented(&doc);
    let routed = routed(&s).await;
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routed but not documented: {undocumented:?}; documented but not routed: {unrouted:?}"
    );
    // The pages outside the API are not in its document.
    for path in doc["paths"].as_object().unwrap().keys() {
        assert!(path.starts_with("/api/v1/"), "{path}");
    }
    assert!(documented.contains(&("GET".to_owned(), "/api/v1/shares".to_owned())));
    assert!(documented.contains(&("POST".to_owned(), "/api/v1/shares/remove".to_owned())));
    s.finish().await;
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_complete() {
    let s = TestServer::start(Backend::Sqlite).await;
    let doc = document(&s).await;
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").expect(r);
        assert!(schemas.contains_key(name), "{r} is not in the document");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let params: BTreeSet<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{method} {path}");
                    p["name"].as_str().unwrap()
                })
                .collect();
            assert_eq!(declared, params, "path parameters of {method} {path}");
            let id = op["operationId"].as_str().expect("an operationId");
            assert!(operation_ids.insert(id), "operationId {id} is not unique");
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|k| k.starts_with('2') || k == "101"),
                "{method} {path} documents no success"
            );
            assert_eq!(
                responses["default"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{method} {path}"
            );
            let public = [
                ("get", "/api/v1/info"),
                ("get", "/api/v1/openapi.json"),
                ("post", "/api/v1/auth/login"),
                ("post", "/api/v1/auth/session"),
            ];
            assert_eq!(
                op["security"].is_array(),
                !public.contains(&(method.as_str(), path.as_str())),
                "security of {method} {path}"
            );
        }
    }
    s.finish().await;
}

#[tokio::test]
async fn the_document_states_what_the_server_enforces() {
    let s = TestServer::start(Backend::Sqlite).await;
    let doc = document(&s).await;
    let op = |method: &str, path: &str| doc["paths"][path][method].clone();
    // Answers that are not 200.
    for (method, path, status) in [
        ("post", "/api/v1/files/mkdir", "201"),
        ("post", "/api/v1/files/copy", "201"),
        ("post", "/api/v1/devices", "201"),
        ("post", "/api/v1/links", "201"),
        ("post", "/api/v1/shares", "201"),
        ("put", "/api/v1/blocks/{hash}", "201"),
        ("post", "/api/v1/files/delete", "204"),
        ("post", "/api/v1/links/revoke", "204"),
        ("post", "/api/v1/shares/remove", "204"),
        ("post", "/api/v1/auth/logout", "204"),
    ] {
        let responses = &op(method, path)["responses"];
        assert!(responses[status].is_object(), "{method} {path} {status}");
        assert!(responses["200"].is_null(), "{method} {path} answers no 200");
    }
    let schemas = &doc["components"]["schemas"];
    // A path is absolute, a hash 64 hex digits, and the server parses both.
    let path = &schemas["ApiPath"];
    let pattern = path["pattern"].as_str().unwrap();
    assert_eq!(pattern, cairn_proto::PATH_PATTERN);
    assert_eq!(path["minLength"], 1);
    // A request naming one entry takes any path but the root, which it refuses.
    assert_eq!(
        schemas["PathRequest"]["properties"]["path"]["$ref"],
        "#/components/schemas/EntryPath"
    );
    assert_eq!(
        schemas["EntryPath"]["pattern"],
        cairn_proto::ENTRY_PATH_PATTERN
    );
    // Revisions and cursors are what the server hands out, nothing looser.
    assert_eq!(
        schemas["Revision"]["pattern"],
        cairn_proto::revision::PATTERN
    );
    assert_eq!(
        schemas["DeltaCursor"]["pattern"],
        cairn_proto::cursor::PATTERN
    );
    assert_eq!(schemas["HashHex"]["pattern"], cairn_proto::HASH_PATTERN);
    assert_eq!(
        schemas["DeviceRequest"]["properties"]["name"]["$ref"],
        "#/components/schemas/DeviceName"
    );
    let hash_param = &op("get", "/api/v1/blocks/{hash}")["parameters"][0];
    assert_eq!(hash_param["schema"]["$ref"], "#/components/schemas/HashHex");
    // An id is an integer, and a batch body an object with at most 1000 items.
    assert_eq!(
        schemas["LinkRevokeRequest"]["properties"]["id"]["type"],
        "integer"
    );
    assert_eq!(schemas["ContentBatchRequest"]["type"], "object");
    assert_eq!(
        schemas["ContentBatchRequest"]["properties"]["paths"]["maxItems"],
        1000
    );
    assert!(schemas["ContentBatchRequest"]["required"]
        .as_array()
        .unwrap()
        .contains(&Value::from("paths")));
    // The largest block is this server's setting.
    let (_, info) = s.call(Method::GET, "/api/v1/info", None).await;
    assert_eq!(
        schemas["BlockRef"]["properties"]["size"]["maximum"],
        info["chunker"]["max_size"]
    );
    // JSON Schema counts 7.0 as an integer, so the server takes it as one (no link 7
    // here), but 7.5 is no id.
    let revoke = |id: Value| {
        s.call(
            Method::POST,
            "/api/v1/links/revoke",
            Some(serde_json::json!({ "id": id })),
        )
    };
    let (status, body) = revoke(serde_json::json!(7.0)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = revoke(serde_json::json!(7.5)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    s.finish().await;
}
