//! The HTTP API over real HTTP on `127.0.0.1:0`: authentication, clients, sessions,
//! subscriptions, retained messages, the device facade (with a simulated Tasmota plug, and a
//! plug that never answers) and schedules (CRUD, and firing on an injected clock).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Client, TIMEOUT, V3_1_1, V5, harness, text};
use serde_json::{Value, json};
use switchboard::schedule::ManualClock;
use switchboard_mqtt::QoS;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const KEY: &str = "test-key-1";

/// 2026-11-23 (a Monday) 00:00 UTC, Unix milliseconds.
const MONDAY: u64 = 1_795_392_000_000;

struct Gateway {
    mqtt: SocketAddr,
    http: SocketAddr,
    running: harness::Running,
    _dir: Option<tempfile::TempDir>,
}

impl Gateway {
    async fn start(keys: bool, clock: Option<Arc<ManualClock>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut gw = Self::start_in(dir.path(), keys, clock).await;
        gw._dir = Some(dir);
        gw
    }

    /// A gateway keeping its data in `data_dir` (so a second one finds the first one's store).
    async fn start_in(
        data_dir: &std::path::Path,
        keys: bool,
        clock: Option<Arc<ManualClock>>,
    ) -> Self {
        let mut config = harness::loopback(data_dir);
        config.api.command_timeout_ms = 400;
        if keys {
            config.api.keys = vec![switchboard::api::KeyHash::of(KEY)];
        }
        let options = switchboard::RunOptions {
            clock: clock.map(|c| c as Arc<dyn switchboard::schedule::Clock>),
        };
        let running = harness::Running::start(config, options).await;
        Self {
            mqtt: running.bound.mqtt[0],
            http: running.bound.http[0],
            running,
            _dir: None,
        }
    }

    async fn stop(self) {
        self.running.stop().await;
    }

    /// One request with the test key; returns status, headers (lower-case names) and body.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        request(self.http, method, path, Some(KEY), body).await
    }
}

/// One simulated Tasmota plug (no button presses, no faults) connected to the gateway.
struct SimPlug {
    id: String,
    tracker: tokio_util::task::TaskTracker,
    stop: CancellationToken,
}

impl SimPlug {
    fn start(gw: &Gateway, seed: u64) -> Self {
        use switchboard_tools::sim;
        let config = sim::SimConfig {
            count: 1,
            profile: sim::Profile::Tasmota,
            seed,
            behaviour: sim::Behaviour {
                button_mean: None,
                fault_mean: None,
                ..sim::Behaviour::default()
            },
        };
        let devices = sim::fleet(&config);
        let id = sim::device_id(&devices[0], 0).to_string();
        let tracker = tokio_util::task::TaskTracker::new();
        let stop = CancellationToken::new();
        let broker = sim::BrokerOptions {
            addr: gw.mqtt.to_string(),
            username: None,
            password: None,
        };
        sim::spawn(devices, &broker, &tracker, &stop);
        Self { id, tracker, stop }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let headers = format!("Host: localhost\r\n{auth}Content-Type: application/json\r\n");
    raw_request(addr, method, path, &headers, &body).await
}

/// One request with exactly these header lines (each ending in CRLF) besides
/// `Connection: close` and `Content-Length`.
async fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Reply {
    let req = format!(
        "{method} {path} HTTP/1.1\r\n{headers}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let io = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(TIMEOUT, io).await.expect("answered");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    Reply {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    }
}

/// Repeats `get` until `done` holds for its reply (bounded by TIMEOUT). The registry is fed
/// asynchronously, and the API offers no change feed to wait on.
async fn until(gw: &Gateway, path: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let reply = gw.call("GET", path, None).await;
        if done(&reply) {
            return reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never satisfied: {reply:?}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn requests_without_a_valid_key_are_refused() {
    let gw = Gateway::start(true, None).await;
    for key in [None, Some("wrong")] {
        let reply = request(gw.http, "GET", "/api/v1/clients", key, None).await;
        assert_eq!(reply.status, 401);
        assert!(
            reply.head.contains("www-authenticate: bearer"),
            "{}",
            reply.head
        );
        assert!(reply.json()["error"].is_string());
    }
    let reply = request(gw.http, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(reply.status, 200);
    let doc = reply.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/api/v1/devices/{id}/power"].is_object());
    assert_eq!(gw.call("GET", "/api/v1/nothing", None).await.status, 404);
    assert_eq!(gw.call("PATCH", "/api/v1/clients", None).await.status, 405);
    let metrics = request(gw.http, "GET", "/metrics", None, None).await;
    assert!(
        String::from_utf8_lossy(&metrics.body).contains("switchboard_api_auth_failures_total 2")
    );
    gw.stop().await;
}

#[tokio::test]
async fn without_keys_loopback_needs_none() {
    let gw = Gateway::start(false, None).await;
    let reply = request(gw.http, "GET", "/api/v1/clients", None, None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!([]));
    gw.stop().await;
}

#[tokio::test]
async fn clients_sessions_subscriptions_and_disconnect() {
    let gw = Gateway::start(true, None).await;
    let mut c = Client::connect(gw.mqtt, V5, "api-client").await;
    c.subscribe("a/+/c", QoS::AtLeastOnce).await;
    let old = Client::connect(gw.mqtt, V3_1_1, "api-old").await;
    let clients = gw.call("GET", "/api/v1/clients", None).await.json();
    let me = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "api-client")
        .expect("listed");
    assert_eq!(me["transport"], "tcp");
    assert_eq!(me["protocol"], "5.0");
    assert!(me["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(me["connected_since_ms"].as_u64().unwrap() > 0);
    let old_entry = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "api-old")
        .expect("listed");
    assert_eq!(old_entry["protocol"], "3.1.1");
    old.disconnect().await;

    let sessions = gw.call("GET", "/api/v1/sessions", None).await.json();
    let s = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["client_id"] == "api-client")
        .expect("session");
    assert_eq!(s["connected"], true);
    assert_eq!(s["subscriptions"], json!(["a/+/c"]));
    let subs = gw.call("GET", "/api/v1/subscriptions", None).await.json();
    assert!(
        subs.as_array()
            .unwrap()
            .contains(&json!({"client_id": "api-client", "filter": "a/+/c"}))
    );

    assert_eq!(
        gw.call("DELETE", "/api/v1/clients/api-client", None)
            .await
            .status,
        204
    );
    let goodbye = c.closed().await;
    assert!(goodbye.is_some(), "a v5 client is told why");
    assert_eq!(
        gw.call("DELETE", "/api/v1/clients/nobody", None)
            .await
            .status,
        404
    );
    gw.stop().await;
}

#[tokio::test]
async fn retained_messages_are_listed_and_deleted() {
    let gw = Gateway::start(true, None).await;
    let mut c = Client::connect(gw.mqtt, V5, "retainer").await;
    c.publish("r/1", "one", QoS::AtLeastOnce, true).await;
    c.publish("r/2", "two", QoS::AtLeastOnce, true).await;
    c.publish("other", "x", QoS::AtLeastOnce, true).await;
    let list = gw.call("GET", "/api/v1/retained?filter=r/%23", None).await;
    assert_eq!(list.status, 200);
    let list = list.json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list[0]["topic"], "r/1");
    assert_eq!(list[0]["payload"], "one");
    assert_eq!(list[0]["qos"], 1);
    let all = gw.call("GET", "/api/v1/retained", None).await.json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(
        gw.call("DELETE", "/api/v1/retained/r/1", None).await.status,
        204
    );
    let list = gw
        .call("GET", "/api/v1/retained?filter=r/+", None)
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        gw.call("DELETE", "/api/v1/retained/r/1", None).await.status,
        404
    );
    assert_eq!(
        gw.call("GET", "/api/v1/retained?filter=a/%23/b", None)
            .await
            .status,
        400
    );
    // The deletion reached subscribers' view too: a new subscriber gets only r/2.
    c.subscribe("r/#", QoS::AtMostOnce).await;
    let p = c.recv_publish().await;
    assert_eq!(&*p.topic, "r/2");
    gw.stop().await;
}

#[tokio::test]
async fn device_power_is_confirmed_by_a_simulated_tasmota_plug() {
    let gw = Gateway::start(true, None).await;
    let plug = SimPlug::start(&gw, 7);
    let id = plug.id.clone();

    let path = format!("/api/v1/devices/{id}");
    let device = until(&gw, &path, |r| {
        r.status == 200
            && r.json()["online"] == "Online"
            && r.json()["relays"][0]["state"] != "Unknown"
    })
    .await
    .json();
    let listed = gw.call("GET", "/api/v1/devices", None).await.json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == id.as_str())
    );

    let was_on = device["relays"][0]["state"] == "On";
    for on in [!was_on, was_on] {
        let reply = gw
            .call(
                "POST",
                &format!("{path}/power"),
                Some(json!({"relay": 0, "on": on})),
            )
            .await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let state = &reply.json()["relays"][0];
        assert_eq!(state["state"], if on { "On" } else { "Off" });
        assert!(state["pending"].is_null());
    }
    let bad = gw
        .call(
            "POST",
            &format!("{path}/power"),
            Some(json!({"relay": 9, "on": true})),
        )
        .await;
    assert_eq!(bad.status, 400);
    let bad = gw
        .call("POST", &format!("{path}/power"), Some(json!({"of": true})))
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        gw.call("GET", "/api/v1/devices/tasmota:none", None)
            .await
            .status,
        404
    );
    plug.stop().await;
    gw.stop().await;
}

/// A plug that announces itself and then ignores commands.
async fn mute_plug(gw: &Gateway, name: &str) -> Client {
    let mut plug = Client::connect(gw.mqtt, V5, name).await;
    plug.subscribe(&format!("cmnd/{name}/#"), QoS::AtMostOnce)
        .await;
    plug.publish(
        &format!("tele/{name}/LWT"),
        "Online",
        QoS::AtLeastOnce,
        true,
    )
    .await;
    plug.publish(
        &format!("stat/{name}/POWER"),
        "OFF",
        QoS::AtLeastOnce,
        false,
    )
    .await;
    until(gw, &format!("/api/v1/devices/tasmota:{name}"), |r| {
        r.status == 200 && r.json()["relays"][0]["state"] == "Off"
    })
    .await;
    plug
}

#[tokio::test]
async fn a_device_that_never_confirms_gets_504() {
    let gw = Gateway::start(true, None).await;
    let mut plug = mute_plug(&gw, "mute").await;
    let reply = gw
        .call(
            "POST",
            "/api/v1/devices/tasmota:mute/power",
            Some(json!({"on": true})),
        )
        .await;
    assert_eq!(reply.status, 504);
    assert!(reply.json()["error"].is_string());
    // The command did reach the plug.
    let cmd = plug.recv_publish().await;
    assert_eq!(&*cmd.topic, "cmnd/mute/POWER");
    assert_eq!(text(&cmd), "ON");
    gw.stop().await;
}

#[tokio::test]
async fn schedules_crud() {
    let gw = Gateway::start(true, None).await;
    let body = json!({
        "device": "tasmota:x",
        "rule": {"kind": "at", "time": "07:30", "days": ["mon", "fri"], "on": true}
    });
    let created = gw.call("POST", "/api/v1/schedules", Some(body)).await;
    assert_eq!(created.status, 201);
    let created = created.json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(created["next_fire_ms"].as_u64().is_some());
    assert_eq!(created["enabled"], true);

    let list = gw.call("GET", "/api/v1/schedules", None).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let one = gw
        .call("GET", &format!("/api/v1/schedules/{id}"), None)
        .await;
    assert_eq!(one.json()["rule"]["time"], "07:30");
    // A listing entry can be sent back as is (its computed next_fire_ms is ignored).
    let same = gw
        .call("PUT", &format!("/api/v1/schedules/{id}"), Some(one.json()))
        .await;
    assert_eq!(same.status, 200, "{}", String::from_utf8_lossy(&same.body));

    let update = json!({"room": "Kitchen", "rule": {"kind": "off_after", "seconds": 1800}});
    let replaced = gw
        .call(
            "PUT",
            &format!("/api/v1/schedules/{id}"),
            Some(update.clone()),
        )
        .await;
    assert_eq!(replaced.status, 200);
    assert_eq!(replaced.json()["room"], "Kitchen");
    let named = gw
        .call("PUT", "/api/v1/schedules/night", Some(update))
        .await;
    assert_eq!(named.status, 201);

    // Stored as retained JSON where the dashboard can read it.
    let stored = gw
        .call(
            "GET",
            "/api/v1/retained?filter=switchboard/schedules/%2B",
            None,
        )
        .await
        .json();
    assert_eq!(stored.as_array().unwrap().len(), 2, "{stored}");
    let night: Value = serde_json::from_str(stored[1]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(night["rule"]["seconds"], 1800);

    for invalid in [
        json!({"rule": {"kind": "at", "time": "25:00", "on": true}, "device": "a"}),
        json!({"rule": {"kind": "off_after", "seconds": 5}}),
        json!({"rule": {"kind": "off_after", "seconds": 0}, "device": "a"}),
        json!({"device": "a", "room": "b", "rule": {"kind": "off_after", "seconds": 5}}),
    ] {
        let reply = gw.call("POST", "/api/v1/schedules", Some(invalid)).await;
        assert_eq!(
            reply.status,
            400,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    assert_eq!(
        gw.call("DELETE", &format!("/api/v1/schedules/{id}"), None)
            .await
            .status,
        204
    );
    assert_eq!(
        gw.call("DELETE", &format!("/api/v1/schedules/{id}"), None)
            .await
            .status,
        404
    );
    assert_eq!(
        gw.call("GET", "/api/v1/schedules", None)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    gw.stop().await;
}

#[tokio::test]
async fn schedules_fire_on_the_injected_clock() {
    let start = MONDAY + 7 * 3_600_000 + 29 * 60_000; // Monday 07:29 UTC
    let clock = Arc::new(ManualClock::new(start));
    let gw = Gateway::start(true, Some(Arc::clone(&clock))).await;
    let mut plug = mute_plug(&gw, "sched").await;

    // An "at" rule: on at 07:30 on Mondays.
    let at = json!({
        "id": "morning",
        "device": "tasmota:sched",
        "rule": {"kind": "at", "time": "07:30", "days": ["mon"], "on": true}
    });
    let created = gw.call("POST", "/api/v1/schedules", Some(at)).await.json();
    assert_eq!(created["next_fire_ms"], start + 60_000);
    clock.set(start + 61_000);
    let cmd = plug.recv_publish().await;
    assert_eq!(&*cmd.topic, "cmnd/sched/POWER");
    assert_eq!(text(&cmd), "ON");

    // An "off after" timer of 90 s: starts when the plug is seen on.
    let timer = json!({
        "id": "timer",
        "device": "tasmota:sched",
        "rule": {"kind": "off_after", "seconds": 90}
    });
    assert_eq!(
        gw.call("POST", "/api/v1/schedules", Some(timer))
            .await
            .status,
        201
    );
    plug.publish("stat/sched/POWER", "ON", QoS::AtLeastOnce, false)
        .await;
    until(&gw, "/api/v1/devices/tasmota:sched", |r| {
        r.json()["relays"][0]["state"] == "On"
    })
    .await;
    // Move the clock in 90 s steps: the first step the runner sees may be the one that starts
    // the timer; the OFF command must come at most one step later.
    let mut now = start + 61_000;
    let mut steps = 0;
    let cmd = loop {
        now += 90_000;
        steps += 1;
        assert!(steps <= 3, "the timer never fired");
        clock.set(now);
        if let Ok(p) = tokio::time::timeout(Duration::from_millis(500), plug.recv_publish()).await {
            break p;
        }
    };
    assert_eq!(&*cmd.topic, "cmnd/sched/POWER");
    assert_eq!(text(&cmd), "OFF");
    gw.stop().await;
}

#[tokio::test]
async fn schedules_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), true, None).await;
    let body = json!({
        "id": "kept",
        "room": "Office",
        "rule": {"kind": "at", "time": "22:00", "on": false}
    });
    assert_eq!(
        gw.call("POST", "/api/v1/schedules", Some(body))
            .await
            .status,
        201
    );
    gw.stop().await;
    let gw = Gateway::start_in(dir.path(), true, None).await;
    let one = until(&gw, "/api/v1/schedules/kept", |r| r.status == 200).await;
    assert_eq!(one.json()["room"], "Office");
    assert_eq!(one.json()["rule"]["time"], "22:00");
    gw.stop().await;
}

/// The next device-channel view `c` receives that satisfies `done`.
async fn next_view(c: &mut Client, done: impl Fn(&Value) -> bool) -> Value {
    loop {
        let p = c.recv_publish().await;
        if p.topic.ends_with("/set") {
            continue;
        }
        let view: Value = serde_json::from_slice(&p.payload).unwrap();
        if done(&view) {
            return view;
        }
    }
}

#[tokio::test]
async fn the_device_channel_mirrors_a_plug_and_switches_it() {
    let gw = Gateway::start(true, None).await;
    let mut plug = Client::connect(gw.mqtt, V5, "chan").await;
    plug.subscribe("cmnd/chan/#", QoS::AtMostOnce).await;
    plug.publish("tele/chan/LWT", "Online", QoS::AtLeastOnce, true)
        .await;
    plug.publish("stat/chan/POWER", "OFF", QoS::AtLeastOnce, false)
        .await;

    // A widget-like client: the retained view arrives on subscribe, in model terms.
    let mut widget = Client::connect(gw.mqtt, V5, "widget").await;
    widget
        .subscribe("switchboard/devices/tasmota:chan", QoS::AtMostOnce)
        .await;
    let view = next_view(&mut widget, |v| v["relays"][0]["state"] == "Off").await;
    assert_eq!(view["id"], "tasmota:chan");
    assert_eq!(view["online"], "Online");
    assert!(view.get("history").is_none());
    // Commands come from another client (this one only reads, so no PUBACK interleaves).
    let mut commander = Client::connect(gw.mqtt, V5, "commander").await;

    // JSON command: the plug gets its own command, the view shows pending, then confirmed.
    commander
        .publish(
            "switchboard/devices/tasmota:chan/set",
            r#"{"relay":0,"on":true}"#,
            QoS::AtLeastOnce,
            false,
        )
        .await;
    let cmd = plug.recv_publish().await;
    assert_eq!((&*cmd.topic, text(&cmd)), ("cmnd/chan/POWER", "ON"));
    let pending = next_view(&mut widget, |v| !v["relays"][0]["pending"].is_null()).await;
    assert_eq!(pending["relays"][0]["pending"]["want"], true);
    plug.publish("stat/chan/POWER", "ON", QoS::AtLeastOnce, false)
        .await;
    next_view(&mut widget, |v| {
        v["relays"][0]["state"] == "On" && v["relays"][0]["pending"].is_null()
    })
    .await;

    // A bad payload switches nothing: the next command the plug sees is the TOGGLE's OFF.
    for payload in ["maybe", r#"{"relay":0}"#, "TOGGLE"] {
        commander
            .publish(
                "switchboard/devices/tasmota:chan/set",
                payload,
                QoS::AtLeastOnce,
                false,
            )
            .await;
    }
    let cmd = plug.recv_publish().await;
    assert_eq!((&*cmd.topic, text(&cmd)), ("cmnd/chan/POWER", "OFF"));

    // The state topic is the gateway's: a client may not publish there (v5 PUBACK 0x87).
    let pid = commander.next_pid();
    let mut spoof = switchboard_mqtt::Publish::new(
        "switchboard/devices/tasmota:chan".to_owned(),
        br#"{"id":"tasmota:chan"}"#.to_vec(),
    );
    spoof.qos_pid = switchboard_mqtt::QosPid::new(QoS::AtLeastOnce, pid);
    commander
        .send(switchboard_mqtt::Packet::Publish(spoof))
        .await;
    match commander.recv().await {
        switchboard_mqtt::Packet::PubAck(ack) => {
            assert_eq!(ack.code, switchboard_mqtt::ReasonCode::NotAuthorized);
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }

    // The plug's last will: the view says offline.
    plug.publish("tele/chan/LWT", "Offline", QoS::AtLeastOnce, true)
        .await;
    next_view(&mut widget, |v| v["online"] == "Offline").await;
    gw.stop().await;
}

/// Defect 3 of the hostile-input round: a page on another site, open in a browser on the
/// gateway's own machine (so the requests come from loopback, and no key is needed), must not
/// switch a plug or add a schedule, and a DNS-rebinding page (a foreign name resolving to the
/// gateway) must not read the API. curl-style requests and the dashboard's own origin still work.
#[tokio::test]
async fn requests_from_other_sites_change_nothing() {
    let gw = Gateway::start(false, None).await;
    let plug = SimPlug::start(&gw, 11);
    let id = plug.id.clone();
    let path = format!("/api/v1/devices/{id}");
    let state = |reply: &Reply| reply.json()["relays"][0]["state"].clone();
    let before = until(&gw, &path, |r| {
        r.status == 200 && r.json()["relays"][0]["state"] != "Unknown"
    })
    .await;
    let on = state(&before) != "On";
    let power = format!("{path}/power");
    let switch = json!({"relay": 0, "on": on}).to_string();
    let schedule =
        json!({"device": id, "rule": {"kind": "at", "time": "07:30", "on": on}}).to_string();

    let evil = "Host: localhost\r\nOrigin: https://evil.example\r\n";
    let refused = [
        // A form or `fetch(..., {mode: "no-cors"})`: text/plain needs no CORS preflight.
        ("POST", power.as_str(), "Host: localhost\r\nContent-Type: text/plain\r\n".to_owned(), 415),
        ("POST", power.as_str(), "Host: localhost\r\n".to_owned(), 415),
        ("POST", power.as_str(), format!("{evil}Content-Type: text/plain\r\n"), 403),
        ("POST", power.as_str(), format!("{evil}Content-Type: application/json\r\n"), 403),
        ("POST", "/api/v1/schedules", format!("{evil}Content-Type: text/plain\r\n"), 403),
        (
            "POST",
            "/api/v1/schedules",
            "Host: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n".to_owned(),
            415,
        ),
        // DNS rebinding: the page's own name, same-origin with itself.
        (
            "POST",
            power.as_str(),
            "Host: evil.example\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\n"
                .to_owned(),
            421,
        ),
    ];
    for (method, target, headers, status) in &refused {
        let body = if target.ends_with("power") {
            &switch
        } else {
            &schedule
        };
        let reply = raw_request(gw.http, method, target, headers, body).await;
        assert_eq!(
            reply.status, *status,
            "{method} {target} with {headers:?}: {reply:?}"
        );
        assert!(reply.json()["error"].is_string(), "{reply:?}");
    }
    let read = raw_request(
        gw.http,
        "GET",
        "/api/v1/clients",
        "Host: evil.example\r\n",
        "",
    )
    .await;
    assert_eq!(read.status, 421, "{read:?}");
    assert!(
        String::from_utf8_lossy(&read.body).contains("allowed_hosts"),
        "the refusal says what to configure: {read:?}"
    );
    // Nothing changed.
    assert_eq!(state(&gw.call("GET", &path, None).await), state(&before));
    assert_eq!(
        gw.call("GET", "/api/v1/schedules", None).await.json(),
        json!([])
    );

    // curl (no Origin, JSON) and the dashboard on the gateway's own origin still switch.
    let own = format!(
        "Host: {0}\r\nOrigin: http://{0}\r\nContent-Type: application/json\r\n",
        gw.http
    );
    let reply = raw_request(gw.http, "POST", &power, &own, &switch).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(state(&reply), if on { "On" } else { "Off" });
    let curl = "Host: localhost\r\nContent-Type: application/json; charset=utf-8\r\n";
    let reply = raw_request(gw.http, "POST", "/api/v1/schedules", curl, &schedule).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    plug.stop().await;
    gw.stop().await;
}

/// The gateway says, retained, which time zone its schedules run in (the dashboard's schedule
/// editor shows it); clients cannot overwrite it.
#[tokio::test]
async fn the_schedules_time_zone_is_published_and_reserved() {
    let gw = Gateway::start(true, None).await;
    let mut c = Client::connect(gw.mqtt, V5, "zone").await;
    c.subscribe("$SYS/broker/time_zone", QoS::AtMostOnce).await;
    let zone = c.recv_publish().await;
    assert!(zone.retain);
    assert_eq!(text(&zone), "UTC");
    let pid = c.next_pid();
    let mut spoof = switchboard_mqtt::Publish::new(
        "$SYS/broker/time_zone".to_owned(),
        b"Mars/Olympus".to_vec(),
    );
    spoof.qos_pid = switchboard_mqtt::QosPid::new(QoS::AtLeastOnce, pid);
    c.send(switchboard_mqtt::Packet::Publish(spoof)).await;
    match c.recv().await {
        switchboard_mqtt::Packet::PubAck(ack) => {
            assert_eq!(ack.code, switchboard_mqtt::ReasonCode::NotAuthorized);
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
    gw.stop().await;
}
