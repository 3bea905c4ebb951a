//! The root: owns the state, provides it, runs the hooks, picks the view.

use yew::prelude::*;

use crate::browser;
use crate::components::{
    Banner, DeviceDetail, Grid, Login, SettingsView, Toasts, TopBar, TopicTree,
};
use crate::hooks::{
    AppDispatch, AppHandle, stored_credentials, use_command_timeouts, use_hash_route, use_mqtt,
    use_network_status, use_persisted_settings,
};
use crate::port::ConnectorHandle;
use crate::route::Route;
use crate::state::{AppState, Conn, Theme};

/// Props of [`App`].
#[derive(Properties, PartialEq, Debug)]
pub struct AppProps {
    /// Opens MQTT sessions (the real client in the page, a fake in tests).
    pub connector: ConnectorHandle,
    /// The broker URL used when the user set none (default: same origin `/mqtt`).
    #[prop_or_default]
    pub default_url: Option<String>,
}

/// The dashboard.
#[function_component(App)]
pub fn app(props: &AppProps) -> Html {
    let default_url = props.default_url.clone();
    let app: AppHandle = use_reducer(move || {
        AppState::new(
            default_url.unwrap_or_else(browser::same_origin_broker),
            browser::load(browser::KEY_BROKER_URL),
            stored_credentials(),
            Theme::parse(&browser::load(browser::KEY_THEME).unwrap_or_default()),
            Route::parse(&browser::hash()),
        )
    });
    let mqtt = use_mqtt(&app, &props.connector);
    use_command_timeouts(&app);
    use_hash_route(&app);
    use_network_status(&app);
    use_persisted_settings(&app);

    let dispatch: AppDispatch = app.dispatcher();
    let view = match (&app.conn, &app.route) {
        (Conn::AuthRequired { error }, route) if *route != Route::Settings => {
            html! { <Login error={error.clone()} /> }
        }
        (_, Route::Home) => html! { <Grid /> },
        (_, Route::Device(id)) => html! { <DeviceDetail id={id.clone()} /> },
        (_, Route::Topics) => html! { <TopicTree /> },
        (_, Route::Settings) => html! { <SettingsView /> },
    };
    html! {
        <ContextProvider<AppHandle> context={app.clone()}>
            <ContextProvider<AppDispatch> context={dispatch}>
                <a class="skip" href="#main">{ "Skip to content" }</a>
                <TopBar />
                <Banner retry={mqtt.retry_callback()} />
                <main id="main" class="shell" tabindex="-1">{ view }</main>
                <Toasts />
            </ContextProvider<AppDispatch>>
        </ContextProvider<AppHandle>>
    }
}
