//! The login screen, shown when the broker refuses the connection for lack of credentials.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::hooks::use_dispatch;
use crate::route::Route;
use crate::state::{Action, Credentials};

/// Props of [`Login`].
#[derive(Properties, PartialEq, Debug)]
pub struct LoginProps {
    /// Why the last attempt with credentials was refused.
    #[prop_or_default]
    pub error: Option<String>,
}

/// User name, password, "remember me".
#[function_component(Login)]
pub fn login(props: &LoginProps) -> Html {
    let dispatch = use_dispatch();
    let user = use_node_ref();
    let pass = use_node_ref();
    let remember = use_node_ref();
    let onsubmit = {
        let (user, pass, remember) = (user.clone(), pass.clone(), remember.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let input = |r: &NodeRef| r.cast::<HtmlInputElement>();
            dispatch.dispatch(Action::SetCredentials(Some(Credentials {
                username: input(&user).map(|i| i.value()).unwrap_or_default(),
                password: input(&pass).map(|i| i.value()).unwrap_or_default(),
                remember: input(&remember).is_some_and(|i| i.checked()),
            })));
        })
    };
    html! {
        <section class="login" aria-labelledby="login-title">
            <h2 id="login-title">{ "Sign in to the broker" }</h2>
            if let Some(e) = &props.error {
                <p class="error" role="alert">{ format!("Refused: {e}") }</p>
            }
            <form {onsubmit}>
                <label>{ "User name" }
                    <input ref={user} type="text" autocomplete="username" required=true />
                </label>
                <label>{ "Password" }
                    <input ref={pass} type="password" autocomplete="current-password" />
                </label>
                <label class="check">
                    <input ref={remember} type="checkbox" />{ "Remember me on this device" }
                </label>
                <button type="submit" class="primary">{ "Sign in" }</button>
            </form>
            <p><a href={Route::Settings.to_hash()}>{ "Change the broker URL" }</a></p>
        </section>
    }
}
