//! Redis-style glob patterns (`*`, `?`, `[...]`) matched in process.

pub(crate) fn redis_glob(pattern: &str) -> Option<globset::GlobMatcher> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .inspect_err(|e| tracing::warn!(pattern, error = %e, "invalid pattern"))
        .ok()
}
