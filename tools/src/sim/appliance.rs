//! What is plugged into a simulated plug, and how much power it draws.
//!
//! A load model is a pure function of how long the relay has been on (plus the appliance's own
//! phase and the device's random source for noise), so the same seed gives the same readings.
//! Power is what the plug's meter reads: 0 W while the relay is off.

use std::time::Duration;

/// The kinds of appliance the simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Appliance {
    /// ~2000 W while boiling (2.5 minutes), then its own thermostat cuts it off: 0 W.
    Kettle,
    /// A lamp: its nominal wattage, steady.
    Lamp {
        /// Nominal watts.
        watts: u16,
    },
    /// A television: ~80 W varying with the picture.
    Tv,
    /// A fridge: compressor ~120 W for 18 minutes (with a start-up surge), idle ~2 W for 32.
    Fridge,
    /// A washing machine programme: fill, heat (~2100 W), wash, spin, then standby.
    WashingMachine,
    /// A dishwasher programme: fill, heat, wash, dry, then standby.
    Dishwasher,
    /// A coffee machine: heats up (~1350 W), then keeps warm with short reheats.
    CoffeeMachine,
    /// A broadband router: ~7.5 W.
    Router,
    /// A computer monitor: ~25 W.
    Monitor,
    /// A laptop charger: ~60 W tapering off as the battery fills.
    LaptopCharger,
    /// An electric heater: thermostat cycling 1500 W on, off.
    Heater,
    /// An electric blanket: pre-heat at 60 W, then cycling at a lower setting.
    ElectricBlanket,
}

impl Appliance {
    /// A display name ("Kettle", "Desk lamp" is chosen by the household, not here).
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Kettle => "Kettle",
            Self::Lamp { .. } => "Lamp",
            Self::Tv => "TV",
            Self::Fridge => "Fridge",
            Self::WashingMachine => "Washing machine",
            Self::Dishwasher => "Dishwasher",
            Self::CoffeeMachine => "Coffee machine",
            Self::Router => "Router",
            Self::Monitor => "Monitor",
            Self::LaptopCharger => "Laptop charger",
            Self::Heater => "Heater",
            Self::ElectricBlanket => "Electric blanket",
        }
    }

    /// Whether people switch it by hand (button presses); nobody switches a fridge off for fun.
    #[must_use]
    pub fn pressable(self) -> bool {
        !matches!(self, Self::Fridge | Self::Router)
    }

    /// Whether it is normally on when the simulation starts.
    #[must_use]
    pub fn starts_on(self) -> bool {
        matches!(self, Self::Fridge | Self::Router | Self::Tv | Self::Monitor)
    }

    /// Power drawn after `on_for` with the relay on; `phase` offsets cycling appliances so two
    /// fridges do not run in step; `noise` is a value in [-1, 1] from the device's random source.
    #[must_use]
    pub fn watts(self, on_for: Duration, phase: Duration, noise: f64) -> f64 {
        let t = on_for.as_secs_f64();
        let w = match self {
            Self::Kettle => {
                if t < 150.0 {
                    2000.0 + 30.0 * noise
                } else {
                    0.0
                }
            }
            Self::Lamp { watts } => f64::from(watts) + 0.1 * noise,
            Self::Tv => 80.0 + 15.0 * (t / 37.0).sin() + 4.0 * noise,
            Self::Fridge => {
                let c = (t + phase.as_secs_f64()) % 3000.0;
                if c < 10.0 {
                    380.0 + 20.0 * noise
                } else if c < 1080.0 {
                    118.0 + 4.0 * noise
                } else {
                    1.8 + 0.1 * noise
                }
            }
            Self::WashingMachine => match t {
                t if t < 240.0 => 8.0 + noise,
                t if t < 1140.0 => 2100.0 + 40.0 * noise,
                t if t < 3240.0 => 180.0 + 60.0 * noise,
                t if t < 3840.0 => 450.0 + 150.0 * noise,
                _ => 1.2 + 0.05 * noise,
            },
            Self::Dishwasher => match t {
                t if t < 300.0 => 10.0 + noise,
                t if t < 1500.0 => 1900.0 + 40.0 * noise,
                t if t < 4200.0 => 60.0 + 8.0 * noise,
                t if t < 5100.0 => 1800.0 + 40.0 * noise,
                _ => 0.8 + 0.05 * noise,
            },
            Self::CoffeeMachine => {
                if t < 90.0 || (t % 600.0) < 30.0 {
                    1350.0 + 25.0 * noise
                } else {
                    2.0 + 0.2 * noise
                }
            }
            Self::Router => 7.5 + 0.3 * noise,
            Self::Monitor => 24.0 + 2.0 * noise,
            Self::LaptopCharger => 8.0 + 52.0 * (-t / 3000.0).exp() + 2.0 * noise,
            Self::Heater => {
                if (t + phase.as_secs_f64()) % 900.0 < 480.0 {
                    1500.0 + 20.0 * noise
                } else {
                    0.0
                }
            }
            Self::ElectricBlanket => {
                if t < 1200.0 || (t % 300.0) < 120.0 {
                    60.0 + noise
                } else {
                    0.0
                }
            }
        };
        w.max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn kettle_boils_then_cuts_out() {
        let k = Appliance::Kettle;
        assert!((k.watts(s(10), s(0), 0.0) - 2000.0).abs() < 1e-9);
        assert_eq!(k.watts(s(200), s(0), 1.0), 0.0);
    }

    #[test]
    fn fridge_cycles() {
        let f = Appliance::Fridge;
        assert!(f.watts(s(5), s(0), 0.0) > 300.0, "start-up surge");
        assert!((f.watts(s(600), s(0), 0.0) - 118.0).abs() < 1e-9);
        assert!(f.watts(s(2000), s(0), 0.0) < 5.0);
        assert!(f.watts(s(3005), s(0), 0.0) > 300.0, "next cycle");
    }

    #[test]
    fn washing_machine_phases() {
        let w = Appliance::WashingMachine;
        let phases: Vec<f64> = [60, 600, 2000, 3500, 5000]
            .into_iter()
            .map(|t| w.watts(s(t), s(0), 0.0))
            .collect();
        assert_eq!(phases, vec![8.0, 2100.0, 180.0, 450.0, 1.2]);
    }

    #[test]
    fn never_negative() {
        for a in [
            Appliance::Heater,
            Appliance::ElectricBlanket,
            Appliance::Kettle,
        ] {
            for t in (0..10_000).step_by(37) {
                assert!(a.watts(s(t), s(0), -1.0) >= 0.0);
            }
        }
    }
}
