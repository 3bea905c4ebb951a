//! The Switchboard dashboard (Yew, built by trunk from the root `index.html`).
//!
//! At this stage it is the application shell: the page the gateway serves at `/`, with the
//! layout and theme the control panel grows into.

use yew::prelude::*;

/// The application root.
#[function_component(App)]
fn app() -> Html {
    html! {
        <main class="shell">
            <header class="bar">
                <h1>{ "Switchboard" }</h1>
            </header>
            <section class="empty" aria-live="polite">
                <p>{ "Your plugs will appear here." }</p>
            </section>
        </main>
    }
}

fn main() {
    yew::Renderer::<App>::new().render();
}
