//! Home Assistant MQTT discovery through the registry: entity-based configs as ESPHome and
//! Tasmota publish them, and device-based configs with `cmps`.

use switchboard_devices::{
    Availability, Change, CommandError, DeviceId, Family, Registry, RelayState,
};

const SWITCH_TOPIC: &str = "homeassistant/switch/athom-plug-v2/relay/config";
/// ESPHome style, abbreviated, with `~` and a device block.
const SWITCH_CONFIG: &str = r#"{"~":"athom-plug-v2/switch/relay","name":"Relay","uniq_id":"athom-plug-v2-relay","stat_t":"~/state","cmd_t":"~/command","avty_t":"athom-plug-v2/status","pl_avail":"online","pl_not_avail":"offline","ic":"mdi:power-socket-eu","dev":{"ids":"a8032ab1cdef","name":"Athom Plug V2","sw":"esphome v2024.2.0 Feb 20 2024","mdl":"esp8285","mf":"espressif","sa":"Kitchen"}}"#;
const POWER_TOPIC: &str = "homeassistant/sensor/athom-plug-v2/power/config";
const POWER_CONFIG: &str = r#"{"~":"athom-plug-v2/sensor/power","name":"Power","uniq_id":"athom-plug-v2-power","stat_t":"~/state","unit_of_meas":"W","dev_cla":"power","stat_cla":"measurement","avty_t":"athom-plug-v2/status","dev":{"ids":"a8032ab1cdef","name":"Athom Plug V2"}}"#;
const ENERGY_CONFIG: &str = r#"{"~":"athom-plug-v2/sensor/total_energy","name":"Total Energy","uniq_id":"athom-plug-v2-total_energy","stat_t":"~/state","unit_of_meas":"kWh","dev_cla":"energy","stat_cla":"total_increasing","dev":{"ids":["a8032ab1cdef"]}}"#;

const DEVICE_TOPIC: &str = "homeassistant/device/plug123/config";
const DEVICE_CONFIG: &str = r#"{"dev":{"ids":"plug123","name":"Desk plug","mf":"Acme","mdl":"P2","sa":"Office"},"o":{"name":"acme2mqtt","sw":"1.0","url":"https://example.invalid/acme2mqtt"},"~":"acme/plug123","avty_t":"~/availability","qos":1,"cmps":{"outlet_a":{"p":"switch","name":"Outlet A","uniq_id":"plug123_a","cmd_t":"~/a/set","stat_t":"~/a/state","pl_on":"1","pl_off":"0"},"outlet_b":{"p":"switch","name":"Outlet B","uniq_id":"plug123_b","cmd_t":"~/b/set","stat_t":"~/b/state"},"power":{"p":"sensor","dev_cla":"power","unit_of_meas":"W","stat_t":"~/power","uniq_id":"plug123_power"},"rssi":{"p":"sensor","dev_cla":"signal_strength","unit_of_meas":"dBm","stat_t":"~/rssi","uniq_id":"plug123_rssi"}}}"#;

fn athom() -> DeviceId {
    DeviceId::from("ha:a8032ab1cdef")
}

fn desk() -> DeviceId {
    DeviceId::from("ha:plug123")
}

fn with_athom() -> Registry {
    let mut reg = Registry::new();
    reg.handle_message(SWITCH_TOPIC, SWITCH_CONFIG.as_bytes(), true, 0);
    reg
}

#[test]
fn entity_config_with_abbreviations() {
    let mut reg = Registry::new();
    let changes = reg.handle_message(SWITCH_TOPIC, SWITCH_CONFIG.as_bytes(), true, 0);
    assert_eq!(
        changes,
        vec![Change::Added(athom()), Change::SubscriptionsChanged]
    );
    let d = reg.get(&athom()).unwrap();
    assert_eq!(d.family, Family::HomeAssistant);
    assert_eq!(d.name, "Athom Plug V2");
    assert_eq!(d.room.as_deref(), Some("Kitchen"));
    assert_eq!(d.relays.len(), 1);
    assert_eq!(d.relays[0].name.as_deref(), Some("Relay"));
    assert!(d.has_state_topic);
    assert_eq!(
        reg.dynamic_subscriptions(),
        ["athom-plug-v2/status", "athom-plug-v2/switch/relay/state"]
    );
}

#[test]
fn state_and_availability_topics() {
    let mut reg = with_athom();
    reg.handle_message("athom-plug-v2/status", b"online", true, 0);
    reg.handle_message("athom-plug-v2/switch/relay/state", b"ON", true, 0);
    let d = reg.get(&athom()).unwrap();
    assert_eq!(d.online, Availability::Online);
    assert_eq!(d.relays[0].state, RelayState::On);
    reg.handle_message("athom-plug-v2/status", b"offline", false, 9);
    assert_eq!(
        reg.command(&athom(), 0, false, 10),
        Err(CommandError::Offline(athom()))
    );
}

#[test]
fn command_and_confirm() {
    let mut reg = with_athom();
    reg.handle_message("athom-plug-v2/switch/relay/state", b"OFF", true, 0);
    let out = reg.command(&athom(), 0, true, 10).unwrap();
    assert_eq!(out[0].topic, "athom-plug-v2/switch/relay/command");
    assert_eq!(out[0].payload, b"ON");
    assert!(!out[0].retain);
    assert_eq!(out[0].qos, 0);
    reg.handle_message("athom-plug-v2/switch/relay/state", b"ON", false, 20);
    let r = &reg.get(&athom()).unwrap().relays[0];
    assert_eq!((r.state, r.pending), (RelayState::On, None));
}

#[test]
fn sensors_join_by_identifiers_in_any_order() {
    let mut reg = Registry::new();
    // Retained configs arrive in any order: sensors before the switch.
    assert!(
        !reg.handle_message(POWER_TOPIC, POWER_CONFIG.as_bytes(), true, 0)
            .contains(&Change::Added(athom()))
    );
    reg.handle_message(
        "homeassistant/sensor/athom-plug-v2/total_energy/config",
        ENERGY_CONFIG.as_bytes(),
        true,
        0,
    );
    assert!(reg.is_empty());
    reg.handle_message(SWITCH_TOPIC, SWITCH_CONFIG.as_bytes(), true, 0);
    reg.handle_message("athom-plug-v2/sensor/power/state", b"61.4", false, 1_000);
    reg.handle_message(
        "athom-plug-v2/sensor/total_energy/state",
        b"12.345",
        false,
        1_000,
    );
    let d = reg.get(&athom()).unwrap();
    assert_eq!(d.power_w, Some(61.4));
    assert_eq!(d.energy_total_kwh, Some(12.345));
    assert_eq!(d.power_history().len(), 1);
    assert!(
        reg.try_handle_message("athom-plug-v2/sensor/power/state", b"unavailable", false, 2)
            .is_err()
    );
    assert_eq!(reg.get(&athom()).unwrap().power_w, Some(61.4));
}

#[test]
fn empty_retained_config_deletes() {
    let mut reg = with_athom();
    let changes = reg.handle_message(SWITCH_TOPIC, b"", true, 5);
    assert_eq!(
        changes,
        vec![Change::Removed(athom()), Change::SubscriptionsChanged]
    );
    assert!(reg.is_empty());
    assert!(reg.dynamic_subscriptions().is_empty());
    // Deleting something unknown is harmless.
    assert!(reg.handle_message(SWITCH_TOPIC, b"", true, 6).is_empty());
}

#[test]
fn device_based_discovery() {
    let mut reg = Registry::new();
    let changes = reg.handle_message(DEVICE_TOPIC, DEVICE_CONFIG.as_bytes(), true, 0);
    assert!(changes.contains(&Change::Added(desk())));
    let d = reg.get(&desk()).unwrap();
    assert_eq!(d.name, "Desk plug");
    assert_eq!(d.room.as_deref(), Some("Office"));
    let names: Vec<_> = d.relays.iter().map(|r| r.name.as_deref()).collect();
    assert_eq!(names, [Some("Outlet A"), Some("Outlet B")]);
    // Shared availability from the device level.
    reg.handle_message("acme/plug123/availability", b"online", true, 0);
    reg.handle_message("acme/plug123/a/state", b"1", true, 0);
    reg.handle_message("acme/plug123/b/state", b"OFF", true, 0);
    reg.handle_message("acme/plug123/power", b"7.5", false, 0);
    let d = reg.get(&desk()).unwrap();
    assert_eq!(d.online, Availability::Online);
    assert_eq!(d.relays[0].state, RelayState::On);
    assert_eq!(d.relays[1].state, RelayState::Off);
    assert_eq!(d.power_w, Some(7.5));
    let out = reg.command(&desk(), 0, false, 1).unwrap();
    assert_eq!(out[0].topic, "acme/plug123/a/set");
    assert_eq!(out[0].payload, b"0");
    assert_eq!(out[0].qos, 1);
    assert!(!out[0].retain);
}

#[test]
fn device_based_component_removal_and_deletion() {
    let mut reg = Registry::new();
    reg.handle_message(DEVICE_TOPIC, DEVICE_CONFIG.as_bytes(), true, 0);
    // Republished with outlet_b reduced to its platform: that component is removed.
    let fewer = DEVICE_CONFIG.replace(
        r#""outlet_b":{"p":"switch","name":"Outlet B","uniq_id":"plug123_b","cmd_t":"~/b/set","stat_t":"~/b/state"}"#,
        r#""outlet_b":{"p":"switch"}"#,
    );
    assert_ne!(fewer, DEVICE_CONFIG);
    let changes = reg.handle_message(DEVICE_TOPIC, fewer.as_bytes(), true, 1);
    assert!(changes.contains(&Change::Updated(desk())));
    assert_eq!(reg.get(&desk()).unwrap().relays.len(), 1);
    let changes = reg.handle_message(DEVICE_TOPIC, b"", true, 2);
    assert!(changes.contains(&Change::Removed(desk())));
    assert!(reg.is_empty());
}

#[test]
fn optimistic_switch_without_state_topic() {
    let mut reg = Registry::new();
    reg.handle_message(
        "homeassistant/switch/garden_pump/config",
        br#"{"name":"Garden pump","command_topic":"garden/pump/set","payload_on":"start","payload_off":"stop","unique_id":"garden_pump_1"}"#,
        true,
        0,
    );
    let id = DeviceId::from("ha:garden_pump_1");
    let d = reg.get(&id).unwrap();
    assert!(!d.has_state_topic);
    assert_eq!(d.name, "Garden pump");
    let out = reg.command(&id, 0, true, 5).unwrap();
    assert_eq!(
        (out[0].topic.as_str(), out[0].payload.as_slice()),
        ("garden/pump/set", &b"start"[..])
    );
    let r = &reg.get(&id).unwrap().relays[0];
    assert_eq!((r.state, r.pending), (RelayState::On, None));
}

#[test]
fn value_template_on_json_state() {
    // ESPHome-free firmwares often publish one JSON state for everything.
    let mut reg = Registry::new();
    reg.handle_message(
        "homeassistant/switch/openbk_1A2B3C/relay/config",
        br#"{"name":"Heater","~":"obk1A2B3C","cmd_t":"~/1/set","stat_t":"~/state","val_tpl":"{{ value_json['relay'] | upper }}","avty_t":"~/connected","uniq_id":"obk1A2B3C_relay","dev":{"cns":[["mac","A0:20:A6:1A:2B:3C"]],"name":"Heater plug"}}"#,
        true,
        0,
    );
    let id = DeviceId::from("ha:mac_A0:20:A6:1A:2B:3C");
    assert_eq!(reg.get(&id).unwrap().name, "Heater plug");
    reg.handle_message("obk1A2B3C/connected", b"online", true, 0);
    reg.handle_message(
        "obk1A2B3C/state",
        br#"{"relay":"on","power":1200.5,"rssi":-60}"#,
        false,
        1,
    );
    let d = reg.get(&id).unwrap();
    assert_eq!(d.online, Availability::Online);
    assert_eq!(d.relays[0].state, RelayState::On);
}

#[test]
fn natively_known_devices_are_not_duplicated() {
    // Tasmota's and Zigbee2MQTT's own HA discovery: shown once, as the native family.
    let mut reg = Registry::new();
    reg.handle_message(
        "homeassistant/switch/1A2B3C_RL_1/config",
        br#"{"name":"Lamp","cmd_t":"cmnd/tasmota_1A2B3C/POWER","stat_t":"tele/tasmota_1A2B3C/STATE","val_tpl":"{{value_json.POWER}}","pl_off":"OFF","pl_on":"ON","avty_t":"tele/tasmota_1A2B3C/LWT","pl_avail":"Online","pl_not_avail":"Offline","uniq_id":"1A2B3C_RL_1","dev":{"cns":[["mac","A0:20:A6:1A:2B:3C"]]}}"#,
        true,
        0,
    );
    reg.handle_message(
        "homeassistant/switch/0xa4c138aaaaaaaaaa/switch/config",
        br#"{"availability":[{"topic":"zigbee2mqtt/bridge/state","value_template":"{{ value_json.state }}"}],"command_topic":"zigbee2mqtt/kitchen/plug/set","device":{"identifiers":["zigbee2mqtt_0xa4c138aaaaaaaaaa"],"manufacturer":"Tuya","model":"Smart plug (with power monitoring) (TS011F_plug_1)","name":"kitchen/plug","via_device":"zigbee2mqtt_bridge_0x00124b0029111111"},"name":null,"object_id":"kitchen/plug","origin":{"name":"Zigbee2MQTT","sw":"1.40.2","url":"https://www.zigbee2mqtt.io"},"payload_off":"OFF","payload_on":"ON","state_topic":"zigbee2mqtt/kitchen/plug","unique_id":"0xa4c138aaaaaaaaaa_switch_zigbee2mqtt","value_template":"{{ value_json.state }}"}"#,
        true,
        0,
    );
    assert!(reg.is_empty());
    reg.handle_message("tele/tasmota_1A2B3C/LWT", b"Online", true, 0);
    reg.handle_message(
        "tele/tasmota_1A2B3C/STATE",
        br#"{"Time":"2024-03-02T10:15:30","Uptime":"0T00:01:00","POWER":"ON"}"#,
        false,
        1,
    );
    let ids: Vec<&str> = reg.devices().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["tasmota:tasmota_1A2B3C"]);
}

#[test]
fn availability_list_mode_all() {
    let mut reg = Registry::new();
    reg.handle_message(
        "homeassistant/switch/bridge1/outlet/config",
        br#"{"name":"Outlet","cmd_t":"b1/outlet/set","stat_t":"b1/outlet","uniq_id":"b1_outlet","avty_mode":"all","avty":[{"t":"b1/bridge"},{"topic":"b1/outlet/avail","payload_available":"up","payload_not_available":"down"}]}"#,
        true,
        0,
    );
    let id = DeviceId::from("ha:b1_outlet");
    reg.handle_message("b1/bridge", b"online", true, 0);
    assert_eq!(reg.get(&id).unwrap().online, Availability::Unknown);
    reg.handle_message("b1/outlet/avail", b"up", true, 0);
    assert_eq!(reg.get(&id).unwrap().online, Availability::Online);
    reg.handle_message("b1/outlet/avail", b"down", false, 1);
    assert_eq!(reg.get(&id).unwrap().online, Availability::Offline);
}

#[test]
fn invalid_configs_create_nothing() {
    let mut reg = Registry::new();
    for payload in [&b"{"[..], b"[]", b"\"switch\"", b"\xff"] {
        assert!(
            reg.try_handle_message(SWITCH_TOPIC, payload, true, 0)
                .is_err()
        );
    }
    assert!(
        reg.try_handle_message(
            "homeassistant/switch/x/config",
            br#"{"name":"no topics"}"#,
            true,
            0
        )
        .is_err()
    );
    assert!(
        reg.try_handle_message(DEVICE_TOPIC, br#"{"dev":{"ids":"x"}}"#, true, 0)
            .is_err()
    );
    // Unrelated components are silently not devices.
    assert!(
        reg.try_handle_message(
            "homeassistant/binary_sensor/door/config",
            br#"{"name":"Door","stat_t":"door/state","dev_cla":"door"}"#,
            true,
            0
        )
        .unwrap()
        .is_empty()
    );
    assert!(reg.is_empty());
}

#[test]
fn ha_state_garbage_keeps_state() {
    let mut reg = with_athom();
    reg.handle_message("athom-plug-v2/switch/relay/state", b"ON", true, 0);
    assert!(
        reg.try_handle_message("athom-plug-v2/switch/relay/state", b"dimmed", false, 1)
            .is_err()
    );
    assert_eq!(reg.get(&athom()).unwrap().relays[0].state, RelayState::On);
}

/// Found by the `device_messages` fuzz target: a config's topic with a control character
/// (U+007F here) became a dynamic subscription, a SUBSCRIBE the broker refuses. A topic no
/// client may publish on (control characters, wildcards) is now as good as none.
#[test]
fn topics_no_client_may_publish_on_are_ignored() {
    let mut reg = Registry::new();
    let config = r#"{"name":"Plug","uniq_id":"p1","cmd_t":"plug/\u007f/set","stat_t":"plug/state","avty_t":"plug/a+b","dev":{"ids":"p1"}}"#;
    reg.try_handle_message("homeassistant/switch/p1/config", config.as_bytes(), true, 0)
        .unwrap();
    assert_eq!(reg.dynamic_subscriptions(), ["plug/state"]);
    // Found later by the same target: `$share/x` as a state topic read as a shared filter.
    let shared = r#"{"uniq_id":"p3","stat_t":"$share/lug-v2","dev":{"ids":"p3"}}"#;
    reg.try_handle_message("homeassistant/switch/p3/config", shared.as_bytes(), true, 0)
        .unwrap();
    assert_eq!(reg.dynamic_subscriptions(), ["plug/state"]);
    let id = DeviceId::from("ha:p1");
    assert!(matches!(
        reg.command(&id, 0, true, 1),
        Err(CommandError::NotCommandable { .. })
    ));
    let err = reg
        .try_handle_message(
            "homeassistant/switch/p2/config",
            r#"{"cmd_t":"p2/\u0001","stat_t":"p2/#","dev":{"ids":"p2"}}"#.as_bytes(),
            true,
            0,
        )
        .unwrap_err();
    assert!(err.to_string().contains("not valid topic names"), "{err}");
    assert!(reg.get(&DeviceId::from("ha:p2")).is_none());
}
