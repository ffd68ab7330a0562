//! The dashboard (`/`) and the API reference (`/docs`): static pages
//! embedded in the binary, which talk to the API like any client (the
//! token is the user's, kept in the tab's session storage). Nothing is
//! fetched from elsewhere: the Content-Security-Policy allows this origin
//! only.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::state::AppState;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");
const DOCS: &str = include_str!("assets/docs.html");
const DOCS_SCRIPT: &str = include_str!("assets/docs.js");

/// This origin only (`'self'` covers the page's own `ws:`/`wss:` too);
/// `data:` images for the empty favicon.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    let page = |body: &'static str, content_type: &'static str| {
        get(move || async move {
            (
                [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
                body,
            )
                .into_response()
        })
    };
    let html = "text/html; charset=utf-8";
    let js = "text/javascript; charset=utf-8";
    Router::new()
        .route("/", page(INDEX, html))
        .route("/dashboard.js", page(SCRIPT, js))
        .route("/dashboard.css", page(STYLE, "text/css; charset=utf-8"))
        .route("/docs", page(DOCS, html))
        .route("/docs.js", page(DOCS_SCRIPT, js))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // The binary's own assets: a new version is a new process.
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ))
}

/// Bytes the page costs its browser, uncompressed (the bound is 100 KB).
pub fn weight() -> usize {
    INDEX.len() + SCRIPT.len() + STYLE.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_weighs_under_100_kb() {
        assert!(weight() < 100_000, "{} bytes", weight());
    }

    #[test]
    fn the_page_references_only_its_own_origin() {
        for asset in [INDEX, SCRIPT, STYLE, DOCS, DOCS_SCRIPT] {
            for scheme in ["http://", "https://", "//cdn"] {
                let outside = asset
                    .match_indices(scheme)
                    .any(|(i, _)| !asset[i..].starts_with("http://www.w3.org/2000/svg"));
                assert!(!outside, "an asset names another origin ({scheme})");
            }
        }
    }
}
