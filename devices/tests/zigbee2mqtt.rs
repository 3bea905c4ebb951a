//! Zigbee2MQTT devices through the registry, with payloads as Zigbee2MQTT 1.x/2.x publishes.

use switchboard_devices::{Availability, Change, DeviceId, Family, Registry, RelayState};

/// A trimmed but faithful `zigbee2mqtt/bridge/devices`: coordinator, a metering plug whose name
/// contains `/`, a two-gang switch with endpoints, and a sensor.
const DEVICES: &str = r#"[
 {"ieee_address":"0x00124b0029111111","type":"Coordinator","network_address":0,"supported":true,"friendly_name":"Coordinator","definition":null,"interview_completed":true,"disabled":false},
 {"ieee_address":"0xa4c138aaaaaaaaaa","type":"Router","network_address":11111,"supported":true,"friendly_name":"kitchen/plug","disabled":false,
  "definition":{"model":"TS011F_plug_1","vendor":"Tuya","description":"Smart plug (with power monitoring)","exposes":[
   {"type":"switch","features":[{"type":"binary","name":"state","property":"state","access":7,"value_on":"ON","value_off":"OFF","value_toggle":"TOGGLE","description":"On/off state of the switch"}]},
   {"type":"numeric","name":"power","property":"power","access":5,"unit":"W","description":"Instantaneous measured power"},
   {"type":"numeric","name":"energy","property":"energy","access":5,"unit":"kWh","description":"Sum of consumed energy"},
   {"type":"numeric","name":"linkquality","property":"linkquality","access":1,"unit":"lqi","value_max":255,"value_min":0}]}},
 {"ieee_address":"0x54ef441000bbbbbb","type":"Router","network_address":22222,"supported":true,"friendly_name":"hall_double","disabled":false,
  "definition":{"model":"QBKG24LM","vendor":"Aqara","description":"Smart wall switch H1 (with neutral, double rocker)","exposes":[
   {"type":"switch","endpoint":"left","features":[{"type":"binary","name":"state","property":"state_left","access":7,"value_on":"ON","value_off":"OFF","value_toggle":"TOGGLE","endpoint":"left"}]},
   {"type":"switch","endpoint":"right","features":[{"type":"binary","name":"state","property":"state_right","access":7,"value_on":"ON","value_off":"OFF","value_toggle":"TOGGLE","endpoint":"right"}]},
   {"type":"numeric","name":"power","property":"power","access":5,"unit":"W"}]}},
 {"ieee_address":"0x00158d000ccccccc","type":"EndDevice","network_address":33333,"supported":true,"friendly_name":"bedroom/temp","disabled":false,
  "definition":{"model":"WSDCGQ11LM","vendor":"Aqara","description":"Temperature, humidity and pressure sensor","exposes":[
   {"type":"numeric","name":"temperature","property":"temperature","access":1,"unit":"°C"},
   {"type":"numeric","name":"battery","property":"battery","access":1,"unit":"%"}]}}
]"#;

const PLUG_STATE: &str = r#"{"child_lock":"UNLOCK","current":0.12,"energy":3.42,"indicator_mode":"off/on","linkquality":120,"power":27,"power_outage_memory":"restore","state":"ON","voltage":231}"#;

fn plug() -> DeviceId {
    DeviceId::from("z2m:kitchen/plug")
}

fn double() -> DeviceId {
    DeviceId::from("z2m:hall_double")
}

fn listed() -> Registry {
    let mut reg = Registry::new();
    reg.handle_message("zigbee2mqtt/bridge/devices", DEVICES.as_bytes(), true, 0);
    reg
}

#[test]
fn bridge_devices_discovers_switches_only() {
    let mut reg = Registry::new();
    let changes = reg.handle_message("zigbee2mqtt/bridge/devices", DEVICES.as_bytes(), true, 0);
    assert_eq!(
        changes,
        vec![Change::Added(plug()), Change::Added(double())]
    );
    assert_eq!(reg.len(), 2);
    let p = reg.get(&plug()).unwrap();
    assert_eq!(p.family, Family::Zigbee2Mqtt);
    assert_eq!(p.name, "kitchen/plug");
    assert_eq!(p.relays.len(), 1);
    let d = reg.get(&double()).unwrap();
    let names: Vec<_> = d.relays.iter().map(|r| r.name.as_deref()).collect();
    assert_eq!(names, [Some("left"), Some("right")]);
}

#[test]
fn state_message_readings() {
    let mut reg = listed();
    reg.handle_message(
        "zigbee2mqtt/kitchen/plug",
        PLUG_STATE.as_bytes(),
        false,
        500,
    );
    let p = reg.get(&plug()).unwrap();
    assert_eq!(p.relays[0].state, RelayState::On);
    assert_eq!(p.power_w, Some(27.0));
    assert_eq!(p.energy_total_kwh, Some(3.42));
    assert_eq!(p.last_seen_ms, Some(500));
}

#[test]
fn availability_plain_and_json() {
    let mut reg = listed();
    reg.handle_message("zigbee2mqtt/kitchen/plug/availability", b"offline", true, 0);
    assert_eq!(reg.get(&plug()).unwrap().online, Availability::Offline);
    reg.handle_message(
        "zigbee2mqtt/kitchen/plug/availability",
        br#"{"state":"online"}"#,
        true,
        0,
    );
    assert_eq!(reg.get(&plug()).unwrap().online, Availability::Online);
}

#[test]
fn availability_before_the_list_is_kept() {
    let mut reg = Registry::new();
    reg.handle_message(
        "zigbee2mqtt/hall_double/availability",
        br#"{"state":"offline"}"#,
        true,
        0,
    );
    reg.handle_message("zigbee2mqtt/bridge/devices", DEVICES.as_bytes(), true, 0);
    assert_eq!(reg.get(&double()).unwrap().online, Availability::Offline);
}

#[test]
fn command_single_and_confirm() {
    let mut reg = listed();
    reg.handle_message("zigbee2mqtt/kitchen/plug", PLUG_STATE.as_bytes(), true, 0);
    let out = reg.command(&plug(), 0, false, 10).unwrap();
    assert_eq!(out[0].topic, "zigbee2mqtt/kitchen/plug/set");
    assert_eq!(out[0].payload_str(), r#"{"state":"OFF"}"#);
    assert!(!out[0].retain);
    // The echo of our own /set is not state.
    assert!(
        reg.handle_message(&out[0].topic, &out[0].payload, false, 11)
            .is_empty()
    );
    let off = PLUG_STATE.replace(r#""state":"ON""#, r#""state":"OFF""#);
    reg.handle_message("zigbee2mqtt/kitchen/plug", off.as_bytes(), false, 40);
    let r = &reg.get(&plug()).unwrap().relays[0];
    assert_eq!((r.state, r.pending), (RelayState::Off, None));
}

#[test]
fn endpoint_command_and_confirm() {
    let mut reg = listed();
    reg.handle_message(
        "zigbee2mqtt/hall_double",
        br#"{"linkquality":87,"power":0,"state_left":"OFF","state_right":"OFF","operation_mode_left":"control_relay"}"#,
        false,
        0,
    );
    let out = reg.command(&double(), 1, true, 5).unwrap();
    assert_eq!(out[0].topic, "zigbee2mqtt/hall_double/set");
    assert_eq!(out[0].payload_str(), r#"{"state_right":"ON"}"#);
    reg.handle_message(
        "zigbee2mqtt/hall_double",
        br#"{"linkquality":87,"power":12,"state_left":"OFF","state_right":"ON"}"#,
        false,
        9,
    );
    let d = reg.get(&double()).unwrap();
    assert_eq!(d.relays[0].state, RelayState::Off);
    assert_eq!(
        (d.relays[1].state, d.relays[1].pending),
        (RelayState::On, None)
    );
}

#[test]
fn unlisted_multi_endpoint_device_from_state() {
    let mut reg = Registry::new();
    reg.handle_message(
        "zigbee2mqtt/garage/relay",
        br#"{"state":"ON","state_l1":"ON","state_l2":"OFF","linkquality":60}"#,
        false,
        0,
    );
    let id = DeviceId::from("z2m:garage/relay");
    let d = reg.get(&id).unwrap();
    assert_eq!(d.relays.len(), 2);
    let out = reg.command(&id, 1, true, 1).unwrap();
    assert_eq!(out[0].payload_str(), r#"{"state_l2":"ON"}"#);
}

#[test]
fn devices_gone_from_the_list_are_removed() {
    let mut reg = listed();
    let without_plug: serde_json::Value = serde_json::from_str(DEVICES).unwrap();
    let list: Vec<_> = without_plug
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["friendly_name"] != "kitchen/plug")
        .cloned()
        .collect();
    let changes = reg.handle_message(
        "zigbee2mqtt/bridge/devices",
        serde_json::to_string(&list).unwrap().as_bytes(),
        true,
        1,
    );
    assert_eq!(changes, vec![Change::Removed(plug())]);
    assert!(reg.get(&plug()).is_none());
    assert!(reg.get(&double()).is_some());
}

#[test]
fn sensors_and_garbage_do_not_create_or_erase() {
    let mut reg = listed();
    reg.handle_message("zigbee2mqtt/kitchen/plug", PLUG_STATE.as_bytes(), false, 0);
    assert!(
        reg.handle_message(
            "zigbee2mqtt/bedroom/temp",
            br#"{"battery":97,"temperature":21.5,"humidity":40,"linkquality":100}"#,
            false,
            0
        )
        .is_empty()
    );
    for payload in [&b"ON"[..], b"{\"state\":", b"[]", br#"{"state":17}"#] {
        assert!(
            reg.try_handle_message("zigbee2mqtt/kitchen/plug", payload, false, 1)
                .is_err()
        );
    }
    assert!(
        reg.try_handle_message("zigbee2mqtt/bridge/devices", b"{}", true, 1)
            .is_err()
    );
    assert_eq!(reg.len(), 2);
    let p = reg.get(&plug()).unwrap();
    assert_eq!(p.relays[0].state, RelayState::On);
    assert_eq!(p.power_w, Some(27.0));
}

/// Found by the `device_messages` fuzz target: a friendly name with a wildcard (`ha#l`) in
/// `bridge/devices` became a device whose command topic the broker refuses. Such a name
/// (Zigbee2MQTT itself refuses it) is skipped; the others are kept.
#[test]
fn names_that_make_no_valid_topic_are_skipped() {
    let mut reg = Registry::new();
    let devices = r#"[
 {"type":"Router","friendly_name":"ha#l","definition":{"exposes":[{"type":"switch","features":[{"type":"binary","name":"state","property":"state","value_on":"ON","value_off":"OFF"}]}]}},
 {"type":"Router","friendly_name":"ok/plug","definition":{"exposes":[{"type":"switch","features":[{"type":"binary","name":"state","property":"state","value_on":"ON","value_off":"OFF"}]}]}}
]"#;
    reg.handle_message("zigbee2mqtt/bridge/devices", devices.as_bytes(), true, 0);
    let ids: Vec<String> = reg.devices().map(|d| d.id.to_string()).collect();
    assert_eq!(ids, ["z2m:ok/plug"]);
}
