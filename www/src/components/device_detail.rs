//! One device: switches, power chart, energy, schedules, rename and move.

use switchboard_devices::{Availability, DeviceId};
use yew::prelude::*;

use crate::browser;
use crate::components::{MetaForm, PowerChart, RelaySwitch, ScheduleSection};
use crate::hooks::use_app;
use crate::route::Route;
use crate::vm::{self, CardVm};

/// Props of [`DeviceDetail`].
#[derive(Properties, PartialEq, Debug)]
pub struct DeviceDetailProps {
    /// The device shown.
    pub id: DeviceId,
}

/// The detail view of a device.
#[function_component(DeviceDetail)]
pub fn device_detail(props: &DeviceDetailProps) -> Html {
    let app = use_app();
    let back = html! { <a class="back" href={Route::Home.to_hash()}>{ "‹ All plugs" }</a> };
    let Some(device) = app.registry.get(&props.id) else {
        return html! {
            <section class="detail">
                { back }
                <p class="empty">{ "This device is not known (yet)." }</p>
            </section>
        };
    };
    let card = CardVm::of(device);
    let offline = card.offline();
    let disabled = offline || !app.is_live();
    let chart = vm::chart(device.power_history(), browser::now_ms());
    let availability = match device.online {
        Availability::Online => "Online",
        Availability::Offline => "Offline",
        Availability::Unknown => "Unknown",
    };
    let fmt_energy = |e: Option<f64>| e.map_or_else(|| "—".to_owned(), vm::format_energy);
    html! {
        <section class={classes!("detail", offline.then_some("offline"))} aria-labelledby="detail-title">
            { back }
            <h2 id="detail-title">{ device.name.clone() }</h2>
            <p class="sub">
                { device.room.clone().unwrap_or_else(|| "No room".to_owned()) }
                { " · " }{ card.family }{ " · " }{ availability }
            </p>
            <div class="switches">
                { for card.relays.iter().map(|r| html! {
                    <RelaySwitch key={r.index} id={card.id.clone()} name={card.name.clone()} relay={r.clone()} {disabled} />
                }) }
            </div>
            <dl class="stats">
                <div><dt>{ "Power" }</dt><dd>{ card.power.clone().unwrap_or_else(|| "—".to_owned()) }</dd></div>
                <div><dt>{ "Today" }</dt><dd>{ fmt_energy(device.energy_today_kwh) }</dd></div>
                <div><dt>{ "Total" }</dt><dd>{ fmt_energy(device.energy_total_kwh) }</dd></div>
            </dl>
            <h3>{ "Last hour" }</h3>
            <PowerChart {chart} />
            <ScheduleSection id={device.id.clone()} items={vm::device_schedules(&app.schedules, device)}
                             relays={vm::relay_choices(device)} disabled={!app.is_live()}
                             time_zone={app.time_zone.clone()} />
            <h3>{ "Name and room" }</h3>
            <MetaForm key={device.id.as_str().to_owned()} id={device.id.clone()} name={device.name.clone()}
                      room={device.room.clone().unwrap_or_default()} rooms={vm::room_names(&app.registry)}
                      disabled={!app.is_live()} />
            <p class="id">{ "Id: " }<code>{ device.id.as_str().to_owned() }</code></p>
        </section>
    }
}
