//! Shelly Gen1 and Gen2+ devices through the registry, with payloads as the firmware publishes.

use switchboard_devices::{
    Availability, Change, CommandError, DeviceId, Family, Registry, RegistryConfig, RelayState,
};

const PLUG_S: &str = "shellies/shellyplug-s-7AD8E1";
const PLUS_PLUG: &str = "shellyplusplugs-a8032ab12345";
const SWITCH0_ON: &str = r#"{"id":0,"source":"init","output":true,"apower":52.3,"voltage":229.8,"freq":50.0,"current":0.258,"aenergy":{"total":1520.354,"by_minute":[871.8,869.4,873.2],"minute_ts":1709374500},"ret_aenergy":{"total":0.000,"by_minute":[0.0,0.0,0.0],"minute_ts":1709374500},"temperature":{"tC":41.2,"tF":106.2}}"#;

fn gen1_id() -> DeviceId {
    DeviceId::from("shelly-gen1:shellyplug-s-7AD8E1")
}

fn gen2_id() -> DeviceId {
    DeviceId::from("shelly-gen2:shellyplusplugs-a8032ab12345")
}

fn gen1_plug() -> Registry {
    let mut reg = Registry::new();
    reg.handle_message(&format!("{PLUG_S}/online"), b"true", true, 0);
    reg.handle_message(&format!("{PLUG_S}/relay/0"), b"off", true, 0);
    reg
}

fn gen2_plug() -> Registry {
    let mut reg = Registry::new();
    reg.handle_message(&format!("{PLUS_PLUG}/online"), b"true", true, 0);
    reg.handle_message(
        &format!("{PLUS_PLUG}/status/switch:0"),
        SWITCH0_ON.as_bytes(),
        false,
        0,
    );
    reg
}

#[test]
fn gen1_availability_before_discovery_is_kept() {
    let mut reg = Registry::new();
    assert!(
        reg.handle_message(&format!("{PLUG_S}/online"), b"true", true, 0)
            .is_empty()
    );
    assert!(reg.is_empty());
    let changes = reg.handle_message(&format!("{PLUG_S}/relay/0"), b"on", true, 0);
    assert_eq!(changes, vec![Change::Added(gen1_id())]);
    let d = reg.get(&gen1_id()).unwrap();
    assert_eq!(d.family, Family::ShellyGen1);
    assert_eq!(d.online, Availability::Online);
    assert_eq!(d.relays[0].state, RelayState::On);
}

#[test]
fn gen1_power_and_energy() {
    let mut reg = gen1_plug();
    reg.handle_message(&format!("{PLUG_S}/relay/0/power"), b"24.61", false, 1_000);
    reg.handle_message(&format!("{PLUG_S}/relay/0/energy"), b"1234", false, 1_000);
    let d = reg.get(&gen1_id()).unwrap();
    assert_eq!(d.power_w, Some(24.61));
    assert!((d.energy_total_kwh.unwrap() - 1234.0 / 60_000.0).abs() < 1e-12);
    assert_eq!(d.power_history().len(), 1);
    assert_eq!(d.last_seen_ms, Some(1_000));
}

#[test]
fn gen1_command_exact_and_confirmed() {
    let mut reg = gen1_plug();
    let out = reg.command(&gen1_id(), 0, true, 100).unwrap();
    assert_eq!(out[0].topic, "shellies/shellyplug-s-7AD8E1/relay/0/command");
    assert_eq!(out[0].payload, b"on");
    assert!(!out[0].retain);
    // Our own command echoed back by the broker is not a state.
    assert!(
        reg.handle_message(&out[0].topic, &out[0].payload, false, 110)
            .is_empty()
    );
    assert!(reg.get(&gen1_id()).unwrap().relays[0].pending.is_some());
    reg.handle_message(&format!("{PLUG_S}/relay/0"), b"on", false, 150);
    let r = &reg.get(&gen1_id()).unwrap().relays[0];
    assert_eq!((r.state, r.pending), (RelayState::On, None));
}

#[test]
fn gen1_two_relays_sum_power() {
    let mut reg = Registry::new();
    let base = "shellies/shellyswitch25-C45BBE6B1A2F";
    reg.handle_message(&format!("{base}/relay/0"), b"on", false, 0);
    reg.handle_message(&format!("{base}/relay/1"), b"overpower", false, 0);
    reg.handle_message(&format!("{base}/relay/0/power"), b"100.5", false, 0);
    reg.handle_message(&format!("{base}/relay/1/power"), b"20", false, 0);
    let id = DeviceId::from("shelly-gen1:shellyswitch25-C45BBE6B1A2F");
    let d = reg.get(&id).unwrap();
    assert_eq!(d.relays.len(), 2);
    assert_eq!(d.relays[1].state, RelayState::Off);
    assert_eq!(d.power_w, Some(120.5));
    let out = reg.command(&id, 1, false, 1).unwrap();
    assert_eq!(out[0].topic, format!("{base}/relay/1/command"));
    assert_eq!(out[0].payload, b"off");
}

#[test]
fn gen1_offline_refuses_commands() {
    let mut reg = gen1_plug();
    reg.handle_message(&format!("{PLUG_S}/online"), b"false", true, 5);
    assert_eq!(
        reg.command(&gen1_id(), 0, true, 6),
        Err(CommandError::Offline(gen1_id()))
    );
}

#[test]
fn gen2_status_discovers_with_readings() {
    let reg = gen2_plug();
    let d = reg.get(&gen2_id()).unwrap();
    assert_eq!(d.family, Family::ShellyGen2);
    assert_eq!(d.name, PLUS_PLUG);
    assert_eq!(d.online, Availability::Online);
    assert_eq!(d.relays.len(), 1);
    assert_eq!(d.relays[0].state, RelayState::On);
    assert_eq!(d.power_w, Some(52.3));
    assert!((d.energy_total_kwh.unwrap() - 1.520354).abs() < 1e-12);
    assert_eq!(d.energy_today_kwh, None);
}

#[test]
fn gen2_command_is_switch_set_rpc() {
    let mut reg = gen2_plug();
    let out = reg.command(&gen2_id(), 0, false, 100).unwrap();
    assert_eq!(out[0].topic, "shellyplusplugs-a8032ab12345/rpc");
    assert_eq!(
        out[0].payload_str(),
        r#"{"id":1,"src":"switchboard","method":"Switch.Set","params":{"id":0,"on":false}}"#
    );
    assert!(!out[0].retain);
    let again = reg.command(&gen2_id(), 0, true, 200).unwrap();
    assert!(again[0].payload_str().starts_with(r#"{"id":2,"#));
    assert!(reg.get(&gen2_id()).unwrap().relays[0].pending.unwrap().want);
}

#[test]
fn gen2_status_confirms_and_rpc_src_is_configurable() {
    let mut reg = Registry::with_config(RegistryConfig {
        rpc_src: "switchboard-ui-7".into(),
        ..RegistryConfig::default()
    });
    reg.handle_message(
        &format!("{PLUS_PLUG}/status/switch:0"),
        SWITCH0_ON.as_bytes(),
        true,
        0,
    );
    let out = reg.command(&gen2_id(), 0, false, 10).unwrap();
    assert!(out[0].payload_str().contains(r#""src":"switchboard-ui-7""#));
    let off = SWITCH0_ON
        .replace(r#""output":true"#, r#""output":false"#)
        .replace("52.3", "0.0");
    reg.handle_message(
        &format!("{PLUS_PLUG}/status/switch:0"),
        off.as_bytes(),
        false,
        20,
    );
    let d = reg.get(&gen2_id()).unwrap();
    assert_eq!(
        (d.relays[0].state, d.relays[0].pending),
        (RelayState::Off, None)
    );
    assert_eq!(d.power_w, Some(0.0));
}

#[test]
fn gen2_notify_status_confirms() {
    let mut reg = gen2_plug();
    reg.command(&gen2_id(), 0, false, 10).unwrap();
    reg.handle_message(
        &format!("{PLUS_PLUG}/events/rpc"),
        br#"{"src":"shellyplusplugs-a8032ab12345","dst":"shellyplusplugs-a8032ab12345/events","method":"NotifyStatus","params":{"ts":1709374512.34,"switch:0":{"id":0,"output":false,"source":"MQTT"}}}"#,
        false,
        30,
    );
    let d = reg.get(&gen2_id()).unwrap();
    assert_eq!(
        (d.relays[0].state, d.relays[0].pending),
        (RelayState::Off, None)
    );
    // A partial notification keeps the other readings.
    assert_eq!(d.power_w, Some(52.3));
}

#[test]
fn gen2_pro_2pm_sums_channels() {
    let mut reg = Registry::new();
    let p = "shellypro2pm-ec62608a1b2c";
    for (n, w, wh) in [(0, 10.5, 1000.0), (1, 4.5, 500.0)] {
        let body = format!(
            r#"{{"id":{n},"source":"init","output":true,"apower":{w},"voltage":231.2,"freq":50.0,"current":0.05,"pf":0.5,"aenergy":{{"total":{wh},"by_minute":[0.0,0.0,0.0],"minute_ts":1709374500}},"temperature":{{"tC":48.1,"tF":118.6}}}}"#
        );
        reg.handle_message(&format!("{p}/status/switch:{n}"), body.as_bytes(), false, 0);
    }
    let d = reg
        .get(&DeviceId::from("shelly-gen2:shellypro2pm-ec62608a1b2c"))
        .unwrap();
    assert_eq!(d.relays.len(), 2);
    assert_eq!(d.power_w, Some(15.0));
    assert_eq!(d.energy_total_kwh, Some(1.5));
}

#[test]
fn gen2_offline_and_foreign_online_topics() {
    let mut reg = gen2_plug();
    reg.handle_message(&format!("{PLUS_PLUG}/online"), b"false", true, 5);
    assert_eq!(
        reg.command(&gen2_id(), 0, true, 6),
        Err(CommandError::Offline(gen2_id()))
    );
    // `+/online` matches far more than Shellies: it never creates a device on its own.
    assert!(
        reg.handle_message("octoprint/online", b"true", true, 0)
            .is_empty()
    );
    assert_eq!(reg.len(), 1);
}

#[test]
fn gen2_garbage_is_ignored() {
    let mut reg = gen2_plug();
    for payload in [&b"{"[..], b"null", br#"{"output":"sideways"}"#, b"\x00\x01"] {
        assert!(
            reg.try_handle_message(&format!("{PLUS_PLUG}/status/switch:0"), payload, false, 9)
                .is_err()
        );
    }
    let d = reg.get(&gen2_id()).unwrap();
    assert_eq!(d.relays[0].state, RelayState::On);
    assert_eq!(d.power_w, Some(52.3));
}

#[test]
fn out_of_range_channels_are_not_devices() {
    let mut reg = Registry::new();
    assert!(
        reg.handle_message("shellies/x/relay/200", b"on", false, 0)
            .is_empty()
    );
    assert!(
        reg.handle_message(
            "p/status/switch:250",
            br#"{"id":250,"output":true}"#,
            false,
            0
        )
        .is_empty()
    );
    assert!(reg.is_empty());
}
