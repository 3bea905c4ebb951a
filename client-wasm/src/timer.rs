//! The driver's one wake-up timer, in a dedicated Worker so that keep alive survives
//! background-tab throttling.
//!
//! Chromium throttles `setTimeout` in hidden tabs (to once a minute after five minutes), which
//! would miss keep-alive deadlines of 30 s and get the client disconnected. Timers inside a
//! dedicated Worker are not throttled that way, so the timer runs there: the page posts a delay
//! in milliseconds (negative to cancel), the worker posts back when it has passed. The worker
//! is made from an inline Blob URL, so no extra file has to be served. A page whose CSP forbids
//! `blob:` workers makes the constructor throw (or the worker fail with an `error` event): the
//! timer then falls back to the page's own `setTimeout`.

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Array, Function};
use wasm_bindgen::prelude::*;
use web_sys::{Blob, BlobPropertyBag, EventTarget, Url, Worker};

use crate::dom::Listener;

const WORKER_JS: &str =
    "let t;onmessage=e=>{clearTimeout(t);if(e.data>=0)t=setTimeout(()=>postMessage(0),e.data)}";

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &Function, ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(handle: &JsValue);
}

/// Where the timer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    /// In a dedicated Worker made from a Blob URL.
    Worker,
    /// On the page's `setTimeout` (the Worker could not be created).
    Fallback,
}

#[derive(Debug)]
struct WorkerTimer {
    worker: Worker,
    url: String,
    /// Set by the worker's `error` listener: the timer switches to the fallback on next arm.
    failed: Rc<Cell<bool>>,
    _message: Listener,
    _error: Listener,
}

impl Drop for WorkerTimer {
    fn drop(&mut self) {
        self.worker.terminate();
        let _ = Url::revoke_object_url(&self.url);
    }
}

/// A one-shot timer, re-armed by [`WakeTimer::arm`]; dropping it cancels it and terminates the
/// worker.
pub struct WakeTimer {
    worker: Option<WorkerTimer>,
    /// The `setTimeout` callback (fallback mode), owned here and freed on drop.
    callback: Closure<dyn FnMut()>,
    on_fire: Rc<dyn Fn()>,
    fallback_handle: Option<JsValue>,
}

impl std::fmt::Debug for WakeTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeTimer")
            .field("worker", &self.worker)
            .field("fallback_handle", &self.fallback_handle)
            .finish_non_exhaustive()
    }
}

impl WakeTimer {
    /// A timer calling `on_fire` when an armed delay passes; in a Worker where possible.
    pub fn new(on_fire: impl Fn() + 'static) -> Self {
        let on_fire: Rc<dyn Fn()> = Rc::new(on_fire);
        let mut timer = Self::fallback_only(on_fire);
        timer.worker = timer.spawn_worker().ok();
        timer
    }

    /// A timer on `setTimeout` only.
    pub fn new_fallback(on_fire: impl Fn() + 'static) -> Self {
        Self::fallback_only(Rc::new(on_fire))
    }

    fn fallback_only(on_fire: Rc<dyn Fn()>) -> Self {
        let f = on_fire.clone();
        Self {
            worker: None,
            callback: Closure::<dyn FnMut()>::own_aborting(move || f()),
            on_fire,
            fallback_handle: None,
        }
    }

    fn spawn_worker(&self) -> Result<WorkerTimer, JsValue> {
        let parts = Array::of1(&JsValue::from_str(WORKER_JS));
        let bag = BlobPropertyBag::new();
        bag.set_type("text/javascript");
        let blob = Blob::new_with_str_sequence_and_options(&parts, &bag)?;
        let url = Url::create_object_url_with_blob(&blob)?;
        let worker = match Worker::new(&url) {
            Ok(w) => w,
            Err(e) => {
                let _ = Url::revoke_object_url(&url);
                return Err(e);
            }
        };
        let target: &EventTarget = worker.as_ref();
        let f = self.on_fire.clone();
        let message = Listener::new(target, "message", move |_| f());
        let failed = Rc::new(Cell::new(false));
        let (flag, f) = (failed.clone(), self.on_fire.clone());
        // A CSP violation can also show up asynchronously as an `error` event. Fire at once so
        // that the owner re-arms, which moves the timer to the fallback.
        let error = Listener::new(target, "error", move |_| {
            flag.set(true);
            f();
        });
        Ok(WorkerTimer {
            worker,
            url,
            failed,
            _message: message,
            _error: error,
        })
    }

    /// Where the timer runs now.
    #[must_use]
    pub fn mode(&self) -> TimerMode {
        match &self.worker {
            Some(w) if !w.failed.get() => TimerMode::Worker,
            _ => TimerMode::Fallback,
        }
    }

    /// Calls the callback once after `ms` milliseconds, replacing any earlier arming.
    pub fn arm(&mut self, ms: f64) {
        let ms = ms.max(0.0);
        if self.worker.as_ref().is_some_and(|w| w.failed.get()) {
            self.worker = None;
        }
        if let Some(w) = &self.worker
            && w.worker.post_message(&JsValue::from_f64(ms)).is_ok()
        {
            return;
        }
        self.worker = None;
        self.clear_fallback();
        self.fallback_handle = Some(set_timeout(self.callback.as_ref().unchecked_ref(), ms));
    }

    /// Cancels the pending call, if any.
    pub fn cancel(&mut self) {
        if let Some(w) = &self.worker {
            let _ = w.worker.post_message(&JsValue::from_f64(-1.0));
        }
        self.clear_fallback();
    }

    fn clear_fallback(&mut self) {
        if let Some(h) = self.fallback_handle.take() {
            clear_timeout(&h);
        }
    }
}

impl Drop for WakeTimer {
    fn drop(&mut self) {
        self.clear_fallback();
    }
}
