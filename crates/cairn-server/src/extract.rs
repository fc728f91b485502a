//! Extractors whose rejections use the JSON error shape, so malformed input gets the same
//! kind of answer as every other client error.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// `axum::Json` with a JSON error body on rejection.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

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
