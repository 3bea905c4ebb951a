//! The HTTP listener over real sockets: dashboard files, content types, caching headers, gzip and
//! brotli negotiation (on the fly and precompressed siblings), ETag and 304, SPA fallback,
//! traversal attempts, 404, HEAD and `/healthz`.

mod harness;

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const APP_JS: &str = "export function plug(state) { return state.on ? 'on' : 'off'; }\n";

fn brotli_bytes(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams::default();
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
    out
}

fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The value of header `name` (lower-case) in a lower-cased head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

struct Gateway {
    www: std::path::PathBuf,
    http: SocketAddr,
    running: harness::Running,
    outside: std::path::PathBuf,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Gateway {
    async fn start() -> Self {
        let www = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        std::fs::write(
            www.path().join("index.html"),
            "<!doctype html><title>sb</title>",
        )
        .unwrap();
        std::fs::write(
            www.path().join("app-0123456789abcdef_bg.wasm"),
            b"\0asm\x01\0\0\0",
        )
        .unwrap();
        std::fs::create_dir(www.path().join("assets")).unwrap();
        std::fs::write(www.path().join("assets/logo.svg"), "<svg/>").unwrap();
        std::fs::create_dir(www.path().join("examples")).unwrap();
        std::fs::write(
            www.path().join("examples/index.html"),
            "<!doctype html><p>example",
        )
        .unwrap();
        std::fs::write(
            www.path().join("app-0123456789abcdef.js"),
            APP_JS.repeat(50),
        )
        .unwrap();
        // A stylesheet with a precompressed brotli sibling, as `trunk` or a build step leaves it.
        let css = "body { color: #123; }\n".repeat(40);
        std::fs::write(www.path().join("style-0123456789abcdef.css"), &css).unwrap();
        std::fs::write(
            www.path().join("style-0123456789abcdef.css.br"),
            brotli_bytes(css.as_bytes()),
        )
        .unwrap();
        // A file next to the web root, reachable only through a symlink inside it.
        let name = www.path().file_name().unwrap().to_string_lossy();
        let outside = www.path().with_file_name(format!("{name}-secret.txt"));
        std::fs::write(&outside, "secret").unwrap();
        symlink(&outside, &www.path().join("escape.txt"));

        let mut config = harness::loopback(data.path());
        config.www = www.path().to_owned();
        let running = harness::Running::start(config, switchboard::RunOptions::default()).await;
        Self {
            www: www.path().to_owned(),
            http: running.bound.http[0],
            running,
            outside,
            _dirs: (www, data),
        }
    }

    async fn request(&self, method: &str, path: &str) -> (u16, String, Vec<u8>) {
        self.request_with(method, path, "").await
    }

    /// A request with extra header lines (each ending in `\r\n`).
    async fn request_with(&self, method: &str, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
        let mut stream = TcpStream::connect(self.http).await.unwrap();
        let req =
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
            .await
            .expect("response in time")
            .unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a header block");
        let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
        let status = head[9..12].parse().unwrap();
        (status, head, raw[split + 4..].to_vec())
    }

    async fn stop(self) {
        let _ = std::fs::remove_file(&self.outside);
        self.running.stop().await;
    }
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[tokio::test]
async fn serves_index_with_no_cache() {
    let gw = Gateway::start().await;
    let (status, head, body) = gw.request("GET", "/").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(body.starts_with(b"<!doctype html>"));
    gw.stop().await;
}

#[tokio::test]
async fn hashed_wasm_is_immutable_with_its_content_type() {
    let gw = Gateway::start().await;
    let (status, head, body) = gw.request("GET", "/app-0123456789abcdef_bg.wasm").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/wasm"), "{head}");
    assert!(head.contains("immutable"), "{head}");
    assert_eq!(&body[..4], b"\0asm");
    gw.stop().await;
}

#[tokio::test]
async fn app_routes_fall_back_to_index_but_missing_assets_are_404() {
    let gw = Gateway::start().await;
    let (status, _, body) = gw.request("GET", "/devices/kitchen").await;
    assert_eq!(status, 200);
    assert!(body.starts_with(b"<!doctype html>"));
    let (status, _, _) = gw.request("GET", "/missing.js").await;
    assert_eq!(status, 404);
    gw.stop().await;
}

#[tokio::test]
async fn traversal_and_symlinks_out_of_the_root_are_refused() {
    let gw = Gateway::start().await;
    for path in [
        "/../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/assets/..%2f..%2fetc/passwd",
    ] {
        let (status, _, body) = gw.request("GET", path).await;
        assert!(status == 400 || status == 404, "{path}: {status}");
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "{path}");
    }
    let (status, _, body) = gw.request("GET", "/escape.txt").await;
    assert_eq!(status, 404, "a symlink out of the root is not served");
    assert!(!String::from_utf8_lossy(&body).contains("secret"));
    gw.stop().await;
}

#[tokio::test]
async fn head_has_headers_and_no_body_and_healthz_answers() {
    let gw = Gateway::start().await;
    let (status, head, body) = gw.request("HEAD", "/assets/logo.svg").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: image/svg+xml"), "{head}");
    assert!(body.is_empty());
    let (status, _, body) = gw.request("GET", "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body, b"ok\n");
    gw.stop().await;
}

#[tokio::test]
async fn content_types_and_cache_headers() {
    let gw = Gateway::start().await;
    for (path, content_type, cache) in [
        ("/", "text/html; charset=utf-8", "no-cache"),
        ("/index.html", "text/html; charset=utf-8", "no-cache"),
        (
            "/app-0123456789abcdef_bg.wasm",
            "application/wasm",
            "public, max-age=31536000, immutable",
        ),
        (
            "/app-0123456789abcdef.js",
            "text/javascript; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        (
            "/style-0123456789abcdef.css",
            "text/css; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        ("/assets/logo.svg", "image/svg+xml", "no-cache"),
    ] {
        let (status, head, _) = gw.request("GET", path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&head, "content-type"), Some(content_type), "{path}");
        assert_eq!(header(&head, "cache-control"), Some(cache), "{path}");
        assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
        assert!(header(&head, "etag").is_some(), "{path}: {head}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn gzip_and_brotli_are_negotiated() {
    let gw = Gateway::start().await;
    let original = APP_JS.repeat(50).into_bytes();
    let path = "/app-0123456789abcdef.js";

    let (status, head, body) = gw.request("GET", path).await;
    assert_eq!(status, 200);
    assert_eq!(header(&head, "content-encoding"), None);
    assert_eq!(header(&head, "vary"), Some("accept-encoding"));
    assert_eq!(body, original);

    let (_, head, body) = gw
        .request_with("GET", path, "Accept-Encoding: gzip, deflate\r\n")
        .await;
    assert_eq!(header(&head, "content-encoding"), Some("gzip"), "{head}");
    assert!(body.len() < original.len());
    assert_eq!(gunzip(&body), original);

    let (_, head, body) = gw
        .request_with("GET", path, "Accept-Encoding: gzip, deflate, br, zstd\r\n")
        .await;
    assert_eq!(header(&head, "content-encoding"), Some("br"), "{head}");
    assert_eq!(unbrotli(&body), original);
    // The second answer is the same bytes (served from the cache, not recompressed differently).
    let (_, _, again) = gw
        .request_with("GET", path, "Accept-Encoding: br\r\n")
        .await;
    assert_eq!(again, body);

    let (_, head, _) = gw
        .request_with("GET", path, "Accept-Encoding: br;q=0, gzip;q=0.5\r\n")
        .await;
    assert_eq!(
        header(&head, "content-encoding"),
        Some("gzip"),
        "q=0 refuses br"
    );

    // Already-compressed and tiny files go out as they are.
    let (_, head, _) = gw
        .request_with("GET", "/assets/logo.svg", "Accept-Encoding: br\r\n")
        .await;
    assert_eq!(
        header(&head, "content-encoding"),
        None,
        "too small to compress"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_precompressed_sibling_is_served_verbatim() {
    let gw = Gateway::start().await;
    let path = "/style-0123456789abcdef.css";
    let sibling = std::fs::read(gw.www.join("style-0123456789abcdef.css.br")).unwrap();
    let (status, head, body) = gw
        .request_with("GET", path, "Accept-Encoding: br\r\n")
        .await;
    assert_eq!(status, 200);
    assert_eq!(header(&head, "content-encoding"), Some("br"));
    assert_eq!(
        header(&head, "content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(body, sibling);
    assert_eq!(
        unbrotli(&body),
        "body { color: #123; }\n".repeat(40).into_bytes()
    );
    gw.stop().await;
}

#[tokio::test]
async fn if_none_match_gives_304_per_encoding() {
    let gw = Gateway::start().await;
    let path = "/app-0123456789abcdef.js";
    let (_, head, _) = gw.request("GET", path).await;
    let plain_tag = header(&head, "etag").unwrap().to_owned();
    let (_, head, _) = gw
        .request_with("GET", path, "Accept-Encoding: br\r\n")
        .await;
    let br_tag = header(&head, "etag").unwrap().to_owned();
    assert_ne!(plain_tag, br_tag, "each encoding has its own validator");

    let (status, head, body) = gw
        .request_with("GET", path, &format!("If-None-Match: {plain_tag}\r\n"))
        .await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert_eq!(header(&head, "etag"), Some(plain_tag.as_str()));
    let (status, _, _) = gw
        .request_with(
            "GET",
            path,
            &format!("Accept-Encoding: br\r\nIf-None-Match: \"other\", {br_tag}\r\n"),
        )
        .await;
    assert_eq!(status, 304);
    let (status, _, _) = gw
        .request_with("GET", path, "If-None-Match: \"stale\"\r\n")
        .await;
    assert_eq!(status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_changed_file_is_reloaded() {
    let gw = Gateway::start().await;
    let (_, head, body) = gw.request("GET", "/").await;
    let tag = header(&head, "etag").unwrap().to_owned();
    assert!(body.starts_with(b"<!doctype html>"));
    std::fs::write(
        gw.www.join("index.html"),
        "<!doctype html><title>rebuilt dashboard</title>",
    )
    .unwrap();
    let (_, head, body) = gw.request("GET", "/").await;
    assert!(String::from_utf8_lossy(&body).contains("rebuilt"));
    assert_ne!(header(&head, "etag"), Some(tag.as_str()));
    gw.stop().await;
}

#[tokio::test]
async fn more_traversal_spellings_and_methods() {
    let gw = Gateway::start().await;
    for path in [
        "/..%2F..%2Fetc%2Fpasswd",
        "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/assets/%2E%2E/%2E%2E/etc/passwd",
        "/..\\..\\etc\\passwd",
        "/assets/%00.js",
    ] {
        let (status, _, body) = gw.request("GET", path).await;
        assert!(status == 400 || status == 404, "{path}: {status}");
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "{path}");
    }
    // Decoded once, `%252e%252e` is a literal directory name `%2e%2e`: an app route, not `..`.
    let (status, _, body) = gw.request("GET", "/%252e%252e/etc/passwd").await;
    assert_eq!(status, 200);
    assert!(body.starts_with(b"<!doctype html>"));
    let (status, head, _) = gw.request("POST", "/").await;
    assert_eq!(status, 405);
    assert_eq!(header(&head, "allow"), Some("get, head"));
    let (status, _, body) = gw.request("GET", "/assets/missing.css").await;
    assert_eq!(status, 404);
    assert_eq!(body, b"not found\n");
    let (status, head, body) = gw.request("GET", "/settings/network").await;
    assert_eq!(status, 200, "SPA route");
    assert_eq!(header(&head, "cache-control"), Some("no-cache"));
    assert!(body.starts_with(b"<!doctype html>"));
    gw.stop().await;
}

#[tokio::test]
async fn directories_serve_their_index_after_a_slash_redirect() {
    let gw = Gateway::start().await;
    let (status, head, _) = gw.request("GET", "/examples").await;
    assert_eq!(status, 301);
    assert!(head.contains("location: /examples/"), "{head}");
    let (status, _, body) = gw.request("GET", "/examples/").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("example"));
    gw.stop().await;
}
