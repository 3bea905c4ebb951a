//! The keep-alive timer in headless Chromium: it runs in a Worker made from a Blob URL, and
//! falls back to `setTimeout` when the Worker cannot be created.
#![cfg(target_arch = "wasm32")]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures_channel::oneshot;
use switchboard_client::timer::{TimerMode, WakeTimer};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn performance_now() -> f64 {
    js_sys::Date::now()
}

type Notify = Rc<RefCell<Option<oneshot::Sender<()>>>>;

/// A `WakeTimer::new` whose fires are counted and announced on a channel.
fn counting_timer() -> (WakeTimer, Rc<Cell<u32>>, Notify) {
    let fired = Rc::new(Cell::new(0));
    let notify: Notify = Rc::new(RefCell::new(None));
    let (f, n) = (fired.clone(), notify.clone());
    let timer = WakeTimer::new(move || {
        f.set(f.get() + 1);
        if let Some(tx) = n.borrow_mut().take() {
            let _ = tx.send(());
        }
    });
    (timer, fired, notify)
}

fn next_fire(notify: &Notify) -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    *notify.borrow_mut() = Some(tx);
    rx
}

#[wasm_bindgen_test]
async fn worker_timer_fires_and_rearm_replaces() {
    let (mut timer, fired, notify) = counting_timer();
    assert_eq!(timer.mode(), TimerMode::Worker);
    let rx = next_fire(&notify);
    let start = performance_now();
    timer.arm(5.0);
    timer.arm(60.0); // replaces the 5 ms arming
    rx.await.unwrap();
    assert!(
        performance_now() - start >= 55.0,
        "the 5 ms arming was replaced"
    );
    assert_eq!(fired.get(), 1);
    // Cancel, then arm again: only the second arming fires.
    let rx = next_fire(&notify);
    timer.arm(1.0);
    timer.cancel();
    timer.arm(30.0);
    rx.await.unwrap();
    assert_eq!(fired.get(), 2);
    assert_eq!(timer.mode(), TimerMode::Worker);
}

#[wasm_bindgen_test]
async fn falls_back_to_set_timeout_when_worker_constructor_throws() {
    let global = js_sys::global();
    let key = JsValue::from_str("Worker");
    let original = js_sys::Reflect::get(&global, &key).unwrap();
    // What a page whose CSP forbids blob: workers sees: the constructor throws.
    let throwing =
        js_sys::Function::new_no_args("throw new DOMException('blocked by CSP', 'SecurityError')");
    js_sys::Reflect::set(&global, &key, &throwing).unwrap();
    let (mut timer, fired, notify) = counting_timer();
    js_sys::Reflect::set(&global, &key, &original).unwrap();
    assert_eq!(timer.mode(), TimerMode::Fallback);
    let rx = next_fire(&notify);
    timer.arm(10.0);
    rx.await.unwrap();
    assert_eq!(fired.get(), 1);
    let rx = next_fire(&notify);
    timer.arm(1.0);
    timer.cancel();
    timer.arm(20.0);
    rx.await.unwrap();
    assert_eq!(fired.get(), 2);
}

#[wasm_bindgen_test]
async fn dropping_the_timer_cancels_it() {
    let (mut dropped, dropped_fired, _) = counting_timer();
    dropped.arm(5.0);
    drop(dropped);
    let (mut later, _, notify) = counting_timer();
    let rx = next_fire(&notify);
    later.arm(40.0);
    rx.await.unwrap();
    assert_eq!(
        dropped_fired.get(),
        0,
        "worker terminated, closure freed, nothing fired"
    );
}
