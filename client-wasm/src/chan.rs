//! Single-threaded channels between the driver and its callers: a one-shot reply per command
//! and the unbounded message and event streams.
//!
//! The browser runs the client on one thread, so `Rc<RefCell<_>>` does what `futures-channel`
//! does with atomics, in less wasm. A receiver learns that its sender is gone (the client was
//! ended or dropped): a one-shot then yields [`Canceled`], a stream ends. Waking never polls
//! synchronously (wasm-bindgen-futures queues a microtask), and the waker is called after the
//! borrow is released anyway.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_core::Stream;

#[derive(Debug)]
struct Shared<T> {
    items: VecDeque<T>,
    waker: Option<Waker>,
    /// The sender was dropped: no more items after those queued.
    sender_gone: bool,
    /// The receiver was dropped: items are discarded.
    receiver_gone: bool,
}

fn shared<T>() -> Rc<RefCell<Shared<T>>> {
    Rc::new(RefCell::new(Shared {
        items: VecDeque::new(),
        waker: None,
        sender_gone: false,
        receiver_gone: false,
    }))
}

fn push<T>(shared: &RefCell<Shared<T>>, item: T) -> Result<(), T> {
    let waker = {
        let mut s = shared.borrow_mut();
        if s.receiver_gone {
            return Err(item);
        }
        s.items.push_back(item);
        s.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
    Ok(())
}

fn close_sender<T>(shared: &RefCell<Shared<T>>) {
    let waker = {
        let mut s = shared.borrow_mut();
        s.sender_gone = true;
        s.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

fn poll<T>(shared: &RefCell<Shared<T>>, cx: &Context<'_>) -> Poll<Option<T>> {
    let mut s = shared.borrow_mut();
    if let Some(item) = s.items.pop_front() {
        return Poll::Ready(Some(item));
    }
    if s.sender_gone {
        return Poll::Ready(None);
    }
    s.waker = Some(cx.waker().clone());
    Poll::Pending
}

fn close_receiver<T>(shared: &RefCell<Shared<T>>) {
    let mut s = shared.borrow_mut();
    s.receiver_gone = true;
    s.items.clear();
}

/// The sending half of an unbounded stream.
#[derive(Debug)]
pub struct Sender<T>(Rc<RefCell<Shared<T>>>);

/// The receiving half of an unbounded stream: a [`Stream`] that ends when the client ends.
#[derive(Debug)]
pub struct Receiver<T>(Rc<RefCell<Shared<T>>>);

/// An unbounded single-threaded stream.
#[must_use]
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    let s = shared();
    (Sender(s.clone()), Receiver(s))
}

impl<T> Sender<T> {
    /// Queues `item`.
    ///
    /// # Errors
    /// Gives `item` back when the receiver was dropped.
    pub fn send(&self, item: T) -> Result<(), T> {
        push(&self.0, item)
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        close_sender(&self.0);
    }
}

impl<T> Stream for Receiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        poll(&self.0, cx)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        close_receiver(&self.0);
    }
}

/// The sender was dropped without answering (the client ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canceled;

/// The sending half of a one-shot reply.
#[derive(Debug)]
pub struct ReplySender<T>(Rc<RefCell<Shared<T>>>);

/// A one-shot reply: a [`Future`] of the answer, or [`Canceled`].
#[derive(Debug)]
pub struct Reply<T>(Rc<RefCell<Shared<T>>>);

/// A one-shot reply channel.
#[must_use]
pub fn reply<T>() -> (ReplySender<T>, Reply<T>) {
    let s = shared();
    (ReplySender(s.clone()), Reply(s))
}

impl<T> ReplySender<T> {
    /// Answers.
    ///
    /// # Errors
    /// Gives `value` back when nobody waits any more.
    pub fn send(self, value: T) -> Result<(), T> {
        push(&self.0, value)
    }
}

impl<T> Drop for ReplySender<T> {
    fn drop(&mut self) {
        close_sender(&self.0);
    }
}

impl<T> Future for Reply<T> {
    type Output = Result<T, Canceled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        poll(&self.0, cx).map(|v| v.ok_or(Canceled))
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        close_receiver(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn context() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn stream_delivers_in_order_wakes_and_ends() {
        let (count, waker) = context();
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = unbounded();
        assert_eq!(Pin::new(&mut rx).poll_next(&mut cx), Poll::Pending);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(Pin::new(&mut rx).poll_next(&mut cx), Poll::Ready(Some(1)));
        drop(tx);
        assert_eq!(Pin::new(&mut rx).poll_next(&mut cx), Poll::Ready(Some(2)));
        assert_eq!(Pin::new(&mut rx).poll_next(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn send_after_receiver_dropped_gives_item_back() {
        let (tx, rx) = unbounded();
        drop(rx);
        assert_eq!(tx.send(7), Err(7));
    }

    #[test]
    fn reply_answers_or_cancels() {
        let (count, waker) = context();
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = reply();
        assert_eq!(Pin::new(&mut rx).poll(&mut cx), Poll::Pending);
        tx.send("ok").unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(Pin::new(&mut rx).poll(&mut cx), Poll::Ready(Ok("ok")));

        let (tx, mut rx) = reply::<()>();
        assert_eq!(Pin::new(&mut rx).poll(&mut cx), Poll::Pending);
        drop(tx);
        assert_eq!(Pin::new(&mut rx).poll(&mut cx), Poll::Ready(Err(Canceled)));
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }
}
