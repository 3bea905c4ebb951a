//! The simulator and the tokio MQTT client of `switchboard-tools` against Switchboard's own
//! broker, in-process on port 0: the mixed household comes online, obeys commands sent by
//! another client exactly as the real firmware does, and its availability is retained. The
//! same checks against Mosquitto, family by family, are in `tools/tests/sim.rs`.

mod harness;
#[path = "../../tools/tests/support/mod.rs"]
mod support;

use switchboard_tools::mqtt_client::{Client, ClientOptions, ProtocolVersion, QoS};
use switchboard_tools::sim::Profile;

use support::{Observer, Running, fleet, is, json};

/// The mixed household against Switchboard's own broker, in-process on port 0.
#[tokio::test]
async fn mixed_household_against_switchboard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = harness::loopback(&dir.path().join("data"));
    config.listeners.http = vec![];
    let gateway = harness::Running::start(config, switchboard::RunOptions::default()).await;
    let addr = gateway.bound.mqtt[0].to_string();
    let mut obs = Observer::start(&addr, ProtocolVersion::V3_1_1).await;
    let devices = fleet(Profile::Mixed, 5);
    let running = Running::start(devices.clone(), &addr);
    let commander = Client::connect(ClientOptions::new(addr.clone(), "commander"))
        .await
        .expect("commander connects")
        .0;
    // One device per family; Zigbee2MQTT is the bridge at the end.
    let key = |i: usize| devices[i].plugs()[0].spec.key.clone();
    let t = key(0);
    let shelly1 = key(1);
    let shelly2 = key(2);
    let node = key(3);
    let zigbee = key(4);
    obs.wait_for("tasmota online", is(&format!("tele/{t}/LWT"), "Online"))
        .await;
    obs.wait_for(
        "gen1 online",
        is(&format!("shellies/{shelly1}/online"), "true"),
    )
    .await;
    obs.wait_for("gen2 online", is(&format!("{shelly2}/online"), "true"))
        .await;
    obs.wait_for("ha online", is(&format!("{node}/status"), "online"))
        .await;
    obs.wait_for(
        "z2m online",
        is(
            &format!("zigbee2mqtt/{zigbee}/availability"),
            r#"{"state":"online"}"#,
        ),
    )
    .await;
    let cases = [
        (
            format!("cmnd/{t}/POWER"),
            "ON".to_owned(),
            format!("stat/{t}/POWER"),
            "ON",
        ),
        (
            format!("shellies/{shelly1}/relay/0/command"),
            "off".to_owned(),
            format!("shellies/{shelly1}/relay/0"),
            "off",
        ),
        (
            format!("{node}/switch/relay/command"),
            "ON".to_owned(),
            format!("{node}/switch/relay/state"),
            "ON",
        ),
    ];
    for (cmd, payload, state, want) in cases {
        client_publish(&commander, &cmd, &payload).await;
        obs.wait_for(&state, is(&state, want)).await;
    }
    client_publish(
        &commander,
        &format!("{shelly2}/rpc"),
        r#"{"id":1,"src":"commander","method":"Switch.Toggle","params":{"id":0}}"#,
    )
    .await;
    obs.wait_for("gen2 reply", |m| {
        *m.topic == *"commander/rpc" && json(m)["result"]["was_on"].is_boolean()
    })
    .await;
    client_publish(
        &commander,
        &format!("zigbee2mqtt/{zigbee}/set"),
        r#"{"state":"ON"}"#,
    )
    .await;
    obs.wait_for("z2m state", |m| {
        *m.topic == format!("zigbee2mqtt/{zigbee}") && json(m)["state"] == "ON"
    })
    .await;
    // Retained availability, read by a client arriving later.
    let mut late = Observer::start(&addr, ProtocolVersion::V3_1_1).await;
    let lwt = late
        .wait_for("retained LWT", is(&format!("tele/{t}/LWT"), "Online"))
        .await;
    assert!(lwt.retain);
    running.stop().await;
    gateway.stop().await;
}

async fn client_publish(client: &Client, topic: &str, payload: &str) {
    client
        .publish(
            topic.to_owned(),
            payload.to_owned(),
            QoS::AtLeastOnce,
            false,
        )
        .await
        .expect("accepted")
        .completed()
        .await
        .expect("acknowledged");
}
