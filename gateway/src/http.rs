//! The HTTP listener: the built dashboard, `/healthz`, and MQTT over WebSocket (see [`crate::ws`]).
//!
//! It knows nothing of topics. Static files come from one root directory (or, with the
//! `embed-www` feature and no such directory, from a copy of `dist/` embedded at build time); a
//! request can never reach a file outside it (`..` segments, encoded or not, are refused before
//! touching the disk, and the resolved path is checked against the canonical root so symlinks
//! cannot escape).
//!
//! Files are loaded once into a bounded in-memory cache (reloaded when their size or modification
//! time changes) together with their gzip and brotli encodings: a `.gz`/`.br` sibling on disk
//! when present, else compressed on first demand on the blocking pool and kept. Responses carry
//! a strong `ETag` per encoding (`If-None-Match` answers `304`), `Vary: Accept-Encoding`,
//! `Cache-Control: immutable` for trunk's hashed assets and `no-cache` for everything else.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::web::HttpConfig;
use crate::ws::{Endpoint, MqttHandler};

/// The response body type of every handler.
pub use crate::web::Body;
use crate::web::{percent_decode, query_param, text};

/// Most bytes the file cache holds (each file is charged three times its size: identity, gzip
/// and brotli encodings together stay below that). Past it the cache starts over.
const CACHE_BUDGET: usize = 96 << 20;

/// Files smaller than this are never compressed: the saving would not pay for the headers.
const MIN_COMPRESS: usize = 256;

/// The dashboard built into the binary (`embed-www`); `build.rs` refuses to build without it.
#[cfg(feature = "embed-www")]
static EMBEDDED: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/../dist");

/// One HTTP listener's routes: the static site, `/healthz` and the optional WebSocket endpoint.
#[derive(Debug, Clone)]
pub struct Site {
    files: Arc<Files>,
    ws: Option<Arc<Endpoint>>,
    /// The HTTP API and `/metrics`, when served on this listener.
    api: Option<Arc<crate::api::Api>>,
    /// How long a connection may take to send request headers.
    header_timeout: Duration,
    /// `[http] trusted_proxies`: whose forwarding headers name the client (WebSocket and API).
    trusted_proxies: Vec<crate::web::IpNet>,
}

impl Site {
    /// A site serving files below `root`, without MQTT over WebSocket.
    ///
    /// With the `embed-www` feature, a `root` that is not a directory serves the embedded
    /// dashboard instead.
    #[must_use]
    pub fn new(root: PathBuf) -> Self {
        Self {
            files: Arc::new(Files::new(root)),
            ws: None,
            api: None,
            header_timeout: Duration::from_secs(HttpConfig::default().handshake_timeout),
            trusted_proxies: Vec::new(),
        }
    }

    /// Adds MQTT over WebSocket at `config.websocket_path`, served by `handler`, with the
    /// `[http]` limits.
    #[must_use]
    pub fn with_mqtt(mut self, config: &HttpConfig, handler: Arc<dyn MqttHandler>) -> Self {
        self.ws = Some(Arc::new(Endpoint::new(config, handler)));
        self.header_timeout = Duration::from_secs(config.handshake_timeout.max(1));
        self.trusted_proxies.clone_from(&config.trusted_proxies);
        self
    }

    /// Adds the HTTP API (`/api/v1/...`) and `/metrics`.
    #[must_use]
    pub fn with_api(mut self, api: crate::api::Api) -> Self {
        self.api = Some(Arc::new(api));
        self
    }

    /// Answers one request from `peer`; an upgraded WebSocket runs as a task on `tasks` and
    /// ends with `shutdown`.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Response<Body> {
        if let Some(ws) = &self.ws
            && req.uri().path() == ws.path()
        {
            return ws.upgrade(req, peer, tasks, shutdown);
        }
        if let Some(api) = &self.api
            && crate::api::Api::owns(req.uri().path())
        {
            // The same client address as the WebSocket side: a proxied client is not loopback.
            let client = crate::ws::client_addr(peer, req.headers(), &self.trusted_proxies);
            return api.handle(req, client).await;
        }
        let path = req.uri().path();
        if let Some(device) = path.strip_prefix(EMBED_PAGE_PREFIX)
            && (req.method() == Method::GET || req.method() == Method::HEAD)
        {
            return embed_page(device, req.uri().query());
        }
        let mut response = self.respond(req.method(), path, req.headers()).await;
        if is_widget_asset(path) {
            // The widget runs on other sites: its module script and wasm are fetched in CORS
            // mode. They are public files; the WebSocket checks the Origin and the token.
            let headers = response.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            headers.insert(
                "cross-origin-resource-policy",
                HeaderValue::from_static("cross-origin"),
            );
        }
        response
    }

    async fn respond(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        // hyper sends the headers of a HEAD response (Content-Length included) and drops the body.
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            _ => self.file(path, headers).await,
        }
    }

    async fn file(&self, path: &str, headers: &HeaderMap) -> Response<Body> {
        let Some(relative) = safe_relative_path(path) else {
            return text(StatusCode::BAD_REQUEST, "invalid path\n");
        };
        let is_asset = relative.extension().is_some_and(|ext| !ext.is_empty());
        let relative = if relative.as_os_str().is_empty() {
            PathBuf::from("index.html")
        } else {
            relative
        };
        let asset = match self.files.get(&relative).await {
            Some(asset) => asset,
            None if is_asset => return text(StatusCode::NOT_FOUND, "not found\n"),
            // A directory with an index page (such as `/examples/`) serves it; without the
            // trailing slash it redirects first, so the page's relative links resolve.
            None => match self.files.get(&relative.join("index.html")).await {
                Some(_) if !path.ends_with('/') => return redirect(&format!("{path}/")),
                Some(asset) => asset,
                // Other app routes fall back to the single-page app.
                None => match self.files.get(Path::new("index.html")).await {
                    Some(asset) => asset,
                    None => {
                        return text(
                            StatusCode::NOT_FOUND,
                            "dashboard not built: run `cargo xtask demo` or `trunk build --release`\n",
                        );
                    }
                },
            },
        };
        asset.respond(headers).await
    }
}

/// Serves HTTP on `listener` until `shutdown` is cancelled, then waits for every connection and
/// upgraded WebSocket to end (they watch the same token).
pub async fn serve(listener: TcpListener, site: Site, shutdown: CancellationToken) {
    serve_tls(listener, site, None, shutdown).await;
}

/// [`serve`], speaking HTTPS when `tls` is set: the TLS handshake runs in the connection's task
/// within the header timeout, and each request carries a [`crate::tls::TlsClient`] extension
/// (so a WebSocket upgrade becomes WSS, with the client certificate's name).
pub async fn serve_tls(
    listener: TcpListener,
    site: Site,
    tls: Option<Arc<crate::tls::Tls>>,
    shutdown: CancellationToken,
) {
    // Tracks HTTP connections and the WebSocket tasks they start; closed and waited for below.
    let tasks = TaskTracker::new();
    crate::listen::accept_until(&listener, "http", &shutdown, |stream, peer| {
        let site = site.clone();
        let shutdown = shutdown.clone();
        let conn_tasks = tasks.clone();
        let tls = tls.clone();
        tasks.spawn(async move {
            match tls {
                None => serve_connection(stream, peer, site, None, conn_tasks, shutdown).await,
                Some(tls) => {
                    let handshake = tokio::select! {
                        () = shutdown.cancelled() => return,
                        r = tls.accept(stream, site.header_timeout) => r,
                    };
                    match handshake {
                        Ok((stream, cert_cn)) => {
                            let client = crate::tls::TlsClient { cert_cn };
                            serve_connection(
                                stream,
                                peer,
                                site,
                                Some(client),
                                conn_tasks,
                                shutdown,
                            )
                            .await;
                        }
                        Err(err) => tracing::debug!(%peer, "https handshake failed: {err}"),
                    }
                }
            }
        });
    })
    .await;
    tasks.close();
    tasks.wait().await;
}

/// Serves HTTP/1.1 (with upgrades) on one accepted connection until it ends or `shutdown`.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    site: Site,
    secure: Option<crate::tls::TlsClient>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = site.header_timeout;
    let service_shutdown = shutdown.clone();
    let service = service_fn(move |mut req: Request<Incoming>| {
        let site = site.clone();
        let tasks = tasks.clone();
        let shutdown = service_shutdown.clone();
        if let Some(secure) = &secure {
            req.extensions_mut().insert(secure.clone());
        }
        async move { Ok::<_, Infallible>(site.handle(req, peer, &tasks, &shutdown).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
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
}

/// Where files come from, and the cache of loaded files.
#[derive(Debug)]
struct Files {
    source: Source,
    /// Loaded files by relative path. A std `Mutex`: held only to look up, insert or clear, never
    /// across an `.await`.
    cache: Mutex<Cache>,
}

#[derive(Debug)]
enum Source {
    Dir(PathBuf),
    #[cfg(feature = "embed-www")]
    Embedded,
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<PathBuf, Arc<Asset>>,
    /// Bytes charged for `entries` (three times each file's size).
    charged: usize,
}

impl Files {
    fn new(root: PathBuf) -> Self {
        #[cfg(feature = "embed-www")]
        let source = if root.is_dir() {
            Source::Dir(root)
        } else {
            tracing::info!(
                "{} is not a directory: serving the embedded dashboard",
                root.display()
            );
            Source::Embedded
        };
        #[cfg(not(feature = "embed-www"))]
        let source = Source::Dir(root);
        Self {
            source,
            cache: Mutex::default(),
        }
    }

    fn cached(&self, relative: &Path) -> Option<Arc<Asset>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.entries.get(relative).cloned()
    }

    fn remember(&self, relative: &Path, asset: &Arc<Asset>) {
        let charge = asset.identity.len().saturating_mul(3);
        if charge > CACHE_BUDGET {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = cache.entries.remove(relative) {
            cache.charged -= old.identity.len() * 3;
        }
        if cache.charged + charge > CACHE_BUDGET {
            cache.entries.clear();
            cache.charged = 0;
        }
        cache.charged += charge;
        cache.entries.insert(relative.to_owned(), Arc::clone(asset));
    }

    /// The file at `relative`, from the cache while it is unchanged on disk.
    async fn get(&self, relative: &Path) -> Option<Arc<Asset>> {
        match &self.source {
            Source::Dir(root) => self.get_from_dir(root, relative).await,
            #[cfg(feature = "embed-www")]
            Source::Embedded => {
                if let Some(hit) = self.cached(relative) {
                    return Some(hit);
                }
                let file = EMBEDDED.get_file(relative)?;
                let sibling = |ext: &str| {
                    let mut name = relative.as_os_str().to_owned();
                    name.push(ext);
                    EMBEDDED
                        .get_file(Path::new(&name))
                        .map(|f| Bytes::from_static(f.contents()))
                };
                let asset = Arc::new(Asset::new(
                    relative,
                    Bytes::from_static(file.contents()),
                    None,
                    sibling(".gz"),
                    sibling(".br"),
                ));
                self.remember(relative, &asset);
                Some(asset)
            }
        }
    }

    async fn get_from_dir(&self, root: &Path, relative: &Path) -> Option<Arc<Asset>> {
        let root = tokio::fs::canonicalize(root).await.ok()?;
        let resolved = resolve_inside(&root, &root.join(relative)).await?;
        let meta = tokio::fs::metadata(&resolved).await.ok()?;
        let version = Some((meta.modified().ok()?, meta.len()));
        if let Some(hit) = self.cached(relative)
            && hit.version == version
        {
            return Some(hit);
        }
        let identity = Bytes::from(tokio::fs::read(&resolved).await.ok()?);
        let sibling = async |ext: &str| {
            let mut name = resolved.as_os_str().to_owned();
            name.push(ext);
            let path = resolve_inside(&root, Path::new(&name)).await?;
            tokio::fs::read(path).await.ok().map(Bytes::from)
        };
        let gzip = sibling(".gz").await;
        let brotli = sibling(".br").await;
        let asset = Arc::new(Asset::new(relative, identity, version, gzip, brotli));
        self.remember(relative, &asset);
        Some(asset)
    }
}

/// The canonical path of `target` if it is a regular file below the canonical `root`.
async fn resolve_inside(root: &Path, target: &Path) -> Option<PathBuf> {
    let resolved = tokio::fs::canonicalize(target).await.ok()?;
    if !resolved.starts_with(root) {
        tracing::warn!(path = %target.display(), "refused a path that resolves outside the web root");
        return None;
    }
    tokio::fs::metadata(&resolved)
        .await
        .ok()?
        .is_file()
        .then_some(resolved)
}

/// A content coding we serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Identity,
    Gzip,
    Brotli,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Gzip => "gzip",
            Self::Brotli => "br",
        }
    }
}

/// One loaded file with its encodings.
#[derive(Debug)]
struct Asset {
    /// Modification time and size when loaded (disk files), to notice changes.
    version: Option<(SystemTime, u64)>,
    content_type: &'static str,
    cache_control: &'static str,
    compressible: bool,
    /// Hash of the identity bytes; the ETag of each encoding derives from it.
    hash: u64,
    identity: Bytes,
    /// The gzip encoding, or `None` when it is not smaller. Set once, by a sibling file or the
    /// first request that needs it.
    gzip: OnceLock<Option<Bytes>>,
    /// The brotli encoding, same rules.
    brotli: OnceLock<Option<Bytes>>,
}

impl Asset {
    fn new(
        relative: &Path,
        identity: Bytes,
        version: Option<(SystemTime, u64)>,
        gzip: Option<Bytes>,
        brotli: Option<Bytes>,
    ) -> Self {
        let name = relative
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let content_type = content_type(relative);
        let cache_control = if name == "index.html" || !is_hashed(name) {
            "no-cache"
        } else {
            "public, max-age=31536000, immutable"
        };
        let compressible = is_compressible(content_type) && identity.len() >= MIN_COMPRESS;
        let preset = |bytes: Option<Bytes>| {
            let cell = OnceLock::new();
            if let Some(bytes) = bytes {
                let _ = cell.set(Some(bytes));
            }
            cell
        };
        Self {
            version,
            content_type,
            cache_control,
            compressible,
            hash: fnv1a(&identity),
            identity,
            gzip: preset(gzip),
            brotli: preset(brotli),
        }
    }

    fn etag(&self, coding: Coding) -> String {
        match coding {
            Coding::Identity => format!("\"{:016x}\"", self.hash),
            other => format!("\"{:016x}-{}\"", self.hash, other.token()),
        }
    }

    /// The bytes of `coding`, compressing (once, on the blocking pool) when needed; `None` when
    /// that encoding is not smaller than the file.
    async fn encoded(self: &Arc<Self>, coding: Coding) -> Option<Bytes> {
        let cell = match coding {
            Coding::Identity => return Some(self.identity.clone()),
            Coding::Gzip => &self.gzip,
            Coding::Brotli => &self.brotli,
        };
        if let Some(done) = cell.get() {
            return done.clone();
        }
        let this = Arc::clone(self);
        let compressed = tokio::task::spawn_blocking(move || compress(coding, &this.identity))
            .await
            .ok()
            .flatten()
            .filter(|c| c.len() < self.identity.len());
        // Two requests may race to compress; the first result is kept.
        cell.get_or_init(|| compressed).clone()
    }

    async fn respond(self: &Arc<Self>, request: &HeaderMap) -> Response<Body> {
        let (body, coding) = 'pick: {
            if self.compressible {
                for coding in accepted_codings(request) {
                    if let Some(bytes) = self.encoded(coding).await {
                        break 'pick (bytes, coding);
                    }
                }
            }
            (self.identity.clone(), Coding::Identity)
        };
        let etag = self.etag(coding);
        let not_modified = request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == "*" || tag == etag);
        let mut response = Response::builder()
            .header(header::CACHE_CONTROL, self.cache_control)
            .header(header::ETAG, &etag)
            .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        if self.compressible {
            response = response.header(header::VARY, "Accept-Encoding");
        }
        let response = if not_modified {
            response
                .status(StatusCode::NOT_MODIFIED)
                .body(Full::new(Bytes::new()))
        } else {
            if coding != Coding::Identity {
                response = response.header(header::CONTENT_ENCODING, coding.token());
            }
            response
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, self.content_type)
                .body(Full::new(body))
        };
        response.expect("static response parts are valid")
    }
}

/// The compressed codings the client accepts, best first (brotli, then gzip); `q=0` refuses a
/// coding, `*` stands for those not named.
fn accepted_codings(request: &HeaderMap) -> Vec<Coding> {
    let mut named: Vec<(String, bool)> = Vec::new();
    for item in request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if !name.is_empty() {
            named.push((name, !refused));
        }
    }
    let star = named.iter().find(|(n, _)| n == "*").map(|(_, ok)| *ok);
    let accepts = |token: &str| {
        named
            .iter()
            .find(|(n, _)| n == token || (token == "gzip" && n == "x-gzip"))
            .map(|(_, ok)| *ok)
            .or(star)
            .unwrap_or(false)
    };
    [Coding::Brotli, Coding::Gzip]
        .into_iter()
        .filter(|c| accepts(c.token()))
        .collect()
}

fn compress(coding: Coding, data: &[u8]) -> Option<Bytes> {
    use std::io::Write as _;
    match coding {
        Coding::Identity => Some(Bytes::copy_from_slice(data)),
        Coding::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(data).ok()?;
            encoder.finish().ok().map(Bytes::from)
        }
        Coding::Brotli => {
            let params = brotli::enc::BrotliEncoderParams {
                quality: 9,
                lgwin: 22,
                ..Default::default()
            };
            let mut out = Vec::new();
            brotli::BrotliCompress(&mut &data[..], &mut out, &params).ok()?;
            Some(Bytes::from(out))
        }
    }
}

/// 64-bit FNV-1a: a stable content hash for ETags (the same across restarts).
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where the iframe alternative of the widget lives: `/embed/<device id>?token=...`.
const EMBED_PAGE_PREFIX: &str = "/embed/";

/// The embeddable widget's script (`/embed.js`) and the files it loads (`/widget/...`).
fn is_widget_asset(path: &str) -> bool {
    path == "/embed.js" || path.starts_with("/widget/")
}

/// The iframe alternative of the widget: a page holding one `<switchboard-switch>` for the
/// device named by the (percent-encoded) path segment, connecting back to this gateway with
/// the page's `?token=`. Never cached, no referrer (the URL carries the token); any site may
/// frame it.
fn embed_page(segment: &str, query: Option<&str>) -> Response<Body> {
    let device = match percent_decode(segment) {
        Some(device) if !device.is_empty() && !device.contains(['\0', '\n']) => device,
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "no such device: /embed/<device id>\n",
            );
        }
    };
    let token = query_param(query, "token").unwrap_or_default();
    let attr = |text: &str| {
        text.replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let token_attr = if token.is_empty() {
        String::new()
    } else {
        format!(" token=\"{}\"", attr(&token))
    };
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title} - Switchboard</title>\
         <style>html,body{{margin:0;background:transparent}}switchboard-switch{{display:block}}</style>\
         <script type=\"module\" src=\"../embed.js\"></script></head>\
         <body><switchboard-switch device=\"{device}\"{token_attr}></switchboard-switch></body></html>\n",
        title = attr(&device),
        device = attr(&device),
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::REFERRER_POLICY, "no-referrer")
        .body(Full::new(Bytes::from(page)))
        .expect("static response parts are valid")
}

/// Turns a URL path into a relative file path, or `None` when it tries to leave the root.
///
/// Percent-decoding happens first, so `%2e%2e` and `%2f` cannot smuggle a `..` segment or a
/// separator past the check; backslashes and NUL bytes are refused outright.
pub(crate) fn safe_relative_path(path: &str) -> Option<PathBuf> {
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
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "ts" => "application/typescript",
        _ => "application/octet-stream",
    }
}

fn is_compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || matches!(
            content_type,
            "application/wasm"
                | "application/json"
                | "application/manifest+json"
                | "image/svg+xml"
                | "image/x-icon"
                | "application/typescript"
        )
}

fn redirect(location: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::MOVED_PERMANENTLY)
        .header(header::LOCATION, location)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(b"moved\n")))
        .unwrap_or_else(|_| text(StatusCode::BAD_REQUEST, "invalid path\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embed_page_escapes_what_it_repeats() {
        let response = embed_page("z2m:a%2F%22b%22", Some("token=sbt1.x%3Cy"));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[header::REFERRER_POLICY], "no-referrer");
        let body = format!("{:?}", response.into_body());
        assert!(
            body.contains(r#"device=\"z2m:a/&quot;b&quot;\" token=\"sbt1.x&lt;y\""#),
            "{body}"
        );
        assert_eq!(embed_page("", None).status(), StatusCode::NOT_FOUND);
        assert_eq!(embed_page("%zz", None).status(), StatusCode::NOT_FOUND);
    }

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
        assert!(is_compressible("application/wasm"));
        assert!(!is_compressible("image/png"));
    }

    #[test]
    fn accept_encoding_is_negotiated() {
        let codings = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
            accepted_codings(&headers)
        };
        assert_eq!(
            codings("gzip, deflate, br, zstd"),
            [Coding::Brotli, Coding::Gzip]
        );
        assert_eq!(codings("gzip;q=1.0, br;q=0"), [Coding::Gzip]);
        assert_eq!(codings("*"), [Coding::Brotli, Coding::Gzip]);
        assert_eq!(codings("*;q=0, gzip"), [Coding::Gzip]);
        assert_eq!(codings("identity"), []);
        assert!(accepted_codings(&HeaderMap::new()).is_empty());
    }

    #[cfg(feature = "embed-www")]
    #[tokio::test]
    async fn a_missing_directory_serves_the_embedded_dashboard() {
        let files = Files::new(PathBuf::from("/nonexistent/switchboard-www"));
        let index = files
            .get(Path::new("index.html"))
            .await
            .expect("embedded index");
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        assert_eq!(
            &index.identity[..],
            EMBEDDED.get_file("index.html").unwrap().contents()
        );
        assert!(files.get(Path::new("../Cargo.toml")).await.is_none());
    }

    #[tokio::test]
    async fn an_encoding_is_computed_once_and_kept() {
        let source = "export const on = true;\n".repeat(100);
        let asset = Arc::new(Asset::new(
            Path::new("a.js"),
            Bytes::from(source),
            None,
            None,
            None,
        ));
        for coding in [Coding::Gzip, Coding::Brotli] {
            let first = asset.encoded(coding).await.expect("smaller than the file");
            let second = asset.encoded(coding).await.unwrap();
            assert_eq!(first.as_ptr(), second.as_ptr(), "{coding:?} cached");
            assert!(first.len() < asset.identity.len());
        }
        let tiny = Arc::new(Asset::new(
            Path::new("b.png"),
            Bytes::from_static(b"\x89PNG"),
            None,
            None,
            None,
        ));
        assert!(!tiny.compressible);
    }

    #[test]
    fn etags_differ_per_encoding_and_are_stable() {
        let asset = Asset::new(
            Path::new("a.js"),
            Bytes::from_static(b"x"),
            None,
            None,
            None,
        );
        assert_eq!(asset.etag(Coding::Identity), "\"af63f54c86021707\"");
        assert_ne!(asset.etag(Coding::Gzip), asset.etag(Coding::Brotli));
    }
}
