//! The JavaScript API, shaped like MQTT.js:
//!
//! ```js
//! import { connect } from "./pkg/index.js";
//! const client = await connect(["ws://a/mqtt", "ws://b/mqtt"], { protocolVersion: 5 });
//! client.on("message", (topic, payload, packet) => console.log(topic, payload));
//! await client.subscribe("plugs/+/state", { qos: 1 });
//! await client.publish("plugs/1/set", "on", { qos: 1 });
//! client.end();
//! ```
//!
//! Events (`message`, `connect`, `reconnect`, `offline`, `close`, `error`, `end`) come from
//! the Rust client's streams through two `spawn_local` loops; listeners are called outside any
//! borrow of the client, so they may call back into it.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures_core::Stream;
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use switchboard_mqtt::{
    ByteString, Bytes, LastWill, Properties, ProtocolVersion, Publish, QoS, RetainHandling,
    SubscriptionOptions,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local};

use crate::client::ConnectionEvent;
use crate::{AuthMethod, Client, Error, Options};

/// Copies bytes into a JS `Uint8Array`.
fn to_uint8array(bytes: &[u8]) -> Uint8Array {
    Uint8Array::from(bytes)
}

fn get(obj: &JsValue, key: &str) -> Option<JsValue> {
    if !obj.is_object() {
        return None;
    }
    Reflect::get(obj, &JsValue::from_str(key))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

fn set(obj: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

fn get_f64(obj: &JsValue, key: &str) -> Option<f64> {
    get(obj, key).and_then(|v| v.as_f64())
}

fn get_ms(obj: &JsValue, key: &str) -> Option<Duration> {
    get_f64(obj, key).map(|ms| Duration::from_millis(ms.max(0.0) as u64))
}

fn get_bool(obj: &JsValue, key: &str) -> Option<bool> {
    get(obj, key).and_then(|v| v.as_bool())
}

fn get_string(obj: &JsValue, key: &str) -> Option<String> {
    get(obj, key).and_then(|v| v.as_string())
}

fn qos_of(v: Option<f64>) -> QoS {
    match v {
        Some(q) if q >= 2.0 => QoS::ExactlyOnce,
        Some(q) if q >= 1.0 => QoS::AtLeastOnce,
        _ => QoS::AtMostOnce,
    }
}

/// A string (UTF-8) or a `Uint8Array`/`ArrayBuffer` as bytes.
fn bytes_of(v: &JsValue) -> Bytes {
    if let Some(s) = v.as_string() {
        return Bytes::from(s);
    }
    if v.is_object() {
        return Bytes::from(Uint8Array::new(v).to_vec());
    }
    Bytes::new()
}

fn js_error(e: &Error) -> JsValue {
    let err = js_sys::Error::new(e.message());
    set(&err, "code", &JsValue::from_str(e.code()));
    if let Some(c) = e.reason_code() {
        set(&err, "reasonCode", &JsValue::from(c.as_u8()));
    }
    err.into()
}

/// v5 PUBLISH properties from `{messageExpiryInterval, contentType, responseTopic,
/// correlationData, payloadFormatIndicator, userProperties: {k: v}}`.
fn publish_properties(p: &JsValue) -> Properties {
    let mut props = Properties::default();
    if !p.is_object() {
        return props;
    }
    props.message_expiry_interval = get_f64(p, "messageExpiryInterval").map(|v| v as u32);
    props.content_type = get_string(p, "contentType").map(ByteString::from);
    props.response_topic = get_string(p, "responseTopic").map(ByteString::from);
    props.correlation_data = get(p, "correlationData").map(|v| bytes_of(&v));
    props.payload_format_indicator = get_f64(p, "payloadFormatIndicator").map(|v| v as u8);
    props.user_properties = user_properties(p);
    props
}

fn user_properties(p: &JsValue) -> Vec<(ByteString, ByteString)> {
    let Some(up) = get(p, "userProperties") else {
        return Vec::new();
    };
    let Ok(obj) = up.dyn_into::<Object>() else {
        return Vec::new();
    };
    Object::entries(&obj)
        .iter()
        .filter_map(|kv| {
            let kv = Array::from(&kv);
            Some((
                ByteString::from(kv.get(0).as_string()?),
                ByteString::from(kv.get(1).as_string()?),
            ))
        })
        .collect()
}

/// `Err` for an `authMethod` this client does not know.
fn options_from_js(urls: &JsValue, o: &JsValue) -> Result<Options, Error> {
    let mut options = Options::with_urls(filters_of(urls));
    options.protocol = match get_f64(o, "protocolVersion") {
        Some(v) if v >= 5.0 => ProtocolVersion::V5,
        Some(v) if v <= 3.0 => ProtocolVersion::V3_1,
        _ => ProtocolVersion::V3_1_1,
    };
    options.client_id = get_string(o, "clientId").filter(|s| !s.is_empty());
    options.clean_start = get_bool(o, "clean").unwrap_or(true);
    if let Some(k) = get_f64(o, "keepalive") {
        options.keep_alive = k as u16;
    }
    options.username = get_string(o, "username");
    options.password = get(o, "password").map(|v| bytes_of(&v));
    options.auth = match get_string(o, "authMethod").as_deref() {
        None => AuthMethod::Password,
        Some(m) if m.eq_ignore_ascii_case("SCRAM-SHA-256") => AuthMethod::ScramSha256,
        Some(_) => {
            return Err(Error::InvalidOptions(
                "unknown authMethod (supported: \"SCRAM-SHA-256\")",
            ));
        }
    };
    let props = get(o, "properties").unwrap_or(JsValue::UNDEFINED);
    options.session_expiry = get_f64(o, "sessionExpiryInterval")
        .or_else(|| get_f64(&props, "sessionExpiryInterval"))
        .map(|v| v as u32);
    options.properties.receive_maximum = get_f64(&props, "receiveMaximum").map(|v| v as u16);
    options.properties.user_properties = user_properties(&props);
    if let Some(w) = get(o, "will")
        && let Some(topic) = get_string(&w, "topic")
    {
        options.will = Some(LastWill {
            topic: ByteString::from(topic),
            payload: get(&w, "payload").map(|v| bytes_of(&v)).unwrap_or_default(),
            qos: qos_of(get_f64(&w, "qos")),
            retain: get_bool(&w, "retain").unwrap_or(false),
            properties: get(&w, "properties")
                .map(|p| publish_properties(&p))
                .unwrap_or_default(),
        });
    }
    if let Some(d) = get_ms(o, "connectTimeout") {
        options.connect_timeout = d;
    }
    if let Some(d) = get_ms(o, "reconnectPeriod") {
        options.backoff_base = d;
    }
    if let Some(d) = get_ms(o, "maxReconnectPeriod") {
        options.backoff_max = d;
    }
    if let Some(d) = get_ms(o, "stablePeriod") {
        options.stable_after = d;
    }
    if let Some(d) = get_ms(o, "offlineExpiry") {
        options.offline_expiry = d;
    }
    if let Some(n) = get_f64(o, "offlineQueueMax") {
        options.offline_queue_max = n as usize;
    }
    if let Some(n) = get_f64(o, "maxPacketSize") {
        options.max_packet_size = n as u32;
    }
    Ok(options)
}

fn packet_object(p: &Publish, payload: &Uint8Array) -> Object {
    let obj = Object::new();
    set(&obj, "cmd", &JsValue::from_str("publish"));
    set(&obj, "topic", &JsValue::from_str(&p.topic));
    set(&obj, "payload", payload);
    set(&obj, "qos", &JsValue::from(p.qos() as u8));
    set(&obj, "retain", &JsValue::from_bool(p.retain));
    set(&obj, "dup", &JsValue::from_bool(p.dup));
    if let Some(pid) = p.pid() {
        set(&obj, "messageId", &JsValue::from(pid.get()));
    }
    let pr = &p.properties;
    if !pr.is_empty() {
        let props = Object::new();
        if let Some(v) = pr.message_expiry_interval {
            set(&props, "messageExpiryInterval", &JsValue::from(v));
        }
        if let Some(v) = &pr.content_type {
            set(&props, "contentType", &JsValue::from_str(v));
        }
        if let Some(v) = &pr.response_topic {
            set(&props, "responseTopic", &JsValue::from_str(v));
        }
        if let Some(v) = &pr.correlation_data {
            set(&props, "correlationData", &to_uint8array(v));
        }
        if let Some(v) = pr.payload_format_indicator {
            set(&props, "payloadFormatIndicator", &JsValue::from(v));
        }
        if !pr.subscription_identifiers.is_empty() {
            let ids: Array = pr
                .subscription_identifiers
                .iter()
                .map(|&i| JsValue::from(i))
                .collect();
            set(&props, "subscriptionIdentifier", &ids);
        }
        if !pr.user_properties.is_empty() {
            let up = Object::new();
            for (k, v) in &pr.user_properties {
                set(&up, k, &JsValue::from_str(v));
            }
            set(&props, "userProperties", &up);
        }
        set(&obj, "properties", &props);
    }
    obj
}

/// A string or an array of strings.
fn filters_of(v: &JsValue) -> Vec<String> {
    if Array::is_array(v) {
        Array::from(v)
            .iter()
            .filter_map(|f| f.as_string())
            .collect()
    } else {
        v.as_string().into_iter().collect()
    }
}

/// Event listeners by name, shared by the client object and its event loops.
#[derive(Debug, Default)]
struct Listeners(Vec<(String, Function)>);

impl Listeners {
    fn matching(&self, name: &str) -> Vec<Function> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

fn emit(listeners: &RefCell<Listeners>, name: &str, args: &Array) {
    // Clone the functions first: a listener may add or remove listeners.
    let fs = listeners.borrow().matching(name);
    for f in fs {
        let _ = f.apply(&JsValue::NULL, args);
    }
}

/// An MQTT connection, from [`connect`].
#[wasm_bindgen(js_name = MqttClient)]
#[derive(Debug)]
pub struct JsClient {
    client: Client,
    listeners: Rc<RefCell<Listeners>>,
}

/// Connects to `urls` (a string, or an array of URLs tried in turn) with MQTT.js-like
/// `options`: `protocolVersion` (4 or 5), `clientId` (random `sb-…` by default), `clean`,
/// `keepalive` (s), `username`, `password`, `will` `{topic, payload, qos, retain}`,
/// `properties` `{sessionExpiryInterval, receiveMaximum, userProperties}`, `connectTimeout`,
/// `reconnectPeriod`, `maxReconnectPeriod`, `stablePeriod`, `offlineExpiry` (ms) and
/// `offlineQueueMax`, `maxPacketSize`; `timer: "timeout"` keeps the keep-alive timer off the
/// Worker; `authMethod: "SCRAM-SHA-256"` (with `protocolVersion: 5`) proves `username` and
/// `password` by MQTT 5 enhanced authentication instead of sending them. Resolves with an
/// `MqttClient` once the first broker accepts; rejects with an `Error` whose `code` is
/// `refused`, `unreachable` or `invalid_options`.
#[wasm_bindgen(unchecked_return_type = "Promise<MqttClient>")]
pub fn connect(
    #[wasm_bindgen(unchecked_param_type = "string | string[]")] urls: JsValue,
    options: Option<JsValue>,
) -> Promise {
    let options = options.unwrap_or(JsValue::UNDEFINED);
    let worker = get_string(&options, "timer").as_deref() != Some("timeout");
    let options = options_from_js(&urls, &options);
    promise(async move {
        let connected = match options {
            Ok(options) => Client::connect_with_timer(options, worker).await,
            Err(e) => Err(e),
        };
        match connected {
            Ok(client) => Ok(JsClient::new(client).into()),
            Err(e) => Err(js_error(&e)),
        }
    })
}

/// The next item of a stream (`StreamExt::next` without futures-util).
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

/// One `future_to_promise` instantiation for every method: less wasm than one per future.
fn promise(f: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> Promise {
    let f: Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>> = Box::pin(f);
    future_to_promise(f)
}

impl JsClient {
    fn new(client: Client) -> Self {
        let listeners = Rc::new(RefCell::new(Listeners::default()));
        if let Some(mut messages) = client.messages() {
            let l = listeners.clone();
            spawn_local(async move {
                while let Some(p) = next(&mut messages).await {
                    let payload = to_uint8array(&p.payload);
                    let packet = packet_object(&p, &payload);
                    let args = Array::of3(&JsValue::from_str(&p.topic), &payload, &packet);
                    emit(&l, "message", &args);
                }
            });
        }
        if let Some(mut events) = client.events() {
            let l = listeners.clone();
            spawn_local(async move {
                while let Some(ev) = next(&mut events).await {
                    let (name, arg) = match ev {
                        ConnectionEvent::Connected { session_present } => {
                            let ack = Object::new();
                            set(&ack, "cmd", &JsValue::from_str("connack"));
                            set(&ack, "sessionPresent", &JsValue::from_bool(session_present));
                            ("connect", ack.into())
                        }
                        ConnectionEvent::Reconnecting { url_index } => {
                            ("reconnect", JsValue::from(url_index as u32))
                        }
                        ConnectionEvent::Offline => ("offline", JsValue::UNDEFINED),
                        ConnectionEvent::Waiting { delay, url_index } => {
                            let w = Object::new();
                            set(&w, "delay", &JsValue::from(delay.as_millis() as f64));
                            set(&w, "urlIndex", &JsValue::from(url_index as u32));
                            ("waiting", w.into())
                        }
                        ConnectionEvent::Closed => ("close", JsValue::UNDEFINED),
                        ConnectionEvent::Error(e) => ("error", js_error(&e)),
                        ConnectionEvent::Ended => ("end", JsValue::UNDEFINED),
                    };
                    emit(&l, name, &Array::of1(&arg));
                }
            });
        }
        Self { client, listeners }
    }
}

#[wasm_bindgen(js_class = MqttClient)]
impl JsClient {
    /// Adds a listener for `message` `(topic, payload: Uint8Array, packet)`, `connect`
    /// `(connack)`, `reconnect` `(urlIndex)`, `offline`, `waiting` `({delay, urlIndex})`,
    /// `close`, `error` `(err)` or `end`.
    pub fn on(
        &self,
        event: String,
        #[wasm_bindgen(unchecked_param_type = "(...args: any[]) => void")] listener: Function,
    ) {
        self.listeners.borrow_mut().0.push((event, listener));
    }

    /// Removes a listener added with `on`.
    pub fn off(&self, event: &str, listener: &Function) {
        self.listeners
            .borrow_mut()
            .0
            .retain(|(n, f)| !(n == event && f == listener));
    }

    /// Subscribes to a filter or an array of filters with `{qos, nl, rap, rh}`; resolves with
    /// `[{topic, qos}]` (the granted QoS); rejects with `code` `rejected` on a SUBACK failure.
    #[wasm_bindgen(unchecked_return_type = "Promise<{ topic: string, qos: number }[]>")]
    pub fn subscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | string[]")] filter: JsValue,
        options: Option<JsValue>,
    ) -> Promise {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        let qos = qos_of(get_f64(&options, "qos"));
        let filters = filters_of(&filter);
        let mut opts = SubscriptionOptions::qos(qos);
        opts.no_local = get_bool(&options, "nl").unwrap_or(false);
        opts.retain_as_published = get_bool(&options, "rap").unwrap_or(false);
        opts.retain_handling = match get_f64(&options, "rh") {
            Some(1.0) => RetainHandling::SendAtSubscribeIfNew,
            Some(2.0) => RetainHandling::DoNotSend,
            _ => RetainHandling::SendAtSubscribe,
        };
        let list: Vec<(&str, SubscriptionOptions)> =
            filters.iter().map(|f| (f.as_str(), opts)).collect();
        let receivers = self.client.subscribe_many(&list);
        promise(async move {
            let granted = Array::new();
            for (filter, rx) in filters.iter().zip(receivers) {
                let q = rx
                    .await
                    .unwrap_or(Err(Error::Closed))
                    .map_err(|e| js_error(&e))?;
                let g = Object::new();
                set(&g, "topic", &JsValue::from_str(filter));
                set(&g, "qos", &JsValue::from(q as u8));
                granted.push(&g);
            }
            Ok(granted.into())
        })
    }

    /// Unsubscribes from a filter or an array of filters.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn unsubscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | string[]")] filter: JsValue,
    ) -> Promise {
        let receivers: Vec<_> = filters_of(&filter)
            .iter()
            .map(|f| self.client.start_unsubscribe(f))
            .collect();
        promise(async move {
            for rx in receivers {
                rx.await
                    .unwrap_or(Err(Error::Closed))
                    .map_err(|e| js_error(&e))?;
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Publishes `payload` (string or `Uint8Array`) with `{qos, retain, properties}`.
    /// Resolves when written (QoS 0) or acknowledged (QoS 1/2); rejects with `code`
    /// `dropped` (QoS 0 while offline), `expired` (QoS 1/2 unsent after `offlineExpiry`),
    /// `rejected` or `closed`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn publish(
        &self,
        topic: &str,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] payload: JsValue,
        options: Option<JsValue>,
    ) -> Promise {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        let qos = qos_of(get_f64(&options, "qos"));
        let retain = get_bool(&options, "retain").unwrap_or(false);
        let props = get(&options, "properties")
            .map(|p| publish_properties(&p))
            .unwrap_or_default();
        let rx = self
            .client
            .start_publish(topic, bytes_of(&payload), qos, retain, props);
        promise(async move {
            match rx.await.unwrap_or(Err(Error::Closed)) {
                Ok(()) => Ok(JsValue::UNDEFINED),
                Err(e) => Err(js_error(&e)),
            }
        })
    }

    /// Disconnects (DISCONNECT, no will) and stops reconnecting.
    pub fn end(&self) {
        self.client.end();
    }

    /// Whether the connection is up.
    #[wasm_bindgen(getter)]
    pub fn connected(&self) -> bool {
        self.client.is_connected()
    }

    /// The client identifier.
    #[wasm_bindgen(getter, js_name = clientId)]
    pub fn client_id(&self) -> String {
        self.client.client_id()
    }

    /// `"worker"` or `"fallback"`: where the keep-alive timer runs.
    #[wasm_bindgen(getter, js_name = timerMode)]
    pub fn timer_mode(&self) -> String {
        match self.client.timer_mode() {
            crate::timer::TimerMode::Worker => "worker".into(),
            crate::timer::TimerMode::Fallback => "fallback".into(),
        }
    }
}
