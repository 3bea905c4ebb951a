//! The form that adds a schedule to a device: at a time (with weekday chips and on/off), or off
//! a number of minutes after it was switched on; the output on devices with several.
//!
//! The fields live in a [`Draft`]; what it builds is checked as the gateway checks it before
//! anything is published ([`Draft::build`]), and a problem is shown next to the button.

use switchboard_devices::DeviceId;
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::browser;
use crate::hooks::use_dispatch;
use crate::schedule::{self, Draft, DraftKind, Weekday};
use crate::state::Action;

/// Props of [`ScheduleForm`].
#[derive(Properties, PartialEq, Debug)]
pub struct ScheduleFormProps {
    /// The device the new schedule is for.
    pub id: DeviceId,
    /// Its outputs `(index, label)` when it has several (empty: no choice shown).
    pub relays: Vec<(u8, String)>,
    /// No broker connection.
    pub disabled: bool,
    /// The gateway's time zone for schedules, once it said.
    pub time_zone: Option<String>,
}

/// The add form; it starts over after a schedule is sent.
#[function_component(ScheduleForm)]
pub fn schedule_form(props: &ScheduleFormProps) -> Html {
    let dispatch = use_dispatch();
    let draft = use_state_eq(Draft::default);
    let error = use_state_eq(|| None::<&'static str>);
    // Every field edit goes through here: the new draft, and the old error cleared.
    let edit = {
        let (draft, error) = (draft.clone(), error.clone());
        move |change: &dyn Fn(&mut Draft)| {
            let mut d = (*draft).clone();
            change(&mut d);
            draft.set(d);
            error.set(None);
        }
    };
    let onsubmit = {
        let (draft, error, id) = (draft.clone(), error.clone(), props.id.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let new_id = schedule::new_id(&id, browser::random_u32());
            match draft.build(&id, new_id) {
                Ok(s) => {
                    dispatch.dispatch(Action::SaveSchedule(s));
                    draft.set(Draft::default());
                    error.set(None);
                }
                Err(why) => error.set(Some(why.message())),
            }
        })
    };
    let set_kind = |kind: DraftKind| {
        let edit = edit.clone();
        Callback::from(move |_: Event| edit(&|d| d.kind = kind))
    };
    let set_on = |on: bool| {
        let edit = edit.clone();
        Callback::from(move |_: Event| edit(&|d| d.on = on))
    };
    let on_time = {
        let edit = edit.clone();
        Callback::from(move |e: InputEvent| {
            let value = e.target_unchecked_into::<HtmlInputElement>().value();
            edit(&|d| d.time.clone_from(&value));
        })
    };
    let on_minutes = {
        let edit = edit.clone();
        Callback::from(move |e: InputEvent| {
            let value = e.target_unchecked_into::<HtmlInputElement>().value();
            edit(&|d| d.minutes.clone_from(&value));
        })
    };
    let on_relay = {
        let edit = edit.clone();
        Callback::from(move |e: Event| {
            let value = e.target_unchecked_into::<HtmlSelectElement>().value();
            let relay = value.parse().unwrap_or(0);
            edit(&|d| d.relay = relay);
        })
    };
    let chip = |day: Weekday| {
        let pressed = draft.days[day.index()];
        let edit = edit.clone();
        let onclick =
            Callback::from(move |_: MouseEvent| edit(&|d| d.days[day.index()] = !pressed));
        html! {
            <button type="button" class="chip" aria-pressed={pressed.to_string()}
                    aria-label={day.long()} data-day={day.short()} {onclick}>
                { day.short() }
            </button>
        }
    };
    let radio = |name: &'static str,
                 value: &'static str,
                 label: &'static str,
                 checked: bool,
                 onchange: Callback<Event>| {
        html! {
            <label class="seg">
                <input type="radio" {name} {value} {checked} {onchange} />
                <span>{ label }</span>
            </label>
        }
    };
    let preview = draft.rule().ok().map(|r| schedule::summary(&r));
    let at = draft.kind == DraftKind::At;
    html! {
        <form class="schedule-form" {onsubmit} novalidate=true>
            <h4>{ "Add a schedule" }</h4>
            <fieldset class="segmented">
                <legend>{ "Kind" }</legend>
                { radio("schedule-kind", "at", "At a time", at, set_kind(DraftKind::At)) }
                { radio("schedule-kind", "off_after", "Off after a while", !at, set_kind(DraftKind::OffAfter)) }
            </fieldset>
            if at {
                <label>{ format!("Time ({})", props.time_zone.as_deref().unwrap_or("gateway time")) }
                    <input type="time" name="time" value={draft.time.clone()} oninput={on_time} required=true />
                </label>
                <fieldset class="days">
                    <legend>{ "Days (none chosen: every day)" }</legend>
                    <div class="chips">{ for Weekday::ALL.into_iter().map(chip) }</div>
                </fieldset>
                <fieldset class="segmented">
                    <legend>{ "Switch" }</legend>
                    { radio("schedule-on", "on", "On", draft.on, set_on(true)) }
                    { radio("schedule-on", "off", "Off", !draft.on, set_on(false)) }
                </fieldset>
            } else {
                <label>{ "Minutes after it is switched on" }
                    <input type="number" name="minutes" inputmode="numeric" min="1" max={schedule::MAX_OFF_AFTER_MINUTES.to_string()}
                           step="1" value={draft.minutes.clone()} oninput={on_minutes} required=true />
                </label>
            }
            if !props.relays.is_empty() {
                <label>{ "Output" }
                    <select name="relay" onchange={on_relay}>
                        { for props.relays.iter().map(|(i, label)| html! {
                            <option value={i.to_string()} selected={*i == draft.relay}>{ label.clone() }</option>
                        }) }
                    </select>
                </label>
            }
            if let Some(p) = preview {
                <p class="preview" aria-live="polite">{ p }</p>
            }
            if let Some(e) = *error {
                <p class="error" role="alert">{ e }</p>
            }
            <button type="submit" class="primary" disabled={props.disabled}>{ "Add schedule" }</button>
        </form>
    }
}
