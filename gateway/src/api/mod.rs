//! The HTTP API under `/api/v1` and the Prometheus endpoint `/metrics`, served on the HTTP
//! listeners next to the dashboard ([`crate::http::Site`] hands these paths to [`Api::handle`]).
//!
//! Requests carry `Authorization: Bearer <key>`; keys are configured as SHA-256 hex hashes
//! (`[api] keys`, printed by `switchboard api-key create`). With no key configured the API
//! answers loopback peers only. `/api/v1/openapi.json` needs no key, nor does `/metrics` unless
//! `[api] metrics_auth` is set. Errors are JSON, `{"error":"..."}`, with a fitting status code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use switchboard_devices::DeviceId;

use crate::broker::{Broker, Metrics};
use crate::cross_site::Origins;
use crate::schedule::{Schedule, Schedules};
use crate::web::{Body, percent_decode, query_param};

pub use crate::devices::{Devices, PowerError};

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// The OpenAPI 3 description served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// The `[api]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// SHA-256 hashes (64 hex digits) of the accepted API keys. Empty: the API answers
    /// loopback peers only, without a key.
    pub keys: Vec<KeyHash>,
    /// Milliseconds `POST /api/v1/devices/{id}/power` waits for the device to confirm before
    /// answering 504 (also how long the gateway's device model keeps a command pending).
    pub command_timeout_ms: u64,
    /// `/metrics` asks for an API key (or, with none configured, a loopback peer) like the API.
    pub metrics_auth: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            command_timeout_ms: 5_000,
            metrics_auth: false,
        }
    }
}

/// The SHA-256 of an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The hash of `key`.
    #[must_use]
    pub fn of(key: &str) -> Self {
        Self(sha2::Sha256::digest(key.as_bytes()).into())
    }

    /// Lower-case hex.
    #[must_use]
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl TryFrom<String> for KeyHash {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{text}` is not a SHA-256 hex hash (64 hex digits); use `switchboard api-key create`"
            )
        };
        if text.len() != 64 {
            return Err(bad());
        }
        let mut out = [0; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

/// A new random API key (`sb_` and 43 base64url characters of 32 random bytes) and its hash.
///
/// # Errors
/// The operating system's random source failed.
pub fn create_key() -> anyhow::Result<(String, KeyHash)> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let key = format!(
        "sb_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = KeyHash::of(&key);
    Ok((key, hash))
}

/// The API's state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Api {
    broker: Broker,
    devices: Devices,
    schedules: Schedules,
    keys: Arc<[KeyHash]>,
    command_timeout: Duration,
    metrics_auth: bool,
    /// The gateway's own names and the origins that may change things (`[http]`).
    origins: Origins,
}

#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PowerRequest {
    #[serde(default)]
    relay: u8,
    on: bool,
}

#[derive(Debug, Serialize)]
struct SubscriptionEntry {
    client_id: String,
    filter: String,
}

#[derive(Debug, Serialize)]
struct ScheduleView {
    #[serde(flatten)]
    schedule: Schedule,
    /// Next firing of an `at` rule, Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_fire_ms: Option<u64>,
}

type Answer = Response<Body>;

impl Api {
    /// The API over these services.
    #[must_use]
    pub fn new(
        broker: Broker,
        devices: Devices,
        schedules: Schedules,
        config: &ApiConfig,
        http: &crate::web::HttpConfig,
    ) -> Self {
        Self {
            origins: Origins::new(&http.allowed_origins, &http.allowed_hosts),
            broker,
            devices,
            schedules,
            keys: config.keys.clone().into(),
            command_timeout: Duration::from_millis(config.command_timeout_ms),
            metrics_auth: config.metrics_auth,
        }
    }

    /// Whether `path` belongs to this handler.
    #[must_use]
    pub fn owns(path: &str) -> bool {
        path == "/metrics" || path == "/api/v1" || path.starts_with("/api/v1/")
    }

    /// Answers one request for `/metrics` or `/api/v1/...` from `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Answer {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        if path == "/metrics" {
            if self.metrics_auth
                && let Err(response) = self.authorize(&req, peer)
            {
                Metrics::add(&self.broker.metrics().api_auth_failures, 1);
                return *response;
            }
            return match method {
                Method::GET | Method::HEAD => Response::builder()
                    .header(header::CONTENT_TYPE, crate::observe::CONTENT_TYPE)
                    .header(header::CACHE_CONTROL, "no-store")
                    .body(Full::new(Bytes::from(crate::observe::render(&self.broker))))
                    .expect("static response parts are valid"),
                _ => method_not_allowed("GET"),
            };
        }
        // Before anything else: a request for a name that is not the gateway's is a
        // DNS-rebinding page (or a misconfigured proxy), and gets nothing, not even the spec.
        if let Err(host) = self.origins.hosts().check(req.headers()) {
            return error(
                StatusCode::MISDIRECTED_REQUEST,
                &format!(
                    "Host {host:?} is not one of this gateway's names: use its address, \
                     `localhost` or its host name, or add the name to [http] allowed_hosts"
                ),
            );
        }
        if path == "/api/v1/openapi.json" {
            return Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from_static(OPENAPI.as_bytes())))
                .expect("static response parts are valid");
        }
        if let Err(response) = self.authorize(&req, peer) {
            Metrics::add(&self.broker.metrics().api_auth_failures, 1);
            return *response;
        }
        if let Err(response) = self.same_site(&req) {
            return *response;
        }
        let query = req.uri().query().unwrap_or_default().to_owned();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        };
        let Some(rest) = path.strip_prefix("/api/v1/") else {
            return error(StatusCode::NOT_FOUND, "no such endpoint");
        };
        let segments: Vec<&str> = rest.splitn(2, '/').collect();
        match (segments.as_slice(), &method) {
            (["clients"], &Method::GET) => json(StatusCode::OK, &self.broker.clients()),
            (["clients"], _) => method_not_allowed("GET"),
            (["clients", id], &Method::DELETE) => match percent_decode(id) {
                Some(id) if self.broker.disconnect_client(&id) => no_content(),
                Some(_) => error(StatusCode::NOT_FOUND, "no such connected client"),
                None => error(StatusCode::BAD_REQUEST, "invalid client id"),
            },
            (["clients", _], _) => method_not_allowed("DELETE"),
            (["sessions"], &Method::GET) => json(StatusCode::OK, &self.broker.sessions()),
            (["sessions"], _) => method_not_allowed("GET"),
            (["subscriptions"], &Method::GET) => {
                let list: Vec<_> = self
                    .broker
                    .sessions()
                    .into_iter()
                    .flat_map(|s| {
                        let client_id = s.client_id;
                        s.subscriptions
                            .into_iter()
                            .map(move |filter| SubscriptionEntry {
                                client_id: client_id.clone(),
                                filter,
                            })
                    })
                    .collect();
                json(StatusCode::OK, &list)
            }
            (["subscriptions"], _) => method_not_allowed("GET"),
            (["retained"], &Method::GET) => {
                let filter = query_param(Some(&query), "filter").unwrap_or_else(|| "#".to_owned());
                match self.broker.retained(&filter) {
                    Ok(list) => json(StatusCode::OK, &list),
                    Err(why) => error(StatusCode::BAD_REQUEST, &why),
                }
            }
            (["retained"], _) => method_not_allowed("GET"),
            (["retained", topic], &Method::DELETE) => match percent_decode(topic) {
                Some(topic) if self.broker.delete_retained(&topic) => no_content(),
                Some(_) => error(StatusCode::NOT_FOUND, "no retained message on that topic"),
                None => error(StatusCode::BAD_REQUEST, "invalid topic"),
            },
            (["retained", _], _) => method_not_allowed("DELETE"),
            (["devices"], &Method::GET) => json(StatusCode::OK, &self.devices.list()),
            (["devices"], _) => method_not_allowed("GET"),
            (["devices", rest], _) => self.device(rest, &method, &body).await,
            (["schedules"], &Method::GET) => {
                let list: Vec<_> = self
                    .schedules
                    .list()
                    .into_iter()
                    .map(|s| self.schedule_view(s))
                    .collect();
                json(StatusCode::OK, &list)
            }
            (["schedules"], &Method::POST) => self.put_schedule(None, &body),
            (["schedules"], _) => method_not_allowed("GET, POST"),
            (["schedules", id], m) => match (percent_decode(id), m) {
                (None, _) => error(StatusCode::BAD_REQUEST, "invalid schedule id"),
                (Some(id), &Method::GET) => match self.schedules.get(&id) {
                    Some(s) => json(StatusCode::OK, &self.schedule_view(s)),
                    None => error(StatusCode::NOT_FOUND, "no such schedule"),
                },
                (Some(id), &Method::PUT) => self.put_schedule(Some(id), &body),
                (Some(id), &Method::DELETE) => {
                    if self.schedules.delete(&id) {
                        no_content()
                    } else {
                        error(StatusCode::NOT_FOUND, "no such schedule")
                    }
                }
                _ => method_not_allowed("GET, PUT, DELETE"),
            },
            _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
        }
    }

    /// `GET /devices/{id}` and `POST /devices/{id}/power` (`rest` is what follows
    /// `/devices/`; ids may contain `/`).
    async fn device(&self, rest: &str, method: &Method, body: &Bytes) -> Answer {
        let Some(rest) = percent_decode(rest) else {
            return error(StatusCode::BAD_REQUEST, "invalid device id");
        };
        if let Some(id) = rest.strip_suffix("/power")
            && self.devices.get(id).is_some()
        {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            let request: PowerRequest = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(err) => {
                    return error(StatusCode::BAD_REQUEST, &format!("invalid request: {err}"));
                }
            };
            let id = DeviceId::from(id);
            return match self
                .devices
                .power(&id, request.relay, request.on, self.command_timeout)
                .await
            {
                Ok(device) => json(StatusCode::OK, &device),
                Err(PowerError::Timeout(..)) => error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the device did not confirm the command in time",
                ),
                Err(PowerError::Command(err)) => {
                    use switchboard_devices::CommandError as E;
                    let status = match err {
                        E::UnknownDevice(_) => StatusCode::NOT_FOUND,
                        E::UnknownRelay { .. } => StatusCode::BAD_REQUEST,
                        _ => StatusCode::CONFLICT,
                    };
                    error(status, &err.to_string())
                }
            };
        }
        if method != Method::GET {
            return method_not_allowed("GET");
        }
        match self.devices.get(&rest) {
            Some(device) => json(StatusCode::OK, &device),
            None => error(StatusCode::NOT_FOUND, "no such device"),
        }
    }

    fn put_schedule(&self, id: Option<String>, body: &Bytes) -> Answer {
        // What GET answers may be sent back as is: the computed `next_fire_ms` is dropped.
        let parsed = serde_json::from_slice::<serde_json::Value>(body).and_then(|mut v| {
            if let Some(map) = v.as_object_mut() {
                map.remove("next_fire_ms");
            }
            serde_json::from_value::<Schedule>(v)
        });
        let mut schedule: Schedule = match parsed {
            Ok(s) => s,
            Err(err) => return error(StatusCode::BAD_REQUEST, &format!("invalid schedule: {err}")),
        };
        let created = match id {
            Some(id) => {
                if !schedule.id.is_empty() && schedule.id != id {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "the id in the body differs from the path",
                    );
                }
                let existed = self.schedules.get(&id).is_some();
                schedule.id = id;
                !existed
            }
            None => {
                if schedule.id.is_empty() {
                    schedule.id = format!("s{:016x}", fastrand::u64(..));
                } else if self.schedules.get(&schedule.id).is_some() {
                    return error(
                        StatusCode::CONFLICT,
                        "a schedule with that id exists; use PUT",
                    );
                }
                true
            }
        };
        if let Err(why) = schedule.validate() {
            return error(StatusCode::BAD_REQUEST, why.message());
        }
        self.schedules.put(schedule.clone());
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        json(status, &self.schedule_view(schedule))
    }

    fn schedule_view(&self, schedule: Schedule) -> ScheduleView {
        ScheduleView {
            next_fire_ms: schedule
                .enabled
                .then(|| self.schedules.next_fire(&schedule))
                .flatten(),
            schedule,
        }
    }

    /// Refuses a request that changes something (any method but GET and HEAD) when a browser
    /// sent it from another site: an `Origin` that is not the gateway's own, a loopback origin or
    /// listed in `[http] allowed_origins` gets `403`; a body that is not `application/json` gets
    /// `415`, because a page on any site may POST `text/plain` or a form without asking (a
    /// "simple" request needs no CORS preflight), but never JSON. curl and the dashboard send
    /// JSON, and curl sends no `Origin`.
    fn same_site(&self, req: &Request<Incoming>) -> Result<(), Box<Answer>> {
        let method = req.method();
        if method == Method::GET || method == Method::HEAD {
            return Ok(());
        }
        if !self.origins.allows(req.headers()) {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "cross-site request refused: this Origin may not change anything here \
                 (add it to [http] allowed_origins to allow it)",
            )));
        }
        let carries_body =
            method == Method::POST || method == Method::PUT || method == Method::PATCH;
        if carries_body && !is_json(req.headers()) {
            let mut response = error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the request body must be JSON: send `Content-Type: application/json`",
            );
            response.headers_mut().insert(
                header::ACCEPT,
                http::HeaderValue::from_static("application/json"),
            );
            return Err(Box::new(response));
        }
        Ok(())
    }

    /// Checks the API key (or, with none configured, that the peer is on loopback).
    fn authorize(&self, req: &Request<Incoming>, peer: SocketAddr) -> Result<(), Box<Answer>> {
        if self.keys.is_empty() {
            if peer.ip().to_canonical().is_loopback() {
                return Ok(());
            }
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "no API keys are configured: the API answers loopback clients only",
            )));
        }
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let valid = presented.is_some_and(|key| {
            let hash = KeyHash::of(key);
            self.keys.iter().fold(false, |found, k| {
                found | bool::from(subtle::ConstantTimeEq::ct_eq(&k.0[..], &hash.0[..]))
            })
        });
        if valid {
            return Ok(());
        }
        let mut response = error(StatusCode::UNAUTHORIZED, "a valid API key is required");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"switchboard\""),
        );
        Err(Box::new(response))
    }
}

/// Whether `Content-Type` is `application/json` (parameters such as `charset` allowed).
fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Answer {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn error(status: StatusCode, message: &str) -> Answer {
    json(status, &ErrorBody { error: message })
}

fn no_content() -> Answer {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Full::new(Bytes::new()))
        .expect("static response parts are valid")
}

fn method_not_allowed(allow: &'static str) -> Answer {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, http::HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_round_trip() {
        let (key, hash) = create_key().unwrap();
        assert!(key.starts_with("sb_"));
        assert_eq!(KeyHash::try_from(hash.to_hex()).unwrap(), hash);
        assert_eq!(KeyHash::of(&key), hash);
        assert!(KeyHash::try_from("abc".to_owned()).is_err());
        assert!(KeyHash::try_from("g".repeat(64)).is_err());
    }
}
