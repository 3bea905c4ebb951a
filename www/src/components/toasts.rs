//! The stack of notices.

use yew::prelude::*;

use crate::components::Toast;
use crate::hooks::use_app;

/// Notices, newest last, at the bottom of the screen.
#[function_component(Toasts)]
pub fn toasts() -> Html {
    let app = use_app();
    html! {
        <div class="toasts">
            { for app.notices.iter().map(|n| html! { <Toast key={n.id} notice={n.clone()} /> }) }
        </div>
    }
}
