//! One notice, dismissed by a tap or after a few seconds.

use gloo_timers::callback::Timeout;
use yew::prelude::*;

use crate::hooks::use_dispatch;
use crate::state::{Action, Notice, NoticeKind};

/// How long a notice stays.
const SHOW_MS: u32 = 6_000;

/// Props of [`Toast`].
#[derive(Properties, PartialEq, Debug)]
pub struct ToastProps {
    /// The notice.
    pub notice: Notice,
}

/// A notice; its timer is dropped (cancelled) with the component.
#[function_component(Toast)]
pub fn toast(props: &ToastProps) -> Html {
    let dispatch = use_dispatch();
    let id = props.notice.id;
    {
        let dispatch = dispatch.clone();
        use_effect_with(id, move |&id| {
            let t = Timeout::new(SHOW_MS, move || {
                dispatch.dispatch(Action::DismissNotice(id))
            });
            move || drop(t)
        });
    }
    let close = Callback::from(move |_: MouseEvent| dispatch.dispatch(Action::DismissNotice(id)));
    let kind = match props.notice.kind {
        NoticeKind::Error => "error",
        NoticeKind::Info => "info",
    };
    html! {
        <div class={classes!("toast", kind)} role={if kind == "error" { "alert" } else { "status" }}>
            <span>{ props.notice.text.clone() }</span>
            <button type="button" class="icon" aria-label="Dismiss" onclick={close}>{ "×" }</button>
        </div>
    }
}
