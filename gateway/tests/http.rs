//! The HTTP listener over real sockets: dashboard files, caching headers, SPA fallback,
//! traversal attempts, 404, HEAD and `/healthz`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use switchboard::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

struct Gateway {
    http: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
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
        // A file next to the web root, reachable only through a symlink inside it.
        let name = www.path().file_name().unwrap().to_string_lossy();
        let outside = www.path().with_file_name(format!("{name}-secret.txt"));
        std::fs::write(&outside, "secret").unwrap();
        symlink(&outside, &www.path().join("escape.txt"));

        let mut config = Config::default();
        config.listeners.mqtt = vec!["127.0.0.1:0".parse().unwrap()];
        config.listeners.http = vec!["127.0.0.1:0".parse().unwrap()];
        config.data_dir = data.path().to_owned();
        config.www = www.path().to_owned();
        let shutdown = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(switchboard::run(config, shutdown.clone(), move |bound| {
            let _ = tx.send(bound.http[0]);
        }));
        let http = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("gateway bound in time")
            .expect("gateway reported its address");
        Self {
            http,
            shutdown,
            task,
            outside,
            _dirs: (www, data),
        }
    }

    async fn request(&self, method: &str, path: &str) -> (u16, String, Vec<u8>) {
        let mut stream = TcpStream::connect(self.http).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
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
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("gateway stopped in time")
            .unwrap()
            .unwrap();
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
