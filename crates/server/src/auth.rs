//! Bearer tokens and their roles (SPEC 4): `ADMIN_TOKEN` may do everything,
//! `INGEST_TOKEN` may post events, `API_TOKEN` may read analytics.
//!
//! A handler states what it needs by taking an [`Authorized`] extractor as
//! its first argument (`Authorized<Reader>`, `Authorized<Ingester>`,
//! `Authorized<Administrator>`): 401 without a known token, 403 when the
//! token's role is not enough, before any other part of the request is
//! looked at. An extractor rather than a middleware layer: the check is a
//! few comparisons, and a layer per route group cost the hottest route more
//! than the check itself (a boxed service cloned and a future boxed per
//! request).
//!
//! The scheme is matched without regard to case (`bearer`, `BEARER`: RFC
//! 7235). Failed authentications are counted and slowed per client address
//! ([`failures`]): 429 once an address fails too often.

pub mod failures;

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::rate_limit::ClientIp;
use crate::state::AppState;

/// What a route requires of its caller.
pub trait Role {
    /// For the 403 message: "this token may not {ACTION}".
    const ACTION: &'static str;
    fn allows(caller: Caller) -> bool;
}

/// Reads analytics and subscribes to their updates: API and admin tokens.
pub struct Reader;
/// Posts events: ingest and admin tokens.
pub struct Ingester;
/// Uses the admin API: the admin token.
pub struct Administrator;

impl Role for Reader {
    const ACTION: &'static str = "read analytics";
    fn allows(caller: Caller) -> bool {
        matches!(caller, Caller::Admin | Caller::Api)
    }
}

impl Role for Ingester {
    const ACTION: &'static str = "ingest events";
    fn allows(caller: Caller) -> bool {
        matches!(caller, Caller::Admin | Caller::Ingest)
    }
}

impl Role for Administrator {
    const ACTION: &'static str = "use the admin API";
    fn allows(caller: Caller) -> bool {
        caller == Caller::Admin
    }
}

/// A request whose bearer token grants role `R`.
pub struct Authorized<R: Role> {
    pub caller: Caller,
    role: PhantomData<R>,
}

impl<R: Role> FromRequestParts<AppState> for Authorized<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Ok(ClientIp(ip)) = ClientIp::from_request_parts(parts, state).await;
        if let Some(wait) = state.auth_failures.blocked(ip) {
            return Err(ApiError::AuthFailures(wait));
        }
        let caller = match state.tokens.caller(&parts.headers) {
            Ok(caller) => caller,
            Err(failure) => {
                return Err(match state.auth_failures.failed(ip, failure) {
                    Some(wait) => ApiError::AuthFailures(wait),
                    None => ApiError::Unauthorized,
                });
            }
        };
        if !R::allows(caller) {
            return Err(ApiError::Forbidden(R::ACTION));
        }
        Ok(Authorized {
            caller,
            role: PhantomData,
        })
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

/// Who a request's token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    Admin,
    Ingest,
    Api,
}

impl Caller {
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

    /// The caller named by an `Authorization: Bearer` header.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, AuthFailure> {
        let credentials = headers
            .get(header::AUTHORIZATION)
            .ok_or(AuthFailure::Missing)?
            .to_str()
            .map_err(|_| AuthFailure::Invalid)?;
        let presented = match credentials.trim_start().split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(AuthFailure::Invalid),
        };
        self.identify(presented).ok_or(AuthFailure::Invalid)
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

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// Another scheme, or a token that is not configured.
    Invalid,
}

impl AuthFailure {
    /// The `reason` label of the failures metric.
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Invalid => "invalid",
        }
    }
}

/// A random admin token for a server started without one.
pub fn generate_token() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        let may = |c| {
            (
                Administrator::allows(c),
                Reader::allows(c),
                Ingester::allows(c),
            )
        };
        assert_eq!(may(admin), (true, true, true));
        assert_eq!(may(ingest), (false, false, true));
        assert_eq!(may(api), (false, true, false));
        assert_eq!(tokens.identify("nope"), None);
        assert_eq!(tokens.identify(""), None);
        assert_eq!(generate_token().len(), 48);
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_others_are_refused() {
        let tokens = Tokens::new("a".repeat(20), None, None);
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            tokens.caller(&headers)
        };
        let admin = "a".repeat(20);
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            assert_eq!(with(&format!("{scheme} {admin}")), Ok(Caller::Admin));
        }
        assert_eq!(with(&format!("Bearer   {admin} ")), Ok(Caller::Admin));
        assert_eq!(with(&format!("Basic {admin}")), Err(AuthFailure::Invalid));
        assert_eq!(with(&format!("Bearer{admin}")), Err(AuthFailure::Invalid));
        assert_eq!(with("Bearer nope"), Err(AuthFailure::Invalid));
        assert_eq!(tokens.caller(&HeaderMap::new()), Err(AuthFailure::Missing));
    }
}
