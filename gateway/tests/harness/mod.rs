//! The one way tests start an in-process gateway: `switchboard::run_with` on a task, waiting
//! (bounded) for its listeners, and stopping it by its shutdown token. Each test binary builds
//! its own [`Config`] (usually from [`loopback`]) and keeps what it needs of [`Bound`].

use std::path::Path;
use std::time::Duration;

use switchboard::config::Config;
use switchboard::{Bound, RunOptions};
use tokio_util::sync::CancellationToken;

/// Longest wait for the listeners to be bound, and for a stop.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a stop (connections close, the store flushes).
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A configuration with MQTT and HTTP on ephemeral loopback ports, data in `data_dir`, the
/// dashboard served from `data_dir` too (tests that need files set `www`), no `$SYS` traffic,
/// and schedules in UTC.
pub(crate) fn loopback(data_dir: &Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_owned(),
        www: data_dir.to_owned(),
        ..Config::default()
    };
    config.listeners.mqtt = vec!["127.0.0.1:0".parse().unwrap()];
    config.listeners.http = vec!["127.0.0.1:0".parse().unwrap()];
    config.broker.sys_interval = 0;
    // Schedules in UTC whatever the machine's zone, so expected times are the same everywhere.
    config.schedules.time_zone =
        Some(switchboard::schedule::ZoneName::try_from("UTC".to_owned()).unwrap());
    config
}

/// A running in-process gateway.
#[derive(Debug)]
pub(crate) struct Running {
    /// Where it listens.
    pub(crate) bound: Bound,
    /// Cancelled by [`Running::stop`]; tests may cancel it themselves.
    pub(crate) shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Starts `config` with `options` (a virtual clock, ...) and waits until every listener is
    /// bound.
    pub(crate) async fn start(config: Config, options: RunOptions) -> Self {
        let shutdown = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(switchboard::run_with(
            config,
            options,
            shutdown.clone(),
            move |bound| {
                let _ = tx.send(bound.clone());
            },
        ));
        let bound = match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(bound)) => bound,
            Ok(Err(_)) => panic!(
                "the gateway did not start: {:?}",
                task.await.expect("gateway task")
            ),
            Err(_) => panic!("the gateway did not bind its listeners in {START_TIMEOUT:?}"),
        };
        Self {
            bound,
            shutdown,
            task,
        }
    }

    /// Cancels the shutdown token and waits for `run` to return `Ok`.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(STOP_TIMEOUT, self.task)
            .await
            .expect("gateway stopped in time")
            .expect("gateway task")
            .expect("run ok");
    }
}
