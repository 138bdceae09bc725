//! Bearer tokens with scopes on `/api/v1`.
//!
//! Tokens are configured by their SHA-256 (never in clear), compared in
//! constant time, and carry scopes: `read` for GET, `write` for everything
//! that publishes to the log, `admin` for everything. With no token
//! configured the API is open (development); with tokens, writes always need
//! one and reads need one unless `open_reads` is set.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::{ApiState, Problem};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

/// One accepted token: its name (for logs), hash and scopes.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    pub sha256: [u8; 32],
    pub scopes: Vec<Scope>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("name", &self.name).field("scopes", &self.scopes).finish_non_exhaustive()
    }
}

/// The API's access rules.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub tokens: Vec<Token>,
    /// Let GET requests through without a token.
    pub open_reads: bool,
}

/// SHA-256 of a token, as configured (`vigia token hash` prints it in hex).
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal without an early exit, so timing does not reveal a matching prefix.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    fn token(&self, presented: &str) -> Option<&Token> {
        let hash = hash_token(presented);
        // Compare with every token, whatever matched, to keep timing flat.
        self.tokens.iter().fold(None, |found, t| if same(&t.sha256, &hash) { Some(t) } else { found })
    }
}

/// Middleware: 401 without a valid token, 403 without the scope the method needs.
pub(crate) async fn require(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let auth = &state.auth;
    if auth.tokens.is_empty() {
        return next.run(request).await;
    }
    let needed = match *request.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => Scope::Read,
        // Changing what raises alerts is an operator's decision, not a device's.
        _ if request.uri().path().ends_with("/rules") => Scope::Admin,
        _ => Scope::Write,
    };
    if needed == Scope::Read && auth.open_reads {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let Some(token) = presented.and_then(|p| auth.token(p.trim())) else {
        let mut response = Problem::new(
            StatusCode::UNAUTHORIZED,
            "send a valid token as `Authorization: Bearer <token>`; ask an operator for one",
        )
        .field("Authorization")
        .into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"vigia\""));
        return response;
    };
    let allowed = token
        .scopes
        .iter()
        .any(|s| *s == Scope::Admin || *s == needed || (needed == Scope::Read && *s == Scope::Write));
    if !allowed {
        tracing::info!(token = %token.name, needed = needed.as_str(), "Refused: token lacks the scope.");
        return Problem::new(
            StatusCode::FORBIDDEN,
            format!("token `{}` lacks the `{}` scope this request needs", token.name, needed.as_str()),
        )
        .field("Authorization")
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_by_hash_only() {
        let auth = Auth {
            tokens: vec![Token { name: "ops".into(), sha256: hash_token("s3cret"), scopes: vec![Scope::Read] }],
            open_reads: false,
        };
        assert_eq!(auth.token("s3cret").map(|t| t.name.as_str()), Some("ops"));
        assert!(auth.token("s3cre").is_none());
        assert!(auth.token("").is_none());
        assert!(format!("{:?}", auth.tokens[0]).contains("ops"));
        assert!(!format!("{:?}", auth.tokens[0]).contains("sha256"), "hashes stay out of debug output");
    }
}
