//! Building a fleet of simulated devices from a profile, a count and a seed: names, rooms,
//! appliances and family-native identifiers (Tasmota topics, Shelly ids, Zigbee2MQTT names,
//! ESPHome node names), all deterministic for a seed.
//!
//! The demo household is the `mixed` fleet: a dozen plugs in four rooms, every family present.

use std::collections::BTreeSet;

use switchboard_devices::{DeviceId, Family, Meta, meta::meta_message};

use super::appliance::Appliance;
use super::device::{Behaviour, Firmware, PlugSpec, SimDevice, SimMessage};

/// Which families a fleet is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Only Tasmota plugs.
    Tasmota,
    /// Only Shelly Gen1 plugs.
    Shelly1,
    /// Only Shelly Gen2 plugs.
    Shelly2,
    /// Zigbee plugs behind one Zigbee2MQTT bridge.
    Z2m,
    /// Only Home Assistant discovery (ESPHome) plugs.
    Ha,
    /// Every family in turn.
    Mixed,
}

impl Profile {
    /// Every profile, in the order of the command line's help.
    pub const ALL: [Self; 6] = [
        Self::Tasmota,
        Self::Shelly1,
        Self::Shelly2,
        Self::Z2m,
        Self::Ha,
        Self::Mixed,
    ];

    /// The name used on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Tasmota => "tasmota",
            Self::Shelly1 => "shelly1",
            Self::Shelly2 => "shelly2",
            Self::Z2m => "z2m",
            Self::Ha => "ha",
            Self::Mixed => "mixed",
        }
    }

    fn firmware(self, i: usize) -> Firmware {
        match self {
            Self::Tasmota => Firmware::Tasmota,
            Self::Shelly1 => Firmware::ShellyGen1,
            Self::Shelly2 => Firmware::ShellyGen2,
            Self::Z2m => Firmware::Zigbee2Mqtt,
            Self::Ha => Firmware::HomeAssistant,
            Self::Mixed => Firmware::ALL[i % Firmware::ALL.len()],
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown profile {s:?}, expected one of {}",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    /// Number of plugs.
    pub count: usize,
    /// Families.
    pub profile: Profile,
    /// Seed of every random choice (identifiers, noise, button presses, faults).
    pub seed: u64,
    /// Timing of telemetry, presses and faults.
    pub behaviour: Behaviour,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            count: 12,
            profile: Profile::Mixed,
            seed: 1,
            behaviour: Behaviour::default(),
        }
    }
}

/// The catalogue the household is drawn from, in order: name, room, appliance. The first
/// twelve spread over the four rooms so the mixed profile puts every family in the house.
const CATALOGUE: [(&str, &str, Appliance); 14] = [
    ("Kettle", "Kitchen", Appliance::Kettle),
    ("TV", "Living room", Appliance::Tv),
    ("Desk lamp", "Office", Appliance::Lamp { watts: 6 }),
    ("Fridge", "Kitchen", Appliance::Fridge),
    ("Floor lamp", "Living room", Appliance::Lamp { watts: 9 }),
    ("Washing machine", "Kitchen", Appliance::WashingMachine),
    ("Monitor", "Office", Appliance::Monitor),
    ("Bedside lamp", "Bedroom", Appliance::Lamp { watts: 5 }),
    ("Coffee machine", "Kitchen", Appliance::CoffeeMachine),
    ("Router", "Living room", Appliance::Router),
    ("Laptop charger", "Office", Appliance::LaptopCharger),
    ("Electric blanket", "Bedroom", Appliance::ElectricBlanket),
    ("Dishwasher", "Kitchen", Appliance::Dishwasher),
    ("Heater", "Bedroom", Appliance::Heater),
];

/// SplitMix64: spreads a seed and an index into independent per-device seeds.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(i.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn slug(s: &str) -> String {
    s.to_ascii_lowercase().replace(' ', "_")
}

/// Builds the devices of `config`: one per plug, except that all Zigbee plugs share one
/// Zigbee2MQTT bridge (last in the list).
#[must_use]
pub fn fleet(config: &SimConfig) -> Vec<SimDevice> {
    let mut ids = fastrand::Rng::with_seed(mix(config.seed, u64::MAX));
    let mut taken = BTreeSet::new();
    let mut devices = Vec::new();
    let mut zigbee = Vec::new();
    for i in 0..config.count {
        let (base, room, appliance) = CATALOGUE[i % CATALOGUE.len()];
        let round = i / CATALOGUE.len();
        let name = if round == 0 {
            base.to_owned()
        } else {
            format!("{base} {}", round + 1)
        };
        let firmware = config.profile.firmware(i);
        let key = loop {
            let key = match firmware {
                Firmware::Tasmota => format!("tasmota_{:06X}", ids.u32(..1 << 24)),
                Firmware::ShellyGen1 => format!("shellyplug-s-{:06X}", ids.u32(..1 << 24)),
                Firmware::ShellyGen2 => format!("shellyplusplugs-{:012x}", ids.u64(..1 << 48)),
                Firmware::Zigbee2Mqtt => format!("{}/{}", slug(room), slug(&name)),
                Firmware::HomeAssistant => format!("athom-plug-v2-{:06x}", ids.u32(..1 << 24)),
            };
            if taken.insert(key.clone()) {
                break key;
            }
        };
        let spec = PlugSpec {
            key: key.clone(),
            name,
            room: room.to_owned(),
            appliance,
        };
        if firmware == Firmware::Zigbee2Mqtt {
            zigbee.push(spec);
        } else {
            devices.push(SimDevice::new(
                firmware,
                key,
                vec![spec],
                config.behaviour,
                mix(config.seed, i as u64),
            ));
        }
    }
    if !zigbee.is_empty() {
        let bridge = format!("zigbee2mqtt_{:08x}", ids.u32(..));
        devices.push(SimDevice::new(
            Firmware::Zigbee2Mqtt,
            bridge,
            zigbee,
            config.behaviour,
            mix(config.seed, config.count as u64),
        ));
    }
    devices
}

/// The Switchboard device id the dashboard will give plug `i` of `device`.
#[must_use]
pub fn device_id(device: &SimDevice, i: usize) -> DeviceId {
    let plug = &device.plugs()[i];
    match device.firmware() {
        Firmware::Tasmota => DeviceId::new(Family::Tasmota, &plug.spec.key),
        Firmware::ShellyGen1 => DeviceId::new(Family::ShellyGen1, &plug.spec.key),
        Firmware::ShellyGen2 => DeviceId::new(Family::ShellyGen2, &plug.spec.key),
        Firmware::Zigbee2Mqtt => DeviceId::new(Family::Zigbee2Mqtt, &plug.spec.key),
        // Grouped by `device.identifiers[0]`, the lower-case MAC.
        Firmware::HomeAssistant => {
            DeviceId::new(Family::HomeAssistant, &plug.mac.to_ascii_lowercase())
        }
    }
}

/// The household's names and rooms as Switchboard meta messages (retained), as a user would
/// have set them in the dashboard: `switchboard/meta/<id>` `{"name":"Kettle","room":"Kitchen"}`.
#[must_use]
pub fn household_meta(devices: &[SimDevice]) -> Vec<SimMessage> {
    let mut out = Vec::new();
    for device in devices {
        for (i, plug) in device.plugs().iter().enumerate() {
            let id = device_id(device, i);
            let meta = Meta {
                name: Some(plug.spec.name.clone()),
                room: Some(plug.spec.room.clone()),
            };
            let m = meta_message(&id, &meta);
            let payload = String::from_utf8_lossy(&m.payload).into_owned();
            out.push(SimMessage::new(m.topic, payload).retained());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_household_has_every_family_and_room() {
        let devices = fleet(&SimConfig::default());
        let families: BTreeSet<_> = devices.iter().map(|d| d.firmware() as u8).collect();
        assert_eq!(families.len(), 5);
        let rooms: BTreeSet<_> = devices
            .iter()
            .flat_map(|d| d.plugs().iter().map(|p| p.spec.room.clone()))
            .collect();
        assert_eq!(
            rooms.into_iter().collect::<Vec<_>>(),
            vec!["Bedroom", "Kitchen", "Living room", "Office"]
        );
        let plugs: usize = devices.iter().map(|d| d.plugs().len()).sum();
        assert_eq!(plugs, 12);
        let bridge = devices.last().unwrap();
        assert_eq!(bridge.firmware(), Firmware::Zigbee2Mqtt);
        assert_eq!(bridge.plugs()[0].spec.key, "kitchen/fridge");
    }

    #[test]
    fn deterministic_and_unique() {
        let config = SimConfig {
            count: 40,
            profile: Profile::Tasmota,
            seed: 99,
            ..SimConfig::default()
        };
        let a: Vec<String> = fleet(&config)
            .iter()
            .map(|d| d.client_id().to_owned())
            .collect();
        let b: Vec<String> = fleet(&config)
            .iter()
            .map(|d| d.client_id().to_owned())
            .collect();
        assert_eq!(a, b);
        assert_eq!(a.iter().collect::<BTreeSet<_>>().len(), 40);
        let other = fleet(&SimConfig {
            seed: 100,
            ..config
        });
        assert_ne!(a[0], other[0].client_id());
        assert!(a[0].starts_with("tasmota_"));
        assert_eq!(
            fleet(&SimConfig {
                count: 40,
                ..config
            })[14]
                .plugs()[0]
                .spec
                .name,
            "Kettle 2"
        );
    }

    #[test]
    fn profiles_parse() {
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>(), Ok(p));
        }
        assert!("zwave".parse::<Profile>().is_err());
    }

    #[test]
    fn meta_names_the_dashboard_ids() {
        let devices = fleet(&SimConfig::default());
        let meta = household_meta(&devices);
        assert_eq!(meta.len(), 12);
        assert!(meta.iter().all(|m| m.retain));
        assert!(
            meta.iter()
                .any(|m| m.topic == "switchboard/meta/z2m:kitchen%2Ffridge"
                    && m.payload == r#"{"name":"Fridge","room":"Kitchen"}"#)
        );
    }
}
