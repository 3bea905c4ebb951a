//! A device's schedules: the ones the gateway runs for it (and for its room), and the form
//! that adds one.

use switchboard_devices::DeviceId;
use yew::prelude::*;

use crate::components::{ScheduleForm, ScheduleItem};
use crate::vm::ScheduleVm;

/// Props of [`ScheduleSection`].
#[derive(Properties, PartialEq, Debug)]
pub struct ScheduleSectionProps {
    /// The device.
    pub id: DeviceId,
    /// Its schedules and its room's, in order.
    pub items: Vec<ScheduleVm>,
    /// Its outputs `(index, label)` when it has several.
    pub relays: Vec<(u8, String)>,
    /// No broker connection.
    pub disabled: bool,
    /// The gateway's time zone for schedules, once it said.
    pub time_zone: Option<String>,
}

/// The "Schedules" part of the detail view.
#[function_component(ScheduleSection)]
pub fn schedule_section(props: &ScheduleSectionProps) -> Html {
    html! {
        <section class="schedules" aria-labelledby="schedules-title">
            <h3 id="schedules-title">{ "Schedules" }</h3>
            <p class="hint">
                { "Run by the gateway, also while this page is closed. " }
                { zone_hint(props.time_zone.as_deref()) }
            </p>
            if props.items.is_empty() {
                <p class="hint none">{ "No schedules yet." }</p>
            } else {
                <ul class="schedule-list">
                    { for props.items.iter().map(|item| html! {
                        <ScheduleItem key={item.id.clone()} item={item.clone()} disabled={props.disabled} />
                    }) }
                </ul>
            }
            <ScheduleForm key={props.id.as_str().to_owned()} id={props.id.clone()}
                          relays={props.relays.clone()} disabled={props.disabled}
                          time_zone={props.time_zone.clone()} />
        </section>
    }
}

/// Which clock the times are on: the zone's name once the gateway said it.
fn zone_hint(zone: Option<&str>) -> String {
    match zone {
        Some(zone) => format!("Times are in {zone}, the gateway's time zone."),
        None => "Times are in the gateway's time zone.".to_owned(),
    }
}
