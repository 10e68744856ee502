//! The one error type of the control plane's API, turned into `{code, message}` at the boundary.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use corral_store::StoreError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field of the request is wrong; `field` lets a form show the message beside it.
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    BadRequest(String),
    /// The request body is over [`crate::validate::MAX_BODY_BYTES`].
    #[error("the request body is larger than {} MiB, the most one API request may carry; send less (docs/api.md lists the limits)", crate::validate::MAX_BODY_BYTES >> 20)]
    TooLarge,
    #[error("missing or wrong API token, or an expired session: log in with `corral login`, or pass --token or set CORRAL_TOKEN (the first start wrote the admin token to DATA_DIR/admin-token)")]
    Unauthorized,
    /// A WebSocket ticket that is unknown, used, expired or for another path.
    #[error("the WebSocket ticket is unknown, used up, expired or for another path; ask for a new one (POST /v1/ws-ticket) right before connecting")]
    BadTicket,
    /// A login with a wrong user name or password; which of the two is not said.
    #[error("wrong user name or password")]
    LoginFailed,
    /// Signed in, but the role (or key) does not allow this; says which role would.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed logins for a user name or from an address; says how long to wait.
    #[error("{message}")]
    TooManyAttempts { message: String, retry_after: std::time::Duration },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A file offered for restore is not a usable backup.
    #[error("{0}")]
    BadBackup(String),
    /// A restore would lock the admin out; says why and how to restore anyway.
    #[error("{0}")]
    WouldLockOut(String),
    /// A host must be deactivated (or disconnected) before this; says how.
    #[error("{0}")]
    HostActive(String),
    /// The request needs the host's agent, which is not connected.
    #[error("host {0} is disconnected; this needs its agent connected (see `corral host ls`)")]
    HostDisconnected(String),
    /// Details go to the log only; the client gets a generic message.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid { field, message: message.into() }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::BadTicket => (StatusCode::UNAUTHORIZED, "bad_ticket"),
            ApiError::LoginFailed => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::BadBackup(_) => (StatusCode::BAD_REQUEST, "bad_backup"),
            ApiError::WouldLockOut(_) => (StatusCode::CONFLICT, "restore_would_lock_out"),
            ApiError::HostDisconnected(_) => (StatusCode::CONFLICT, "host_disconnected"),
            ApiError::HostActive(_) => (StatusCode::CONFLICT, "host_active"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let field = match &self {
            ApiError::Invalid { field, .. } => Some(*field),
            _ => None,
        };
        let retry_after = match &self {
            ApiError::TooManyAttempts { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            _ => None,
        };
        let mut response = (status, axum::Json(ErrorBody { code, message: self.to_string(), field })).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::HostActive(m) => ApiError::HostActive(m),
            StoreError::BadBackup(m) => ApiError::BadBackup(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::backup::BackupError> for ApiError {
    fn from(e: crate::backup::BackupError) -> Self {
        use crate::backup::BackupError;
        match e {
            BackupError::BadBackup(m) => ApiError::BadBackup(m),
            BackupError::Busy => ApiError::Conflict(e.to_string()),
            BackupError::WouldLockOut { .. } => ApiError::WouldLockOut(format!(
                "{e}. To restore it anyway: `corral restore FILE --force` (POST /v1/restore?force=true); the admin token in the data dir keeps working and stays an administrator's"
            )),
            BackupError::Store(e) => e.into(),
            io @ BackupError::Io { .. } => ApiError::Internal(io.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::TooLarge;
        }
        ApiError::BadRequest(format!("the request body must be JSON matching the API: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
