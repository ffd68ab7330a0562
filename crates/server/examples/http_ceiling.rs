//! The ceiling of `scripts/bench-http`: what the machine allows a cached
//! analytics response to reach against `/health/live` at all.
//!
//! A bare axum server, with no middleware, authentication or cache, serving
//! a file's bytes as they are (with the headers of the analytics route) on
//! `/body`, and `OK` on `/live`. The bench script serves the very response of
//! `GET /api/analytics/ghosts` through it: the ratio `/body` : `/live` is
//! then the cost of moving those bytes through the kernel and the load
//! generator on this machine, which no work in spywatcher's route can beat.
//!
//! ```text
//! cargo run --release -p spywatcher --example http_ceiling -- ghosts.json 127.0.0.1:8090
//! ```

use axum::Router;
use axum::http::header;
use axum::routing::get;
use bytes::Bytes;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(file), Some(address)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: http_ceiling <file to serve on /body> <address:port>");
    };
    let body = Bytes::from(std::fs::read(&file).map_err(|e| anyhow::anyhow!("{file}: {e}"))?);
    let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&body));
    let app = Router::new().route("/live", get(|| async { "OK" })).route(
        "/body",
        get(move || {
            let (body, etag) = (body.clone(), etag.clone());
            async move {
                (
                    [
                        (
                            header::CONTENT_TYPE.as_str(),
                            "application/json".to_string(),
                        ),
                        (header::ETAG.as_str(), etag),
                        ("x-cache", "hit".to_string()),
                    ],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| anyhow::anyhow!("{address}: {e}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}
