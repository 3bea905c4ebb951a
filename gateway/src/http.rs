//! The HTTP listener: the built dashboard, `/healthz`, and (with the WebSocket issue) `/mqtt`.
//!
//! It knows nothing of topics. Static files come from one root directory; a request can never
//! reach a file outside it (`..` segments, encoded or not, are refused before touching the disk,
//! and the resolved path is checked against the canonical root so symlinks cannot escape).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The response body type of every handler.
pub type Body = Full<Bytes>;

/// The static site: the dashboard root directory.
#[derive(Debug, Clone)]
pub struct Site {
    root: Arc<PathBuf>,
}

impl Site {
    /// A site serving files below `root`.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root: Arc::new(root),
        }
    }

    /// Answers one request.
    pub async fn handle(&self, req: &Request<Incoming>) -> Response<Body> {
        self.respond(req.method(), req.uri().path()).await
    }

    async fn respond(&self, method: &Method, path: &str) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        let mut response = match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            _ => self.file(path).await,
        };
        if method == Method::HEAD {
            *response.body_mut() = Full::new(Bytes::new());
        }
        response
    }

    async fn file(&self, path: &str) -> Response<Body> {
        let Some(relative) = safe_relative_path(path) else {
            return text(StatusCode::BAD_REQUEST, "invalid path\n");
        };
        let is_asset = relative.extension().is_some_and(|ext| !ext.is_empty());
        let target = if relative.as_os_str().is_empty() {
            self.root.join("index.html")
        } else {
            self.root.join(&relative)
        };
        match self.read_inside_root(&target).await {
            Some(bytes) => file_response(&target, bytes),
            // App routes (no extension) fall back to the single-page app; missing assets are 404.
            None if !is_asset => match self.read_inside_root(&self.root.join("index.html")).await {
                Some(bytes) => file_response(Path::new("index.html"), bytes),
                None => text(
                    StatusCode::NOT_FOUND,
                    "dashboard not built: run `cargo xtask demo` or `trunk build --release`\n",
                ),
            },
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// Reads a regular file only if its canonical path lies below the canonical root.
    async fn read_inside_root(&self, target: &Path) -> Option<Bytes> {
        let root = tokio::fs::canonicalize(self.root.as_path()).await.ok()?;
        let resolved = tokio::fs::canonicalize(target).await.ok()?;
        if !resolved.starts_with(&root) {
            tracing::warn!(path = %target.display(), "refused a path that resolves outside the web root");
            return None;
        }
        if !tokio::fs::metadata(&resolved).await.ok()?.is_file() {
            return None;
        }
        tokio::fs::read(&resolved).await.ok().map(Bytes::from)
    }
}

/// Serves HTTP on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, site: Site, shutdown: CancellationToken) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!("http accept failed: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let site = site.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let site = site.clone();
                async move { Ok::<_, Infallible>(site.handle(&req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(%peer, "http connection ended: {err}");
                    }
                }
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// Turns a URL path into a relative file path, or `None` when it tries to leave the root.
///
/// Percent-decoding happens first, so `%2e%2e` and `%2f` cannot smuggle a `..` segment or a
/// separator past the check; backslashes and NUL bytes are refused outright.
fn safe_relative_path(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    if decoded.contains('\\') || decoded.contains('\0') {
        return None;
    }
    let mut out = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s => out.push(s),
        }
    }
    Some(out)
}

fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn file_response(path: &Path, bytes: Bytes) -> Response<Body> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let cache = if name == "index.html" || !is_hashed(name) {
        "no-cache"
    } else {
        "public, max-age=31536000, immutable"
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type(path))
        .header(header::CACHE_CONTROL, cache)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(Full::new(bytes))
        .expect("static response parts are valid")
}

/// trunk names built assets `name-<16 hex digits>.ext`.
fn is_hashed(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or_default();
    stem.rsplit_once('-').is_some_and(|(_, hash)| {
        let hash = hash.strip_suffix("_bg").unwrap_or(hash);
        hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "ts" => "application/typescript",
        _ => "application/octet-stream",
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        for bad in [
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/%2E%2E%2Fx",
            "/a\\..\\b",
            "/%00",
        ] {
            assert_eq!(safe_relative_path(bad), None, "{bad}");
        }
        assert_eq!(
            safe_relative_path("/assets/./app.js"),
            Some(PathBuf::from("assets/app.js"))
        );
        assert_eq!(safe_relative_path("/"), Some(PathBuf::new()));
    }

    #[test]
    fn hashed_names_are_recognised() {
        assert!(is_hashed("switchboard-www-1a2b3c4d5e6f7a8b_bg.wasm"));
        assert!(is_hashed("index-0123456789abcdef.css"));
        assert!(!is_hashed("index.html"));
        assert!(!is_hashed("manifest.webmanifest"));
    }

    #[test]
    fn wasm_has_its_content_type() {
        assert_eq!(content_type(Path::new("a.wasm")), "application/wasm");
    }
}
