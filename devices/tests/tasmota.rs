//! Tasmota plugs through the registry, with payloads as Tasmota 13/14 publishes them.

use switchboard_devices::{
    Availability, Change, CommandError, DeviceId, Family, Registry, RelayState,
};

const STATE_ON: &str = r#"{"Time":"2024-03-02T10:15:30","Uptime":"0T01:02:03","UptimeSec":3723,"Heap":25,"SleepMode":"Dynamic","Sleep":50,"LoadAvg":19,"MqttCount":1,"POWER":"ON","Wifi":{"AP":1,"SSId":"home","BSSId":"AA:BB:CC:DD:EE:FF","Channel":6,"Mode":"11n","RSSI":70,"Signal":-65,"LinkCount":1,"Downtime":"0T00:00:03"}}"#;
const SENSOR: &str = r#"{"Time":"2024-03-02T10:15:30","ENERGY":{"TotalStartTime":"2023-11-05T12:00:00","Total":123.456,"Yesterday":1.234,"Today":0.567,"Period":2,"Power":45,"ApparentPower":50,"ReactivePower":22,"Factor":0.90,"Voltage":231,"Current":0.216}}"#;

fn kitchen() -> DeviceId {
    DeviceId::from("tasmota:kitchen")
}

fn online_kitchen() -> Registry {
    let mut reg = Registry::new();
    reg.handle_message("tele/kitchen/LWT", b"Online", true, 0);
    reg.handle_message("stat/kitchen/POWER", b"OFF", true, 0);
    reg
}

#[test]
fn retained_lwt_discovers_an_online_plug() {
    let mut reg = Registry::new();
    let changes = reg.handle_message("tele/kitchen/LWT", b"Online", true, 10);
    assert_eq!(changes, vec![Change::Added(kitchen())]);
    let d = reg.get(&kitchen()).unwrap();
    assert_eq!(d.family, Family::Tasmota);
    assert_eq!(d.name, "kitchen");
    assert_eq!(d.online, Availability::Online);
    assert_eq!(d.relays.len(), 1);
    assert_eq!(d.relays[0].state, RelayState::Unknown);
    assert!(d.has_state_topic);
    // Retained: not "seen" now.
    assert_eq!(d.last_seen_ms, None);
}

#[test]
fn state_telemetry_sets_relay_and_last_seen() {
    let mut reg = Registry::new();
    reg.handle_message("tele/kitchen/STATE", STATE_ON.as_bytes(), false, 1_000);
    let d = reg.get(&kitchen()).unwrap();
    assert_eq!(d.relays[0].state, RelayState::On);
    assert_eq!(d.last_seen_ms, Some(1_000));
}

#[test]
fn sensor_energy_readings() {
    let mut reg = online_kitchen();
    let changes = reg.handle_message("tele/kitchen/SENSOR", SENSOR.as_bytes(), false, 300_000);
    assert_eq!(changes, vec![Change::Updated(kitchen())]);
    let d = reg.get(&kitchen()).unwrap();
    assert_eq!(d.power_w, Some(45.0));
    assert_eq!(d.energy_today_kwh, Some(0.567));
    assert_eq!(d.energy_total_kwh, Some(123.456));
    let latest = d.power_history().latest().unwrap();
    assert_eq!((latest.at_ms, latest.watts), (300_000, 45.0));
}

#[test]
fn retained_sensor_sets_values_without_history() {
    let mut reg = online_kitchen();
    reg.handle_message("tele/kitchen/SENSOR", SENSOR.as_bytes(), true, 5);
    let d = reg.get(&kitchen()).unwrap();
    assert_eq!(d.power_w, Some(45.0));
    assert!(d.power_history().is_empty());
    assert_eq!(d.last_seen_ms, None);
}

#[test]
fn command_single_relay_is_exact_and_pending() {
    let mut reg = online_kitchen();
    let out = reg.command(&kitchen(), 0, true, 1_000).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].topic, "cmnd/kitchen/POWER");
    assert_eq!(out[0].payload, b"ON");
    assert!(!out[0].retain);
    assert_eq!(out[0].qos, 1);
    let r = &reg.get(&kitchen()).unwrap().relays[0];
    assert_eq!(r.state, RelayState::Off);
    assert_eq!(r.pending.map(|p| (p.want, p.since_ms)), Some((true, 1_000)));
    let off = reg.command(&kitchen(), 0, false, 2_000).unwrap();
    assert_eq!(off[0].payload, b"OFF");
}

#[test]
fn stat_power_confirms_pending() {
    let mut reg = online_kitchen();
    reg.command(&kitchen(), 0, true, 1_000).unwrap();
    reg.handle_message("stat/kitchen/POWER", b"ON", false, 1_300);
    let r = &reg.get(&kitchen()).unwrap().relays[0];
    assert_eq!(r.state, RelayState::On);
    assert_eq!(r.pending, None);
    assert!(reg.tick(10_000).is_empty());
}

#[test]
fn result_json_confirms_pending() {
    let mut reg = online_kitchen();
    reg.command(&kitchen(), 0, true, 1_000).unwrap();
    reg.handle_message("stat/kitchen/RESULT", br#"{"POWER":"ON"}"#, false, 1_100);
    let r = &reg.get(&kitchen()).unwrap().relays[0];
    assert_eq!((r.state, r.pending), (RelayState::On, None));
}

#[test]
fn result_of_other_commands_is_ignored() {
    let mut reg = online_kitchen();
    let changes = reg.handle_message("stat/kitchen/RESULT", br#"{"TelePeriod":60}"#, false, 5);
    // Only last_seen moved.
    assert_eq!(changes, vec![Change::Updated(kitchen())]);
    assert_eq!(
        reg.get(&kitchen()).unwrap().relays[0].state,
        RelayState::Off
    );
    let mut empty = Registry::new();
    assert!(
        empty
            .handle_message("stat/other/RESULT", br#"{"Dimmer":5}"#, false, 5)
            .is_empty()
    );
    assert!(empty.is_empty());
}

#[test]
fn four_channel_strip() {
    let mut reg = Registry::new();
    reg.handle_message("tele/strip/LWT", b"Online", true, 0);
    reg.handle_message(
        "tele/strip/STATE",
        br#"{"Time":"2024-03-02T10:15:30","Uptime":"0T00:10:00","POWER1":"ON","POWER2":"OFF","POWER3":"OFF","POWER4":"ON"}"#,
        false,
        1,
    );
    let id = DeviceId::from("tasmota:strip");
    let d = reg.get(&id).unwrap();
    let states: Vec<RelayState> = d.relays.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [
            RelayState::On,
            RelayState::Off,
            RelayState::Off,
            RelayState::On
        ]
    );
    assert_eq!(
        d.relays.iter().map(|r| r.index).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    let out = reg.command(&id, 2, true, 5).unwrap();
    assert_eq!(out[0].topic, "cmnd/strip/POWER3");
    assert_eq!(out[0].payload, b"ON");
    reg.handle_message("stat/strip/POWER3", b"ON", false, 6);
    let r = &reg.get(&id).unwrap().relays[2];
    assert_eq!((r.state, r.pending), (RelayState::On, None));
    assert_eq!(
        reg.command(&id, 4, true, 7),
        Err(CommandError::UnknownRelay {
            id: id.clone(),
            relay: 4
        })
    );
}

#[test]
fn offline_lwt_disables_commands() {
    let mut reg = online_kitchen();
    reg.handle_message("tele/kitchen/LWT", b"Offline", true, 50);
    assert_eq!(reg.get(&kitchen()).unwrap().online, Availability::Offline);
    assert_eq!(
        reg.command(&kitchen(), 0, true, 60),
        Err(CommandError::Offline(kitchen()))
    );
    assert_eq!(reg.get(&kitchen()).unwrap().relays[0].pending, None);
}

#[test]
fn garbage_keeps_good_state() {
    let mut reg = online_kitchen();
    reg.handle_message("tele/kitchen/SENSOR", SENSOR.as_bytes(), false, 1);
    for (topic, payload) in [
        ("tele/kitchen/SENSOR", &b"{\"ENERGY\":"[..]),
        ("tele/kitchen/SENSOR", b"\xff\xfe"),
        ("stat/kitchen/POWER", b"maybe"),
        ("stat/kitchen/POWER", b"\xc3\x28"),
        ("tele/kitchen/STATE", br#"{"POWER":42}"#),
        ("tele/kitchen/STATE", b"[1,2]"),
        ("tele/kitchen/LWT", b"sleepy"),
    ] {
        assert!(
            reg.try_handle_message(topic, payload, false, 2).is_err(),
            "{topic} {payload:?}"
        );
        assert!(reg.handle_message(topic, payload, false, 2).is_empty());
    }
    let d = reg.get(&kitchen()).unwrap();
    assert_eq!(d.online, Availability::Online);
    assert_eq!(d.relays[0].state, RelayState::Off);
    assert_eq!(d.power_w, Some(45.0));
}

#[test]
fn liberal_spellings_are_read() {
    let mut reg = Registry::new();
    reg.handle_message("tele/k/LWT", b"online", true, 0);
    reg.handle_message("stat/k/POWER", b"on", false, 0);
    let id = DeviceId::from("tasmota:k");
    assert_eq!(reg.get(&id).unwrap().online, Availability::Online);
    assert_eq!(reg.get(&id).unwrap().relays[0].state, RelayState::On);
    reg.handle_message("stat/k/POWER", b"0", false, 0);
    assert_eq!(reg.get(&id).unwrap().relays[0].state, RelayState::Off);
}
