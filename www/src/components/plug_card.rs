//! One plug: name, switches, live power, link to the detail view.

use yew::prelude::*;

use crate::components::RelaySwitch;
use crate::route::Route;
use crate::vm::CardVm;

/// Props of [`PlugCard`].
#[derive(Properties, PartialEq, Debug)]
pub struct PlugCardProps {
    /// The card.
    pub card: CardVm,
    /// Whether the broker connection is live.
    pub live: bool,
}

/// A card: greyed and not switchable when the device is offline.
#[function_component(PlugCard)]
pub fn plug_card(props: &PlugCardProps) -> Html {
    let card = &props.card;
    let offline = card.offline();
    let disabled = offline || !props.live;
    html! {
        <li class={classes!("card", offline.then_some("offline"))} data-device={card.id.as_str().to_owned()}
            aria-disabled={offline.then_some("true")}>
            <div class="card-head">
                <a class="card-name" href={Route::Device(card.id.clone()).to_hash()}
                   aria-label={format!("{}: details", card.name)}>
                    <span class="name">{ card.name.clone() }</span>
                    <span class="chev" aria-hidden="true">{ "›" }</span>
                </a>
            </div>
            <div class="card-body">
                { for card.relays.iter().map(|r| html! {
                    <RelaySwitch key={r.index} id={card.id.clone()} name={card.name.clone()} relay={r.clone()} {disabled} />
                }) }
            </div>
            <div class="card-foot">
                if offline {
                    <span class="badge">{ "Offline" }</span>
                } else if let Some(p) = &card.power {
                    <span class="power" aria-label={format!("Power {p}")}>{ p.clone() }</span>
                }
                <span class="family">{ card.family }</span>
            </div>
        </li>
    }
}
