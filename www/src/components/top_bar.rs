//! The top bar: title, navigation, search, theme toggle.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::browser;
use crate::hooks::use_app;
use crate::route::Route;
use crate::state::{Action, Theme};

/// Title, links to the views, the search box (on the grid and topic views), the theme toggle.
#[function_component(TopBar)]
pub fn top_bar() -> Html {
    let app = use_app();
    let oninput = {
        let app = app.clone();
        Callback::from(move |e: InputEvent| {
            let input: HtmlInputElement = e.target_unchecked_into();
            app.dispatch(Action::Search(input.value()));
        })
    };
    let looks_dark = match app.theme {
        Theme::Dark => true,
        Theme::Light => false,
        Theme::System => browser::prefers_dark(),
    };
    let toggle_theme = {
        let app = app.clone();
        Callback::from(move |_: MouseEvent| {
            app.dispatch(Action::SetTheme(app.theme.toggled(looks_dark)));
        })
    };
    let link = |route: Route, label: &str| {
        let current =
            app.route == route || (route == Route::Home && matches!(app.route, Route::Device(_)));
        html! {
            <a href={route.to_hash()} class="nav" aria-current={current.then_some("page")}>{ label.to_owned() }</a>
        }
    };
    let searchable = matches!(app.route, Route::Home | Route::Topics);
    html! {
        <header class="bar">
            <div class="bar-row">
                <h1><a href="#/">{ "Switchboard" }</a></h1>
                <nav aria-label="Views">
                    { link(Route::Home, "Plugs") }
                    { link(Route::Topics, "Topics") }
                    { link(Route::Settings, "Settings") }
                </nav>
                <button type="button" class="icon" onclick={toggle_theme}
                        aria-label={if looks_dark { "Switch to light theme" } else { "Switch to dark theme" }}
                        title="Theme">
                    { if looks_dark { "☀" } else { "☾" } }
                </button>
            </div>
            if searchable {
                <input class="search" type="search" placeholder="Search plugs, rooms, topics"
                       aria-label="Search" value={app.search.clone()} {oninput} />
            }
        </header>
    }
}
