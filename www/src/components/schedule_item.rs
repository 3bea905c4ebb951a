//! One schedule in a device's list: what it does, an enable switch, and delete (a second tap
//! confirms).

use yew::prelude::*;

use crate::hooks::use_dispatch;
use crate::state::Action;
use crate::vm::ScheduleVm;

/// Props of [`ScheduleItem`].
#[derive(Properties, PartialEq, Debug)]
pub struct ScheduleItemProps {
    /// The schedule.
    pub item: ScheduleVm,
    /// No broker connection.
    pub disabled: bool,
}

/// A row; the switch and the list change when the broker echoes the retained message.
#[function_component(ScheduleItem)]
pub fn schedule_item(props: &ScheduleItemProps) -> Html {
    let dispatch = use_dispatch();
    let confirming = use_state_eq(|| false);
    let item = &props.item;
    let toggle = {
        let (dispatch, id, enabled) = (dispatch.clone(), item.id.clone(), item.enabled);
        Callback::from(move |_: MouseEvent| {
            dispatch.dispatch(Action::SetScheduleEnabled {
                id: id.clone(),
                enabled: !enabled,
            });
        })
    };
    let delete = {
        let (confirming, id) = (confirming.clone(), item.id.clone());
        Callback::from(move |_: MouseEvent| {
            if *confirming {
                confirming.set(false);
                dispatch.dispatch(Action::DeleteSchedule(id.clone()));
            } else {
                confirming.set(true);
            }
        })
    };
    let cancel = {
        let confirming = confirming.clone();
        Callback::from(move |_: FocusEvent| confirming.set(false))
    };
    let details: Vec<&str> = [item.scope.as_deref(), item.relay.as_deref()]
        .into_iter()
        .flatten()
        .chain((!item.enabled && !item.invalid).then_some("Paused"))
        .collect();
    html! {
        <li class={classes!("schedule", (!item.enabled).then_some("paused"), item.invalid.then_some("invalid"))}
            data-schedule={item.id.clone()}>
            <div class="schedule-text">
                <span class="summary">{ item.summary.clone() }</span>
                if !details.is_empty() {
                    <span class="meta">{ details.join(" · ") }</span>
                }
            </div>
            if !item.invalid {
                <button type="button" role="switch" class="mini-switch"
                        aria-checked={item.enabled.to_string()}
                        aria-label={format!("Enabled: {}", item.summary)}
                        disabled={props.disabled} onclick={toggle}>
                    <span class="track" aria-hidden="true"><span class="thumb"></span></span>
                </button>
            }
            <button type="button" class={classes!("secondary", "delete", confirming.then_some("confirm"))}
                    aria-label={if *confirming { format!("Confirm delete: {}", item.summary) } else { format!("Delete: {}", item.summary) }}
                    disabled={props.disabled} onclick={delete} onblur={cancel}>
                { if *confirming { "Confirm" } else { "Delete" } }
            </button>
        </li>
    }
}
