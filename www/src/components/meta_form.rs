//! Rename a device and move it to a room (a retained `switchboard/meta` message).

use switchboard_devices::DeviceId;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::hooks::use_dispatch;
use crate::state::Action;

/// Props of [`MetaForm`].
#[derive(Properties, PartialEq, Debug)]
pub struct MetaFormProps {
    /// The device.
    pub id: DeviceId,
    /// Its current name.
    pub name: String,
    /// Its current room (empty: none).
    pub room: String,
    /// Rooms in use, offered as suggestions.
    pub rooms: Vec<String>,
    /// No broker connection.
    pub disabled: bool,
}

/// Two fields and a save button; the change shows when the broker echoes the meta message.
#[function_component(MetaForm)]
pub fn meta_form(props: &MetaFormProps) -> Html {
    let dispatch = use_dispatch();
    let name = use_node_ref();
    let room = use_node_ref();
    let onsubmit = {
        let (id, name, room) = (props.id.clone(), name.clone(), room.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let value = |r: &NodeRef| {
                r.cast::<HtmlInputElement>()
                    .map(|i| i.value())
                    .unwrap_or_default()
            };
            dispatch.dispatch(Action::SetMeta {
                id: id.clone(),
                name: value(&name),
                room: value(&room),
            });
        })
    };
    html! {
        <form class="meta" {onsubmit}>
            <label>{ "Name" }
                <input ref={name} type="text" value={props.name.clone()} maxlength="64" autocomplete="off" />
            </label>
            <label>{ "Room" }
                <input ref={room} type="text" value={props.room.clone()} maxlength="64" list="rooms" autocomplete="off" />
            </label>
            <datalist id="rooms">
                { for props.rooms.iter().map(|r| html! { <option value={r.clone()} /> }) }
            </datalist>
            <button type="submit" class="primary" disabled={props.disabled}>{ "Save" }</button>
        </form>
    }
}
