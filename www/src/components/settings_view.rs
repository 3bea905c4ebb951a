//! Settings: broker URL, theme, sign out.

use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::hooks::use_app;
use crate::state::{Action, Theme};

/// The settings view.
#[function_component(SettingsView)]
pub fn settings_view() -> Html {
    let app = use_app();
    let url = use_node_ref();
    let onsubmit = {
        let (app, url) = (app.clone(), url.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Some(i) = url.cast::<HtmlInputElement>() {
                app.dispatch(Action::SetBrokerUrl(i.value()));
            }
        })
    };
    let reset = {
        let app = app.clone();
        Callback::from(move |_: MouseEvent| app.dispatch(Action::SetBrokerUrl(String::new())))
    };
    let onchange = {
        let app = app.clone();
        Callback::from(move |e: Event| {
            let select: HtmlSelectElement = e.target_unchecked_into();
            app.dispatch(Action::SetTheme(Theme::parse(&select.value())));
        })
    };
    let sign_out = {
        let app = app.clone();
        Callback::from(move |_: MouseEvent| app.dispatch(Action::SetCredentials(None)))
    };
    let theme_option = |t: Theme, label: &str| {
        html! {
            <option value={t.as_str()} selected={app.theme == t}>{ label.to_owned() }</option>
        }
    };
    html! {
        <section class="settings" aria-labelledby="settings-title">
            <h2 id="settings-title">{ "Settings" }</h2>
            <form {onsubmit}>
                <label>{ "Broker URL (MQTT over WebSocket)" }
                    <input ref={url} type="url" value={app.broker_url().to_owned()} placeholder={app.default_url.clone()}
                           pattern="wss?://.+" required=true />
                </label>
                <div class="row">
                    <button type="submit" class="primary">{ "Connect" }</button>
                    <button type="button" class="secondary" onclick={reset} disabled={app.custom_url.is_none()}>
                        { "Use this server" }
                    </button>
                </div>
            </form>
            <label>{ "Theme" }
                <select {onchange}>
                    { theme_option(Theme::System, "Follow the system") }
                    { theme_option(Theme::Light, "Light") }
                    { theme_option(Theme::Dark, "Dark") }
                </select>
            </label>
            if let Some(c) = &app.credentials {
                <p>{ format!("Signed in as {}.", c.username) }</p>
                <button type="button" class="secondary" onclick={sign_out}>{ "Sign out" }</button>
            }
        </section>
    }
}
