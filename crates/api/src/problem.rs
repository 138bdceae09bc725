//! RFC 9457 problem details: every error names what was wrong and how to fix it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An `application/problem+json` body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong and how to fix it.
    pub detail: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With 503 under backpressure: messages the store has still to finish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_messages: Option<u64>,
    /// With 503 under backpressure: seconds the oldest of them has waited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Sent as the `Retry-After` header (seconds).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            lag_messages: None,
            lag_seconds: None,
            retry_after: None,
        }
    }

    /// A refusal because the store is behind: the lag, and when to retry.
    pub fn lagging(mut self, messages: u64, seconds: f64, retry_after: u64) -> Problem {
        self.lag_messages = Some(messages);
        self.lag_seconds = Some(seconds);
        self.retry_after = Some(retry_after);
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&self)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// axum's own extractor rejections (a query string or path segment that does
/// not parse, JSON with a syntax error) answer in `text/plain`; this turns
/// every such client error into problem+json, naming the query parameter
/// when axum's message does.
pub(crate) async fn plain_rejections(response: Response) -> Response {
    let status = response.status();
    let is_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !status.is_client_error() || !is_text {
        return response;
    }
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
    let detail = String::from_utf8_lossy(&bytes).trim().to_owned();
    let field = detail
        .strip_prefix("Failed to deserialize query string: ")
        .and_then(|rest| rest.split_once(':'))
        .map(|(field, _)| field.trim().to_owned())
        .filter(|f| !f.is_empty() && !f.contains(' '));
    let mut problem = Problem::new(status, format!("{detail}; see /openapi.json for the expected values"));
    if let Some(f) = field {
        problem = problem.field(f);
    }
    problem.into_response()
}
