//! A real Content-Security-Policy forbidding workers: the timer must still fire, on the
//! `setTimeout` fallback. Its own test binary, as the policy applies to the whole page.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::oneshot;
use switchboard_client::timer::{TimerMode, WakeTimer};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn csp_worker_src_none_falls_back() {
    let document = web_sys::window().unwrap().document().unwrap();
    let meta = document.create_element("meta").unwrap();
    meta.set_attribute("http-equiv", "Content-Security-Policy")
        .unwrap();
    meta.set_attribute("content", "worker-src 'none'").unwrap();
    document.head().unwrap().append_child(&meta).unwrap();

    let notify: Rc<RefCell<Option<oneshot::Sender<()>>>> = Rc::new(RefCell::new(None));
    let n = notify.clone();
    let mut timer = WakeTimer::new(move || {
        if let Some(tx) = n.borrow_mut().take() {
            let _ = tx.send(());
        }
    });
    // Chromium either throws from the constructor (fallback at once) or reports an `error`
    // event, which fires the timer early and moves it to the fallback on the next arm.
    for _ in 0..2 {
        let (tx, rx) = oneshot::channel();
        *notify.borrow_mut() = Some(tx);
        timer.arm(20.0);
        rx.await.unwrap();
        if timer.mode() == TimerMode::Fallback {
            break;
        }
    }
    timer.arm(10.0);
    assert_eq!(timer.mode(), TimerMode::Fallback);
    let _ = meta.dyn_into::<web_sys::Element>().map(|m| m.remove());
}
