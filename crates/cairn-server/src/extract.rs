//! Extractors whose rejections use the JSON error shape, so malformed input gets the same
//! kind of answer as every other client error.

use axum::extract::rejection::{
    JsonRejection, MissingJsonContentType, PathRejection, QueryRejection,
};
use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use cairn_proto as proto;

use crate::error::ApiError;

/// `axum::Json` with a JSON error body on rejection, which also takes a whole number
/// written with a fraction (`74.0`) where an integer is expected: JSON Schema counts it
/// as an integer, so a client generated from the API document may send one.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        // Refusals take the path `axum::Json`'s do (`From<JsonRejection>`), same codes.
        if !json_content_type(req.headers()) {
            return Err(JsonRejection::from(MissingJsonContentType::default()).into());
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::from(JsonRejection::from(rejection)))?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection @ JsonRejection::JsonDataError(_)) => {
                // Only on failure, so well-formed requests are parsed once.
                let error = ApiError::from(rejection);
                let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                    return Err(error);
                };
                if !whole_floats_to_integers(&mut value) {
                    return Err(error);
                }
                serde_json::from_value(value).map(Json).map_err(|_| error)
            }
            Err(rejection) => Err(rejection.into()),
        }
    }
}

/// Whether the headers say the body is JSON: `application/json` or `application/*+json`,
/// as `axum::Json` has it.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    }
}

/// Rewrites every float of `value` that is a whole number a float holds exactly as an
/// integer; whether it rewrote any.
fn whole_floats_to_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Only where a float holds every integer exactly (|f| < 2^53): beyond, the
            // number written may not be the one parsed.
            let integer = (f.fract() == 0.0 && f.abs() < 2f64.powi(53))
                .then(|| serde_json::Number::from(f as i64));
            match integer {
                Some(i) => {
                    *n = i;
                    true
                }
                None => false,
            }
        }
        // Every element is rewritten, so no short-circuit here.
        Value::Array(items) => items
            .iter_mut()
            .map(whole_floats_to_integers)
            .fold(false, |any, rewrote| any | rewrote),
        Value::Object(fields) => fields
            .values_mut()
            .map(whole_floats_to_integers)
            .fold(false, |any, rewrote| any | rewrote),
        _ => false,
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` with a JSON error body on rejection. Unlike axum's, it refuses
/// a query string that percent-decodes to invalid UTF-8 instead of silently replacing the
/// bad bytes, so a hostile path never turns into a different, valid one.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or("");
        if !percent_decodes_to_utf8(raw) {
            return Err(ApiError::bad_request(
                "invalid_query",
                "query string is not valid UTF-8 once percent-decoded",
            ));
        }
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

/// Whether every `&`-separated field of a query string percent-decodes to UTF-8.
fn percent_decodes_to_utf8(query: &str) -> bool {
    query.split('&').all(|field| {
        let bytes = field.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match bytes[i] {
                b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        std::str::from_utf8(&out).is_ok()
    })
}

/// The page size a listing's `limit` asks for: [`proto::DEFAULT_PAGE`] when absent, and
/// refused outside 1 to [`proto::MAX_PAGE`] (the documented bounds of every `limit`).
pub fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(proto::DEFAULT_PAGE),
        Some(n) if (1..=proto::MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit {n} is outside 1 to {}", proto::MAX_PAGE),
        )),
    }
}

/// `axum::extract::Path` with a JSON error body on rejection.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct PathParam<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        ApiError::new(
            status,
            "invalid_json",
            format!(
                "request body is not valid JSON for this endpoint: {}",
                rejection.body_text()
            ),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(
            "invalid_query",
            format!("invalid query string: {}", rejection.body_text()),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(
            "invalid_path_parameter",
            format!("invalid URL: {}", rejection.body_text()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decodes_to_utf8 as ok;

    #[test]
    fn query_utf8() {
        assert!(ok("path=/a%20b&limit=3"));
        assert!(ok("path=/caf%C3%A9"));
        assert!(ok("path=100%"));
        assert!(!ok("path=/a%FF"));
        assert!(!ok("path=/a%C3"));
    }
}
