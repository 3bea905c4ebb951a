//! Closures are owned and released: listeners are removed on drop (gloo-net style), a dropped
//! socket reports nothing, and a client that cannot connect cleans up.
#![cfg(target_arch = "wasm32")]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures_channel::oneshot;
use switchboard_client::dom::{Listener, Socket, SocketEvent};
use switchboard_client::{Client, Error, Options};
use wasm_bindgen_test::*;
use web_sys::{Event, EventTarget};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn listener_is_removed_on_drop() {
    let target = EventTarget::new().unwrap();
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    let listener = Listener::new(&target, "ping", move |_| c.set(c.get() + 1));
    target.dispatch_event(&Event::new("ping").unwrap()).unwrap();
    assert_eq!(count.get(), 1);
    drop(listener);
    // A listener still registered would call a freed closure and throw.
    target.dispatch_event(&Event::new("ping").unwrap()).unwrap();
    assert_eq!(count.get(), 1);
}

/// A URL nothing listens on: the connection is refused at once.
const DEAD: &str = "ws://127.0.0.1:9/mqtt";

#[wasm_bindgen_test]
async fn dropped_socket_reports_nothing() {
    let events = Rc::new(Cell::new(0));
    let e = events.clone();
    let dropped = Socket::open(DEAD, move |_| e.set(e.get() + 1)).unwrap();
    drop(dropped);
    // A second socket to the same dead URL: once it has reported its close, the first one
    // would have too, had its listeners not been removed.
    let (tx, rx) = oneshot::channel();
    let tx = RefCell::new(Some(tx));
    let _probe = Socket::open(DEAD, move |ev| {
        if matches!(ev, SocketEvent::Closed)
            && let Some(tx) = tx.borrow_mut().take()
        {
            let _ = tx.send(());
        }
    })
    .unwrap();
    rx.await.unwrap();
    assert_eq!(events.get(), 0);
}

#[wasm_bindgen_test]
async fn connect_to_dead_brokers_fails_after_one_round() {
    let mut options = Options::with_urls(vec![DEAD.into(), "ws://127.0.0.1:7/mqtt".into()]);
    options.backoff_base = std::time::Duration::from_secs(60);
    assert_eq!(
        Client::connect(options).await.unwrap_err(),
        Error::Unreachable
    );
    let err = Client::connect(Options::with_urls(Vec::new()))
        .await
        .unwrap_err();
    assert_eq!(err, Error::InvalidOptions("no broker URL"));
}

#[wasm_bindgen_test]
async fn malformed_url_is_a_failed_attempt() {
    let options = Options::new("not a url");
    assert_eq!(
        Client::connect(options).await.unwrap_err(),
        Error::Unreachable
    );
}
