//! Cross-family behaviour of the registry: subscriptions, pending commands and their timeout,
//! user meta, manual switches, "all off", and robustness against garbage.

use switchboard_devices::{
    Availability, Change, CommandError, DeviceId, ManualSwitch, Registry, RegistryConfig,
    RelayState, SUBSCRIPTIONS, topic_matches,
};

fn kitchen() -> DeviceId {
    DeviceId::from("tasmota:kitchen")
}

fn with_kitchen() -> Registry {
    let mut reg = Registry::new();
    reg.handle_message("tele/kitchen/LWT", b"Online", true, 0);
    reg.handle_message("stat/kitchen/POWER", b"OFF", true, 0);
    reg
}

#[test]
fn subscriptions_cover_every_family() {
    let subs = Registry::subscriptions();
    assert_eq!(subs, SUBSCRIPTIONS);
    for topic in [
        "homeassistant/switch/x/config",
        "homeassistant/device/x/config",
        "tele/kitchen/LWT",
        "tele/kitchen/SENSOR",
        "stat/kitchen/POWER2",
        "stat/kitchen/RESULT",
        "shellies/shellyplug-s-7AD8E1/relay/0/power",
        "shellyplusplugs-a8032ab12345/online",
        "shellyplusplugs-a8032ab12345/status/switch:0",
        "shellyplusplugs-a8032ab12345/events/rpc",
        "zigbee2mqtt/kitchen/plug/availability",
        "zigbee2mqtt/bridge/devices",
        "switchboard/meta/z2m:a%2Fb",
    ] {
        assert!(subs.iter().any(|f| topic_matches(f, topic)), "{topic}");
    }
    // Commands we publish must not come back as something we parse as state.
    for f in &subs {
        assert!(!f.starts_with('$'));
        assert!(!topic_matches(f, "$SYS/broker/online"));
    }
}

#[test]
fn topic_matching_rules() {
    assert!(topic_matches("a/#", "a"));
    assert!(topic_matches("a/#", "a/b/c"));
    assert!(topic_matches("+/online", "x/online"));
    assert!(!topic_matches("+/online", "x/y/online"));
    assert!(!topic_matches("+/online", "$SYS/online"));
    assert!(!topic_matches("#", "$SYS/x"));
    assert!(topic_matches("$SYS/#", "$SYS/x"));
    assert!(!topic_matches("a/+", "a"));
}

#[test]
fn pending_times_out_and_reports() {
    let mut reg = with_kitchen();
    reg.command(&kitchen(), 0, true, 1_000).unwrap();
    assert_eq!(reg.next_deadline(), Some(6_000));
    assert!(reg.tick(5_999).is_empty());
    let changes = reg.tick(6_000);
    assert_eq!(
        changes,
        vec![Change::CommandTimedOut {
            id: kitchen(),
            relay: 0
        }]
    );
    let r = &reg.get(&kitchen()).unwrap().relays[0];
    assert_eq!((r.state, r.pending), (RelayState::Off, None));
    assert_eq!(reg.next_deadline(), None);
    assert!(reg.tick(100_000).is_empty());
}

#[test]
fn configurable_timeout() {
    let mut reg = Registry::with_config(RegistryConfig {
        command_timeout_ms: 500,
        ..RegistryConfig::default()
    });
    reg.handle_message("tele/k/LWT", b"Online", true, 0);
    reg.command(&DeviceId::from("tasmota:k"), 0, false, 100)
        .unwrap();
    assert_eq!(reg.tick(600).len(), 1);
}

#[test]
fn opposite_state_keeps_pending() {
    let mut reg = with_kitchen();
    reg.command(&kitchen(), 0, true, 1_000).unwrap();
    // A periodic STATE from before the command still says OFF.
    reg.handle_message("tele/kitchen/STATE", br#"{"POWER":"OFF"}"#, false, 1_100);
    let r = &reg.get(&kitchen()).unwrap().relays[0];
    assert_eq!(r.state, RelayState::Off);
    assert!(r.pending.is_some());
    reg.handle_message("stat/kitchen/POWER", b"ON", false, 1_200);
    assert!(reg.get(&kitchen()).unwrap().relays[0].pending.is_none());
}

#[test]
fn unknown_device_and_relay() {
    let mut reg = with_kitchen();
    let ghost = DeviceId::from("tasmota:ghost");
    assert_eq!(
        reg.command(&ghost, 0, true, 0),
        Err(CommandError::UnknownDevice(ghost.clone()))
    );
    assert!(matches!(
        reg.command(&kitchen(), 1, true, 0),
        Err(CommandError::UnknownRelay { relay: 1, .. })
    ));
}

#[test]
fn meta_round_trip() {
    let mut reg = with_kitchen();
    let msg = reg.set_meta(&kitchen(), Some("Kettle"), Some("Kitchen"));
    assert_eq!(msg.topic, "switchboard/meta/tasmota:kitchen");
    assert!(msg.retain);
    assert_eq!(msg.payload_str(), r#"{"name":"Kettle","room":"Kitchen"}"#);
    // Applied when the broker delivers it back.
    let changes = reg.handle_message(&msg.topic, &msg.payload, true, 0);
    assert_eq!(changes, vec![Change::Updated(kitchen())]);
    let d = reg.get(&kitchen()).unwrap();
    assert_eq!(
        (d.name.as_str(), d.room.as_deref()),
        ("Kettle", Some("Kitchen"))
    );
    // Clearing restores the family's name.
    let clear = reg.set_meta(&kitchen(), None, Some("  "));
    assert!(clear.payload.is_empty() && clear.retain);
    reg.handle_message(&clear.topic, &clear.payload, true, 0);
    let d = reg.get(&kitchen()).unwrap();
    assert_eq!((d.name.as_str(), d.room.as_deref()), ("kitchen", None));
}

#[test]
fn meta_before_discovery_and_escaped_ids() {
    let mut reg = Registry::new();
    let id = DeviceId::from("z2m:living/lamp");
    let msg = reg.set_meta(&id, Some("Reading lamp"), Some("Living room"));
    assert_eq!(msg.topic, "switchboard/meta/z2m:living%2Flamp");
    assert!(
        reg.handle_message(&msg.topic, &msg.payload, true, 0)
            .is_empty()
    );
    reg.handle_message(
        "zigbee2mqtt/living/lamp",
        br#"{"state":"OFF","linkquality":40}"#,
        false,
        1,
    );
    let d = reg.get(&id).unwrap();
    assert_eq!(d.name, "Reading lamp");
    assert_eq!(d.room.as_deref(), Some("Living room"));
}

#[test]
fn meta_garbage_is_an_error() {
    let mut reg = with_kitchen();
    assert!(
        reg.try_handle_message("switchboard/meta/bad%zz", b"{}", true, 0)
            .is_err()
    );
    assert!(
        reg.try_handle_message("switchboard/meta/tasmota:kitchen", b"Kettle", true, 0)
            .is_err()
    );
    assert!(
        reg.try_handle_message(
            "switchboard/meta/tasmota:kitchen",
            br#"{"name":5}"#,
            true,
            0
        )
        .is_err()
    );
    assert_eq!(reg.get(&kitchen()).unwrap().name, "kitchen");
}

#[test]
fn manual_switch_without_state_is_optimistic() {
    let mut reg = Registry::new();
    let sw = ManualSwitch::new("esp32-hall", "Hall light", "room/light");
    let id = sw.device_id();
    assert_eq!(id.as_str(), "manual:esp32-hall");
    assert_eq!(reg.add_manual(sw), vec![Change::Added(id.clone())]);
    let d = reg.get(&id).unwrap();
    assert!(!d.has_state_topic);
    assert_eq!(d.online, Availability::Unknown);
    let out = reg.command(&id, 0, true, 5).unwrap();
    assert_eq!(out[0].topic, "room/light");
    assert_eq!(out[0].payload, b"ON");
    assert!(!out[0].retain);
    let r = &reg.get(&id).unwrap().relays[0];
    assert_eq!((r.state, r.pending), (RelayState::On, None));
}

#[test]
fn manual_switch_with_state_topic() {
    let mut reg = Registry::new();
    let mut sw =
        ManualSwitch::new("esp32", "Desk lamp", "room/light/set").with_state_topic("room/light");
    sw.state_on = "pressed".into();
    sw.state_off = "released".into();
    let id = sw.device_id();
    let changes = reg.add_manual(sw);
    assert_eq!(
        changes,
        vec![Change::Added(id.clone()), Change::SubscriptionsChanged]
    );
    assert_eq!(reg.dynamic_subscriptions(), ["room/light"]);
    reg.command(&id, 0, true, 0).unwrap();
    assert!(reg.get(&id).unwrap().relays[0].pending.is_some());
    reg.handle_message("room/light", b"pressed", false, 10);
    let r = &reg.get(&id).unwrap().relays[0];
    assert_eq!((r.state, r.pending), (RelayState::On, None));
    assert!(
        reg.try_handle_message("room/light", b"wobbly", false, 11)
            .is_err()
    );
    assert_eq!(
        reg.remove(&id),
        vec![Change::Removed(id.clone()), Change::SubscriptionsChanged]
    );
    assert!(reg.dynamic_subscriptions().is_empty());
}

#[test]
fn all_off_by_room() {
    let mut reg = Registry::new();
    for t in ["a", "b", "c", "d"] {
        reg.handle_message(&format!("tele/{t}/LWT"), b"Online", true, 0);
        reg.handle_message(&format!("stat/{t}/POWER"), b"ON", true, 0);
    }
    reg.handle_message("stat/c/POWER", b"OFF", true, 0);
    reg.handle_message("tele/d/LWT", b"Offline", true, 0);
    for t in ["a", "c", "d"] {
        let m = reg.set_meta(
            &DeviceId::from(format!("tasmota:{t}")),
            None,
            Some("Kitchen"),
        );
        reg.handle_message(&m.topic, &m.payload, true, 0);
    }
    let out = reg.all_off(Some("Kitchen"), 100);
    // a is on; c is already off; d is offline; b is elsewhere.
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].topic, "cmnd/a/POWER");
    assert_eq!(out[0].payload, b"OFF");
    assert!(out.iter().all(|m| !m.retain));
    assert_eq!(reg.all_off(None, 100).len(), 2);
}

#[test]
fn commands_are_never_retained() {
    let mut reg = Registry::new();
    reg.handle_message("tele/t/LWT", b"Online", true, 0);
    reg.handle_message("shellies/s/relay/0", b"on", true, 0);
    reg.handle_message("p/status/switch:0", br#"{"id":0,"output":true}"#, true, 0);
    reg.handle_message("zigbee2mqtt/z", br#"{"state":"ON"}"#, true, 0);
    reg.handle_message(
        "homeassistant/switch/h/config",
        br#"{"cmd_t":"h/set","stat_t":"h/state","ret":true,"uniq_id":"h"}"#,
        true,
        0,
    );
    reg.add_manual(ManualSwitch::new("m", "M", "m/set"));
    let ids: Vec<DeviceId> = reg.devices().map(|d| d.id.clone()).collect();
    assert_eq!(ids.len(), 6);
    for id in ids {
        for on in [true, false] {
            let out = reg.command(&id, 0, on, 0).unwrap();
            assert!(
                out.iter().all(|m| !m.retain && !m.payload.is_empty()),
                "{id}"
            );
        }
    }
}

#[test]
fn power_history_is_bounded_to_an_hour() {
    let mut reg = Registry::new();
    reg.handle_message("tele/k/LWT", b"Online", true, 0);
    let id = DeviceId::from("tasmota:k");
    // A reading every second for two hours.
    for s in 0..7_200u64 {
        let body = format!(r#"{{"ENERGY":{{"Power":{}}}}}"#, s % 100);
        reg.handle_message("tele/k/SENSOR", body.as_bytes(), false, s * 1_000);
    }
    let h = reg.get(&id).unwrap().power_history();
    assert!(h.len() <= switchboard_devices::PowerHistory::CAPACITY);
    let first = h.iter().next().unwrap().at_ms;
    let last = h.latest().unwrap().at_ms;
    assert!(last - first <= 3_600_000);
    assert!(h.len() >= 700);
    assert_eq!(h.max_watts(), Some(99.0));
}

#[test]
fn garbage_on_every_topic_never_panics() {
    let topics = [
        "homeassistant/switch/x/config",
        "homeassistant/device/x/config",
        "homeassistant/sensor/x/y/config",
        "tele/x/LWT",
        "tele/x/STATE",
        "tele/x/SENSOR",
        "stat/x/RESULT",
        "stat/x/POWER7",
        "shellies/x/online",
        "shellies/x/relay/0",
        "shellies/x/relay/255/energy",
        "x/online",
        "x/status/switch:0",
        "x/status/switch:999",
        "x/events/rpc",
        "zigbee2mqtt/bridge/devices",
        "zigbee2mqtt/x",
        "zigbee2mqtt/x/availability",
        "zigbee2mqtt//availability",
        "switchboard/meta/x",
        "switchboard/meta/",
        "",
        "/",
        "$SYS/broker/uptime",
    ];
    let payloads: [&[u8]; 14] = [
        b"",
        b" ",
        b"\xff\xfe\x00",
        b"null",
        b"[]",
        b"{}",
        b"{\"",
        b"1e999",
        b"-1",
        br#"{"POWER":{"x":1},"ENERGY":{"Power":[null,"a",1e308,{}]}}"#,
        br#"{"output":null,"apower":"NaN","aenergy":{"total":[]}}"#,
        br#"[{"friendly_name":5},{"friendly_name":"z","definition":{"exposes":[{"type":"switch","features":[{}]}]}}]"#,
        br#"{"cmps":{"a":{"p":"switch"}},"~":"~","stat_t":"~~","avty":[1,{"t":null}],"dev":{"ids":[[]]}}"#,
        br#"{"method":"NotifyStatus","params":{"switch:0":{"output":"x"}}}"#,
    ];
    let mut reg = Registry::new();
    for (i, topic) in topics.iter().enumerate() {
        for payload in payloads {
            let _ = reg.try_handle_message(topic, payload, i % 2 == 0, i as u64);
        }
    }
    let _ = reg.tick(u64::MAX);
    let ids: Vec<DeviceId> = reg.devices().map(|d| d.id.clone()).collect();
    for id in ids {
        let _ = reg.command(&id, 0, true, u64::MAX);
    }
}

#[test]
fn wildcard_topics_in_configs_never_become_subscriptions() {
    let mut reg = Registry::new();
    reg.handle_message(
        "homeassistant/switch/evil/config",
        br##"{"cmd_t":"evil/set","stat_t":"#","avty_t":"x/+/y","uniq_id":"evil"}"##,
        true,
        0,
    );
    reg.add_manual(ManualSwitch::new("m", "M", "m/set").with_state_topic("m/+"));
    assert!(reg.get(&DeviceId::from("ha:evil")).is_some());
    assert!(reg.dynamic_subscriptions().is_empty());
}
