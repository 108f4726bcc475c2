//! The error answer every route gives: `{"error": {code, status, message}}`.

use serde::{Deserialize, Serialize};

/// The body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, and (in `message`) how to fix it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// The HTTP status code.
    pub code: u16,
    /// The gRPC-style status name: `INVALID_ARGUMENT`, `NOT_FOUND`…
    pub status: String,
    pub message: String,
}

/// The gRPC-style status name of an HTTP status code.
pub fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "FAILED_PRECONDITION",
        413 => "OUT_OF_RANGE",
        405 => "UNIMPLEMENTED",
        415 => "INVALID_ARGUMENT",
        429 => "RESOURCE_EXHAUSTED",
        507 => "RESOURCE_EXHAUSTED",
        _ => "INTERNAL",
    }
}

impl ErrorBody {
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                status: status_name(code).to_string(),
                message: message.into(),
            },
        }
    }
}
