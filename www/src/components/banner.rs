//! The connection banner: connecting, live, reconnecting (with a countdown), offline.

use yew::prelude::*;

use crate::hooks::{use_app, use_countdown};
use crate::state::Conn;

/// Props of [`Banner`].
#[derive(Properties, PartialEq, Debug)]
pub struct BannerProps {
    /// Skips the back-off ("Retry now").
    pub retry: Callback<()>,
}

/// Shows the state of the broker connection; a slim bar when live.
#[function_component(Banner)]
pub fn banner(props: &BannerProps) -> Html {
    let app = use_app();
    let retry_at = match &app.conn {
        Conn::Reconnecting { retry_at_ms, .. } => Some(*retry_at_ms),
        _ => None,
    };
    let seconds = use_countdown(retry_at);
    let (kind, text, detail) = match (&app.conn, app.network_online) {
        (Conn::Live, _) => ("live", "Live".to_owned(), None),
        (_, false) => (
            "offline",
            "Offline: no network".to_owned(),
            Some("The dashboard reconnects when the network is back.".to_owned()),
        ),
        (Conn::Connecting, true) => ("connecting", "Connecting…".to_owned(), None),
        (Conn::Reconnecting { reason, .. }, true) => (
            "reconnecting",
            match seconds {
                Some(s) if s > 0 => format!("Reconnecting in {s} s"),
                _ => "Reconnecting…".to_owned(),
            },
            Some(reason.clone()),
        ),
        (Conn::AuthRequired { .. }, true) => ("auth", "Sign-in required".to_owned(), None),
    };
    let retry = props.retry.reform(|_: MouseEvent| ());
    html! {
        <div class={classes!("banner", kind)} role="status" aria-live="polite" data-conn={kind}>
            <span class="dot" aria-hidden="true"></span>
            <span class="text">{ text }</span>
            if let Some(d) = detail {
                <span class="detail">{ d }</span>
            }
            if kind == "reconnecting" || kind == "offline" {
                <button type="button" class="link" onclick={retry}>{ "Retry now" }</button>
            }
        </div>
    }
}
