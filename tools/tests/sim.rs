//! The simulator and the tokio MQTT client against a real broker: a Mosquitto started for each
//! test on a free loopback port (the same against Switchboard's own broker is in
//! `gateway/tests/sim.rs`).
//!
//! For every profile: availability is retained and online, discovery is retained where the
//! family has it, a command sent by a third-party client (`mosquitto_pub`) is confirmed exactly
//! as the real firmware confirms it (topic, payload, retain flag), and telemetry flows. Retain
//! flags of live messages are observed through an MQTT 5 subscription with Retain As Published;
//! retained copies through `mosquitto_sub` subscribing afterwards.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use switchboard_tools::mqtt_client::{Client, ClientOptions, Event, ProtocolVersion, QoS, Will};
use switchboard_tools::sim::{self, Behaviour, Profile, SimConfig, SimDevice};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use support::{Observer, Running, WAIT, fleet, free_port, is, json, text};

impl Observer {
    /// Forgets what was seen, so the next wait only matches newer messages.
    fn clear(&mut self) {
        self.seen.clear();
    }
}

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_SUB: &str = "/usr/bin/mosquitto_sub";
const MOSQUITTO_PUB: &str = "/usr/bin/mosquitto_pub";

/// A Mosquitto process on a loopback port, killed on drop.
struct Mosquitto {
    child: tokio::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    async fn start_on(port: u16) -> Self {
        for bin in [MOSQUITTO, MOSQUITTO_SUB, MOSQUITTO_PUB] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing (Debian packages mosquitto and mosquitto-clients): run `cargo xtask setup`"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\n"),
        )
        .expect("write config");
        let mut child = tokio::process::Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start mosquitto");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut log = Vec::new();
        let ready = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                let running = line.contains(" running");
                log.push(line);
                if running {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "mosquitto did not start on port {port}: {log:?}"
        );
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `mosquitto_sub` subscribing to `topic` afterwards: the retained copy as `(retain, payload)`.
async fn retained_copy(port: u16, topic: &str) -> (bool, String) {
    let out = tokio::process::Command::new(MOSQUITTO_SUB)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
        .args(["-C", "1", "-W", "10", "-F", "%r %p"])
        .output()
        .await
        .expect("run mosquitto_sub");
    let text = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
    let (flag, payload) = text
        .split_once(' ')
        .unwrap_or_else(|| panic!("no retained message on {topic}: {text:?}"));
    (flag == "1", payload.to_owned())
}

/// `mosquitto_pub`: a command as a third-party controller sends it (QoS 1, not retained).
async fn send_command(port: u16, topic: &str, payload: &str) {
    let status = tokio::process::Command::new(MOSQUITTO_PUB)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-t", topic, "-m", payload])
        .status()
        .await
        .expect("run mosquitto_pub");
    assert!(status.success(), "mosquitto_pub failed");
}

/// Starts Mosquitto, an observer, and `count` plugs of `profile`.
async fn setup(profile: Profile, count: usize) -> (Mosquitto, Observer, Vec<SimDevice>, Running) {
    let broker = Mosquitto::start().await;
    let observer = Observer::start(&broker.addr(), ProtocolVersion::V5).await;
    let devices = fleet(profile, count);
    let running = Running::start(devices.clone(), &broker.addr());
    (broker, observer, devices, running)
}

#[tokio::test]
async fn tasmota_against_mosquitto() {
    let (broker, mut obs, devices, running) = setup(Profile::Tasmota, 2).await;
    assert_eq!(devices.len(), 2);
    for d in &devices {
        let t = &d.plugs()[0].spec.key;
        let lwt = obs
            .wait_for("LWT Online", is(&format!("tele/{t}/LWT"), "Online"))
            .await;
        assert!(lwt.retain);
        assert_eq!(
            retained_copy(broker.port, &format!("tele/{t}/LWT")).await,
            (true, "Online".into())
        );
    }
    let t = devices[0].plugs()[0].spec.key.clone();
    assert!(!devices[0].plugs()[0].on, "a kettle starts off");
    obs.clear();
    send_command(broker.port, &format!("cmnd/{t}/POWER"), "TOGGLE").await;
    let result = obs
        .wait_for(
            "RESULT",
            is(&format!("stat/{t}/RESULT"), r#"{"POWER":"ON"}"#),
        )
        .await;
    assert!(!result.retain);
    let power = obs
        .wait_for("stat POWER", is(&format!("stat/{t}/POWER"), "ON"))
        .await;
    assert!(!power.retain, "PowerRetain is off by default");
    let sensor = obs
        .wait_for("SENSOR with power", |m| {
            *m.topic == format!("tele/{t}/SENSOR")
                && json(m)["ENERGY"]["Power"].as_i64() > Some(1000)
        })
        .await;
    assert!(json(&sensor)["ENERGY"]["Total"].as_f64().is_some());
    // An empty payload queries.
    obs.clear();
    send_command(broker.port, &format!("cmnd/{t}/POWER"), "").await;
    obs.wait_for("query answer", is(&format!("stat/{t}/POWER"), "ON"))
        .await;
    running.stop().await;
    // A clean stop says Offline, retained.
    assert_eq!(
        retained_copy(broker.port, &format!("tele/{t}/LWT")).await,
        (true, "Offline".into())
    );
    broker.stop().await;
}

#[tokio::test]
async fn shelly_gen1_against_mosquitto() {
    let (broker, mut obs, devices, running) = setup(Profile::Shelly1, 2).await;
    let id = devices[0].plugs()[0].spec.key.clone();
    assert!(id.starts_with("shellyplug-s-"));
    let online = obs
        .wait_for("online", is(&format!("shellies/{id}/online"), "true"))
        .await;
    assert!(online.retain);
    assert_eq!(
        retained_copy(broker.port, &format!("shellies/{id}/online")).await,
        (true, "true".into())
    );
    obs.wait_for("announce", |m| {
        *m.topic == *"shellies/announce" && json(m)["id"] == id.as_str()
    })
    .await;
    obs.clear();
    send_command(broker.port, &format!("shellies/{id}/relay/0/command"), "on").await;
    let state = obs
        .wait_for("relay on", is(&format!("shellies/{id}/relay/0"), "on"))
        .await;
    assert!(!state.retain);
    obs.wait_for("power reading", |m| {
        *m.topic == format!("shellies/{id}/relay/0/power")
            && text(m).parse::<f64>().is_ok_and(|w| w > 1000.0)
    })
    .await;
    obs.wait_for("energy counter", |m| {
        *m.topic == format!("shellies/{id}/relay/0/energy") && text(m).parse::<u64>().is_ok()
    })
    .await;
    running.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn shelly_gen2_against_mosquitto() {
    let (broker, mut obs, devices, running) = setup(Profile::Shelly2, 2).await;
    let p = devices[0].plugs()[0].spec.key.clone();
    let online = obs
        .wait_for("online", is(&format!("{p}/online"), "true"))
        .await;
    assert!(online.retain);
    assert_eq!(
        retained_copy(broker.port, &format!("{p}/online")).await,
        (true, "true".into())
    );
    obs.clear();
    let request = r#"{"id":17,"src":"sim-test","method":"Switch.Set","params":{"id":0,"on":true}}"#;
    send_command(broker.port, &format!("{p}/rpc"), request).await;
    let reply = obs
        .wait_for("RPC reply", |m| *m.topic == *"sim-test/rpc")
        .await;
    assert_eq!(
        text(&reply),
        format!(r#"{{"id":17,"src":"{p}","dst":"sim-test","result":{{"was_on":false}}}}"#)
    );
    let status = obs
        .wait_for("status on", |m| {
            *m.topic == format!("{p}/status/switch:0") && json(m)["output"] == true
        })
        .await;
    assert!(!status.retain);
    assert_eq!(json(&status)["source"], "MQTT");
    let notify = obs
        .wait_for("NotifyStatus", |m| *m.topic == format!("{p}/events/rpc"))
        .await;
    assert_eq!(json(&notify)["params"]["switch:0"]["output"], true);
    obs.wait_for("metered status", |m| {
        *m.topic == format!("{p}/status/switch:0")
            && json(m)["apower"].as_f64() > Some(1000.0)
            && json(m)["aenergy"]["total"].as_f64().is_some()
    })
    .await;
    running.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn zigbee2mqtt_against_mosquitto() {
    let (broker, mut obs, devices, running) = setup(Profile::Z2m, 2).await;
    assert_eq!(devices.len(), 1, "one bridge");
    let name = devices[0].plugs()[0].spec.key.clone();
    assert_eq!(name, "kitchen/kettle");
    let avail = format!("zigbee2mqtt/{name}/availability");
    let a = obs
        .wait_for("availability", is(&avail, r#"{"state":"online"}"#))
        .await;
    assert!(a.retain);
    assert_eq!(
        retained_copy(broker.port, &avail).await,
        (true, r#"{"state":"online"}"#.into())
    );
    let (retained, list) = retained_copy(broker.port, "zigbee2mqtt/bridge/devices").await;
    assert!(retained);
    let list: Value = serde_json::from_str(&list).expect("device list JSON");
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|d| d["friendly_name"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["Coordinator", "kitchen/kettle", "living_room/tv"]
    );
    assert_eq!(
        retained_copy(broker.port, "zigbee2mqtt/bridge/state").await,
        (true, r#"{"state":"online"}"#.into())
    );
    obs.clear();
    send_command(
        broker.port,
        &format!("zigbee2mqtt/{name}/set"),
        r#"{"state":"ON"}"#,
    )
    .await;
    let state = obs
        .wait_for("state ON", |m| {
            *m.topic == format!("zigbee2mqtt/{name}") && json(m)["state"] == "ON"
        })
        .await;
    assert!(!state.retain);
    assert!(json(&state)["linkquality"].as_u64().is_some());
    obs.wait_for("metered state", |m| {
        *m.topic == format!("zigbee2mqtt/{name}") && json(m)["power"].as_i64() > Some(1000)
    })
    .await;
    running.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn home_assistant_against_mosquitto() {
    let (broker, mut obs, devices, running) = setup(Profile::Ha, 2).await;
    let node = devices[0].plugs()[0].spec.key.clone();
    let a = obs
        .wait_for("availability", is(&format!("{node}/status"), "online"))
        .await;
    assert!(a.retain);
    assert_eq!(
        retained_copy(broker.port, &format!("{node}/status")).await,
        (true, "online".into())
    );
    // Discovery follows availability: wait until the broker has it.
    obs.wait_for("sensor config", |m| {
        *m.topic == format!("homeassistant/sensor/{node}/energy_today/config")
    })
    .await;
    let (retained, config) = retained_copy(
        broker.port,
        &format!("homeassistant/switch/{node}/relay/config"),
    )
    .await;
    assert!(retained);
    let config: Value = serde_json::from_str(&config).expect("config JSON");
    assert_eq!(config["cmd_t"], format!("{node}/switch/relay/command"));
    let (retained, power) = retained_copy(
        broker.port,
        &format!("homeassistant/sensor/{node}/power/config"),
    )
    .await;
    assert!(retained);
    let power: Value = serde_json::from_str(&power).expect("config JSON");
    assert_eq!(power["dev_cla"], "power");
    assert_eq!(power["dev"]["ids"], config["dev"]["ids"], "one device");
    obs.clear();
    send_command(broker.port, &format!("{node}/switch/relay/command"), "ON").await;
    let state = obs
        .wait_for("state ON", is(&format!("{node}/switch/relay/state"), "ON"))
        .await;
    assert!(state.retain, "ESPHome retains states");
    assert_eq!(
        retained_copy(broker.port, &format!("{node}/switch/relay/state")).await,
        (true, "ON".into())
    );
    obs.wait_for("power sensor", |m| {
        *m.topic == format!("{node}/sensor/power/state")
            && text(m).parse::<f64>().is_ok_and(|w| w > 1000.0)
    })
    .await;
    running.stop().await;
    broker.stop().await;
}

/// A broker restart loses retained messages: the devices reconnect and announce themselves
/// again (availability, discovery).
#[tokio::test]
async fn devices_announce_again_after_a_broker_restart() {
    let (broker, mut first, devices, running) = setup(Profile::Ha, 1).await;
    let port = broker.port;
    let node = devices[0].plugs()[0].spec.key.clone();
    let topic = format!("{node}/status");
    first.wait_for("online", is(&topic, "online")).await;
    assert_eq!(retained_copy(port, &topic).await, (true, "online".into()));
    broker.stop().await;
    let broker = Mosquitto::start_on(port).await;
    let mut obs = Observer::start(&broker.addr(), ProtocolVersion::V5).await;
    obs.wait_for("online again", is(&topic, "online")).await;
    let config = format!("homeassistant/switch/{node}/relay/config");
    assert!(
        retained_copy(port, &config).await.0,
        "discovery published again"
    );
    running.stop().await;
    broker.stop().await;
}

/// With faults on, devices drop their connection without DISCONNECT and the broker publishes
/// their last will.
#[tokio::test]
async fn faults_make_the_broker_publish_the_will() {
    let broker = Mosquitto::start().await;
    let mut obs = Observer::start(&broker.addr(), ProtocolVersion::V5).await;
    let devices = sim::fleet(&SimConfig {
        count: 6,
        profile: Profile::Tasmota,
        seed: 7,
        behaviour: Behaviour {
            telemetry_period: Duration::from_secs(1),
            button_mean: None,
            fault_mean: Some(Duration::from_millis(500)),
            ..Behaviour::default()
        },
    });
    let running = Running::start(devices, &broker.addr());
    let will = obs
        .wait_for("a will", |m| {
            m.topic.ends_with("/LWT") && text(m) == "Offline"
        })
        .await;
    assert!(will.retain, "the will is retained");
    running.stop().await;
    broker.stop().await;
}

/// The client's own features: QoS 0/1/2 round trip with awaited completion, the will on an
/// abrupt close, and reconnection (with the subscription made again) after a broker restart.
#[tokio::test]
async fn mqtt_client_qos_will_and_reconnect() {
    let broker = Mosquitto::start().await;
    let port = broker.port;
    let mut options = ClientOptions::new(broker.addr(), "client-under-test");
    options.reconnect = Some(switchboard_tools::mqtt_client::Reconnect {
        min_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
    });
    let (client, mut events) = Client::connect(options).await.expect("connects");
    assert_eq!(
        events.recv().await,
        Some(Event::Connected {
            session_present: false
        })
    );
    client
        .subscribe(&[("qos/#", QoS::ExactlyOnce)])
        .await
        .expect("subscribes");
    for (n, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        client
            .publish(format!("qos/{n}"), format!("m{n}"), qos, false)
            .await
            .expect("accepted")
            .completed()
            .await
            .expect("acknowledged");
        let m = tokio::time::timeout(WAIT, events.next_message())
            .await
            .expect("delivered in time")
            .expect("message");
        assert_eq!(
            (&*m.topic, &m.payload[..], m.qos),
            (&*format!("qos/{n}"), format!("m{n}").as_bytes(), qos)
        );
    }

    // A will published on an abrupt close.
    let mut obs = Observer::start(&broker.addr(), ProtocolVersion::V3_1_1).await;
    let doomed = ClientOptions::new(broker.addr(), "doomed").with_will(Will {
        topic: "wills/doomed".into(),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain: true,
    });
    let (doomed, _doomed_events) = Client::connect(doomed).await.expect("connects");
    doomed.abort().await;
    obs.wait_for("will", is("wills/doomed", "gone")).await;
    assert_eq!(
        retained_copy(port, "wills/doomed").await,
        (true, "gone".into())
    );

    // Broker restart on the same port: the client reconnects and subscribes again.
    broker.stop().await;
    let lost = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("noticed");
    assert!(matches!(lost, Some(Event::Disconnected { .. })), "{lost:?}");
    let broker = Mosquitto::start_on(port).await;
    let back = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("reconnected");
    assert_eq!(
        back,
        Some(Event::Connected {
            session_present: false
        })
    );
    // The SUBACK of the renewed subscription precedes this publication's delivery, as the
    // client sends SUBSCRIBE before the PUBLISH on the new connection.
    client
        .publish("qos/again", "back", QoS::AtLeastOnce, false)
        .await
        .expect("accepted")
        .completed()
        .await
        .expect("acknowledged");
    let m = tokio::time::timeout(WAIT, events.next_message())
        .await
        .expect("delivered after reconnect")
        .expect("message");
    assert_eq!((&*m.topic, &m.payload[..]), ("qos/again", &b"back"[..]));
    client.disconnect().await;
    broker.stop().await;
}
