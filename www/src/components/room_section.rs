//! One room: its heading, "all off", and its cards.

use yew::prelude::*;

use crate::browser;
use crate::components::PlugCard;
use crate::hooks::use_dispatch;
use crate::state::Action;
use crate::vm::RoomVm;

/// Props of [`RoomSection`].
#[derive(Properties, PartialEq, Debug)]
pub struct RoomSectionProps {
    /// The room.
    pub room: RoomVm,
    /// Whether the broker connection is live (switches are disabled otherwise).
    pub live: bool,
}

/// A room's heading with its "all off" button, then its cards.
#[function_component(RoomSection)]
pub fn room_section(props: &RoomSectionProps) -> Html {
    let dispatch = use_dispatch();
    let room = &props.room;
    let all_off = {
        let r = room.room.clone();
        Callback::from(move |_: MouseEvent| {
            dispatch.dispatch(Action::AllOff {
                room: r.clone(),
                now_ms: browser::now_ms(),
            });
        })
    };
    // Any character but white space may appear in an id.
    let heading_id = format!(
        "room-{}",
        room.title()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("-")
    );
    html! {
        <section class="room" aria-labelledby={heading_id.clone()}>
            <div class="room-head">
                <h2 id={heading_id}>{ room.title().to_owned() }</h2>
                <button type="button" class="secondary" onclick={all_off}
                        disabled={!props.live || !room.any_on}
                        aria-label={format!("Switch off everything in {}", room.title())}>
                    { "All off" }
                </button>
            </div>
            <ul class="cards">
                { for room.cards.iter().map(|card| html! {
                    <PlugCard key={card.id.as_str().to_owned()} card={card.clone()} live={props.live} />
                }) }
            </ul>
        </section>
    }
}
