//! A relay's switch: a large `role="switch"` button.

use switchboard_devices::DeviceId;
use yew::prelude::*;

use crate::browser;
use crate::hooks::use_dispatch;
use crate::state::Action;
use crate::vm::{RelayVm, SwitchState};

/// Props of [`RelaySwitch`].
#[derive(Properties, PartialEq, Debug)]
pub struct RelaySwitchProps {
    /// The device.
    pub id: DeviceId,
    /// The device's name (for the accessible label).
    pub name: String,
    /// The relay.
    pub relay: RelayVm,
    /// Offline device or no broker connection.
    pub disabled: bool,
}

/// Tapping (or Space/Enter) asks for the opposite state; it shows *pending* until the device
/// confirms. `aria-checked` is the confirmed state, `aria-busy` marks a pending command.
#[function_component(RelaySwitch)]
pub fn relay_switch(props: &RelaySwitchProps) -> Html {
    let dispatch = use_dispatch();
    let onclick = {
        let id = props.id.clone();
        let relay = props.relay.index;
        Callback::from(move |_: MouseEvent| {
            dispatch.dispatch(Action::Toggle {
                id: id.clone(),
                relay,
                now_ms: browser::now_ms(),
            });
        })
    };
    let state = props.relay.state;
    let pending = matches!(state, SwitchState::Pending { .. });
    let label = match &props.relay.label {
        Some(l) => format!("{} {l}", props.name),
        None => props.name.clone(),
    };
    html! {
        <button type="button" role="switch" class="switch"
                aria-checked={props.relay.on.to_string()}
                aria-busy={pending.then_some("true")}
                aria-label={label}
                data-state={state.data()}
                disabled={props.disabled}
                {onclick}>
            <span class="track" aria-hidden="true"><span class="thumb"></span></span>
            <span class="state">
                if let Some(l) = &props.relay.label {
                    <span class="relay-label">{ l.clone() }</span>
                }
                { state.label() }
            </span>
        </button>
    }
}
