//! The accept loop every listener shares (MQTT, MQTT over TLS, HTTP and HTTPS).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// First pause after a failed `accept`; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accepts connections on `listener` until `shutdown`, handing each to `serve` with
/// `TCP_NODELAY` set (`serve` spawns; it must not wait). A failed accept (for example out of
/// file descriptors) is logged with `what` and retried after a pause that doubles from 10 ms
/// to 1 s, so the loop never spins; a success resets it.
pub async fn accept_until(
    listener: &TcpListener,
    what: &str,
    shutdown: &CancellationToken,
    mut serve: impl FnMut(TcpStream, SocketAddr),
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = BACKOFF_MIN;
                let _ = stream.set_nodelay(true);
                serve(stream, peer);
            }
            Err(err) => {
                tracing::warn!("{what} accept failed: {err}; retrying in {backoff:?}");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_each_connection_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                accept_until(&listener, "test", &shutdown, |stream, peer| {
                    assert!(stream.nodelay().unwrap());
                    tx.send(peer).unwrap();
                })
                .await;
            })
        };
        let a = TcpStream::connect(addr).await.unwrap();
        let b = TcpStream::connect(addr).await.unwrap();
        let mut seen = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap()];
        seen.sort();
        let mut want = vec![a.local_addr().unwrap(), b.local_addr().unwrap()];
        want.sort();
        assert_eq!(seen, want);
        shutdown.cancel();
        task.await.unwrap();
    }
}
