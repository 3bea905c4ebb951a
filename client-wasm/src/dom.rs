//! Event listeners and the WebSocket, owning their closures the way gloo-net does: the
//! `Closure` lives in the struct, and `Drop` removes the listener before the closure is freed.
//! Nothing here calls `Closure::forget`, so a client that reconnects a thousand times holds the
//! closures of one socket, not a thousand.

use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, Event, EventTarget, MessageEvent, WebSocket};

/// An event listener removed from its target when dropped.
#[derive(Debug)]
pub struct Listener {
    target: EventTarget,
    kind: &'static str,
    callback: Closure<dyn FnMut(Event)>,
}

impl Listener {
    /// Adds `callback` as a listener for `kind` events on `target`.
    pub fn new(
        target: &EventTarget,
        kind: &'static str,
        callback: impl FnMut(Event) + 'static,
    ) -> Self {
        let callback = Closure::<dyn FnMut(Event)>::own_aborting(callback);
        // Adding a listener only throws for a non-function callback, which this is not.
        let _ = target.add_event_listener_with_callback(kind, callback.as_ref().unchecked_ref());
        Self {
            target: target.clone(),
            kind,
            callback,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self
            .target
            .remove_event_listener_with_callback(self.kind, self.callback.as_ref().unchecked_ref());
    }
}

/// What a [`Socket`] reports.
#[derive(Debug)]
pub enum SocketEvent {
    /// The WebSocket handshake completed.
    Open,
    /// A binary frame arrived.
    Data(Uint8Array),
    /// The socket closed or failed (an `error` is always followed by `close`; both report
    /// this, the driver ignores the second).
    Closed,
}

/// A WebSocket speaking the `mqtt` subprotocol with binary frames as `ArrayBuffer`. Dropping it
/// removes its listeners and closes the connection.
#[derive(Debug)]
pub struct Socket {
    ws: WebSocket,
    _listeners: [Listener; 4],
}

impl Socket {
    /// Opens a WebSocket to `url`; `on_event` gets every [`SocketEvent`].
    ///
    /// # Errors
    /// The exception of the `WebSocket` constructor (a malformed URL, a blocked port).
    pub fn open(url: &str, on_event: impl Fn(SocketEvent) + 'static) -> Result<Self, JsValue> {
        let ws = WebSocket::new_with_str(url, "mqtt")?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let on_event = std::rc::Rc::new(on_event);
        let target: &EventTarget = ws.as_ref();
        let f = on_event.clone();
        let open = Listener::new(target, "open", move |_| f(SocketEvent::Open));
        let f = on_event.clone();
        let message = Listener::new(target, "message", move |e| {
            if let Some(buf) = e
                .dyn_ref::<MessageEvent>()
                .and_then(|m| m.data().dyn_into::<ArrayBuffer>().ok())
            {
                f(SocketEvent::Data(Uint8Array::new(&buf)));
            }
        });
        let f = on_event.clone();
        let error = Listener::new(target, "error", move |_| f(SocketEvent::Closed));
        let close = Listener::new(target, "close", move |_| on_event(SocketEvent::Closed));
        Ok(Self {
            ws,
            _listeners: [open, message, error, close],
        })
    }

    /// Sends one binary frame. A closing socket drops it, as browsers do; the driver finds
    /// out from the `close` event.
    pub fn send(&self, bytes: &[u8]) {
        let _ = self.ws.send_with_u8_array(bytes);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // The listeners are removed right after this (field drop), so no event reaches a
        // dropped driver; close() on a closed socket does nothing.
        let _ = self.ws.close();
    }
}
