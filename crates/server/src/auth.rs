//! Bearer tokens and their roles (SPEC 4): `ADMIN_TOKEN` may do everything,
//! `INGEST_TOKEN` may post events, `API_TOKEN` may read analytics.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Read,
    Ingest,
    Admin,
}

impl Role {
    fn action(self) -> &'static str {
        match self {
            Role::Read => "read analytics",
            Role::Ingest => "ingest events",
            Role::Admin => "use the admin API",
        }
    }
}

/// The configured tokens. The admin token always exists: when none is
/// configured, the server makes a random one at start.
#[derive(Clone)]
pub struct Tokens {
    admin: String,
    ingest: Option<String>,
    api: Option<String>,
}

/// Who a request's token belongs to; carried to handlers as an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Ingest,
    Api,
}

impl Caller {
    fn may(self, role: Role) -> bool {
        matches!(
            (self, role),
            (Caller::Admin, _) | (Caller::Ingest, Role::Ingest) | (Caller::Api, Role::Read)
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Caller::Admin => "admin",
            Caller::Ingest => "ingest",
            Caller::Api => "api",
        }
    }
}

impl Tokens {
    pub fn new(admin: String, ingest: Option<String>, api: Option<String>) -> Self {
        Tokens { admin, ingest, api }
    }

    pub fn admin(&self) -> &str {
        &self.admin
    }

    /// Whose token this is. Every configured token is compared, each in
    /// constant time, so timing tells nothing about which one nearly matched.
    pub fn identify(&self, presented: &str) -> Option<Caller> {
        let presented = presented.as_bytes();
        let matches = |token: Option<&String>| -> bool {
            token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(presented)))
        };
        let admin = matches(Some(&self.admin));
        let ingest = matches(self.ingest.as_ref());
        let api = matches(self.api.as_ref());
        if admin {
            Some(Caller::Admin)
        } else if ingest {
            Some(Caller::Ingest)
        } else if api {
            Some(Caller::Api)
        } else {
            None
        }
    }
}

/// A random admin token for a server started without one.
pub fn generate_token() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Middleware: 401 without a known token, 403 when its role is not enough.
pub async fn require(
    State((state, role)): State<(AppState, Role)>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    let caller = state
        .tokens
        .identify(presented)
        .ok_or(ApiError::Unauthorized)?;
    if !caller.may(role) {
        return Err(ApiError::Forbidden(role.action()));
    }
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_token() {
        let tokens = Tokens::new("a".repeat(20), Some("i".repeat(20)), Some("r".repeat(20)));
        let admin = tokens.identify(&"a".repeat(20)).unwrap();
        let ingest = tokens.identify(&"i".repeat(20)).unwrap();
        let api = tokens.identify(&"r".repeat(20)).unwrap();
        assert!(admin.may(Role::Admin) && admin.may(Role::Read) && admin.may(Role::Ingest));
        assert!(ingest.may(Role::Ingest) && !ingest.may(Role::Read) && !ingest.may(Role::Admin));
        assert!(api.may(Role::Read) && !api.may(Role::Ingest) && !api.may(Role::Admin));
        assert_eq!(tokens.identify("nope"), None);
        assert_eq!(tokens.identify(""), None);
        assert_eq!(generate_token().len(), 48);
    }
}
