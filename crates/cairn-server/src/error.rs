//! One error type for every handler, rendered as the one JSON error shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_meta::MetaError;
use cairn_proto::{EntryInfo, ErrorBody, ErrorDetail};
use cairn_store::StoreError;

use crate::block_manager::BlockError;
use crate::convert::entry_info;

/// An error a handler returns. Client errors carry a message for the user; internal
/// errors are logged and answered with a generic 500 that reveals nothing.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub current: Option<Box<EntryInfo>>,
    pub missing_blocks: Option<Vec<String>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            current: None,
            missing_blocks: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// A block that metadata references is missing from the store or fails
    /// verification. A 500, since the server is at fault and not the request; the code
    /// `block_damaged` tells clients that retrying will not help. Its bytes are never
    /// sent.
    /// `file` names the file being downloaded, when there is one.
    pub fn block_damaged(
        hash: cairn_core::BlockHash,
        file: Option<&cairn_core::ServerPath>,
    ) -> Self {
        tracing::error!("block {hash} is damaged (missing or corrupt); run `cairn admin fsck`");
        let what = match file {
            Some(path) => {
                format!("{path} is damaged on the server (block {hash} is missing or corrupt)")
            }
            None => format!("block {hash} is damaged on the server (missing or corrupt)"),
        };
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "block_damaged",
            format!("{what}; ask the administrator to run `cairn admin fsck`"),
        )
    }

    /// Logs the real cause and answers 500 without internals.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {err}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error; the server log has details",
        )
    }
}

impl ApiError {
    /// The error as it appears in a body: on its own in an error response, or as one
    /// item's result in a batch.
    pub fn into_detail(self) -> ErrorDetail {
        ErrorDetail {
            code: self.code.to_owned(),
            message: self.message,
            current: self.current,
            missing_blocks: self.missing_blocks,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = ErrorBody {
            error: self.into_detail(),
        };
        (status, Json(body)).into_response()
    }
}

impl From<MetaError> for ApiError {
    fn from(err: MetaError) -> Self {
        use StatusCode as S;
        let message = err.to_string();
        match err {
            MetaError::NotFound(_) => Self::new(S::NOT_FOUND, "not_found", message),
            MetaError::AlreadyExists(_) => Self::new(S::CONFLICT, "already_exists", message),
            MetaError::NotAFolder(_) => Self::new(S::CONFLICT, "not_a_folder", message),
            MetaError::IsAFolder(_) => Self::new(S::CONFLICT, "is_a_folder", message),
            // Schema-valid paths that the tree refuses (a folder into itself): a
            // conflict with what is there, like a name that is taken.
            MetaError::InvalidMove { .. } => Self::new(S::CONFLICT, "invalid_move", message),
            MetaError::BlockSizeMismatch { .. } => {
                Self::bad_request("block_size_mismatch", message)
            }
            MetaError::InvalidPath(_) => Self::bad_request("invalid_path", message),
            MetaError::RootFolder => Self::bad_request("root_folder", message),
            MetaError::NoSuchVersion(_) => Self::not_found(message),
            MetaError::NoSuchTrashItem(_) => Self::not_found(message),
            MetaError::QuotaExceeded { .. } => Self::new(S::FORBIDDEN, "quota_exceeded", message),
            MetaError::NotShareable(_) => Self::new(S::CONFLICT, "not_shareable", message),
            MetaError::UserExists(_) => Self::new(S::CONFLICT, "user_exists", message),
            MetaError::NoSuchUser(_) => Self::new(S::NOT_FOUND, "no_such_user", message),
            MetaError::LastAdmin(_) => Self::new(S::CONFLICT, "last_admin", message),
            MetaError::InvalidUserName(_) => Self::bad_request("invalid_name", message),
            MetaError::AppPasswordExists(_) => {
                Self::new(S::CONFLICT, "app_password_exists", message)
            }
            MetaError::NoSuchAppPassword(_) => Self::not_found(message),
            MetaError::RevConflict { current, .. } => {
                let mut e = Self::new(S::CONFLICT, "conflict", message);
                e.current = current.as_ref().map(|c| Box::new(entry_info(c)));
                e
            }
            // The request is fine; the server lacks what it names until it is uploaded.
            MetaError::MissingBlocks(hashes) => {
                let mut e = Self::new(S::CONFLICT, "missing_blocks", message);
                e.missing_blocks = Some(hashes.iter().map(|h| h.to_hex()).collect());
                e
            }
            other => Self::internal(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(hash) => Self::not_found(format!("block {hash} not found")),
            StoreError::Corrupt(hash) => Self::block_damaged(hash, None),
            StoreError::Unavailable { .. } => {
                tracing::warn!("{err}");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the block store is not answering; nothing was changed, try again shortly",
                )
            }
            other => Self::internal(other),
        }
    }
}

impl From<BlockError> for ApiError {
    fn from(err: BlockError) -> Self {
        let message = err.to_string();
        match err {
            BlockError::TooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "block_too_large", message)
            }
            BlockError::HashMismatch { .. } => Self::bad_request("hash_mismatch", message),
            BlockError::NotHeld(_) => Self::not_found(message),
            BlockError::BadDelta { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_delta", message)
            }
            BlockError::Damaged { hash, file } => Self::block_damaged(hash, file.as_ref()),
            BlockError::Interrupted(_) => Self::bad_request("upload_interrupted", message),
            BlockError::Meta(err) => (*err).into(),
            BlockError::Store(err) => err.into(),
            BlockError::Task(err) => Self::internal(err),
        }
    }
}

impl From<cairn_core::PathError> for ApiError {
    fn from(err: cairn_core::PathError) -> Self {
        Self::bad_request("invalid_path", err.to_string())
    }
}

impl From<cairn_core::HashParseError> for ApiError {
    fn from(err: cairn_core::HashParseError) -> Self {
        Self::bad_request("invalid_hash", err.to_string())
    }
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
