//! The home view: rooms of plug cards.

use yew::prelude::*;

use crate::components::RoomSection;
use crate::hooks::use_app;
use crate::state::Conn;
use crate::vm;

/// Every (matching) device, grouped by room.
#[function_component(Grid)]
pub fn grid() -> Html {
    let app = use_app();
    let rooms = vm::rooms(&app.registry, &app.search);
    let live = app.is_live();
    if rooms.is_empty() {
        let text = if !app.search.trim().is_empty() {
            "No plug matches the search."
        } else if matches!(app.conn, Conn::Live) {
            "No plugs yet: they appear as soon as they announce themselves on the broker."
        } else {
            "Waiting for the broker…"
        };
        return html! { <section class="empty" aria-live="polite"><p>{ text }</p></section> };
    }
    html! {
        <div class="rooms">
            { for rooms.into_iter().map(|room| {
                let key = room.title().to_owned();
                html! { <RoomSection {key} {room} {live} /> }
            }) }
        </div>
    }
}
