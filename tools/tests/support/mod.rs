//! Helpers shared by the simulator's tests against Mosquitto (`tools/tests/sim.rs`) and
//! against Switchboard's own broker (`gateway/tests/sim.rs`, which includes this file by path):
//! an observing client, a running simulation, and a small fleet.

use std::time::Duration;

use serde_json::Value;
use switchboard_tools::mqtt_client::{
    Client, ClientOptions, Event, Events, Message, ProtocolVersion, QoS, SubscriptionOptions,
};
use switchboard_tools::sim::{self, Behaviour, BrokerOptions, Profile, SimConfig, SimDevice};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long any expected event may take.
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// An MQTT 5 client subscribed to `#` with Retain As Published, remembering what it saw.
pub(crate) struct Observer {
    _client: Client,
    events: Events,
    pub(crate) seen: Vec<Message>,
}

impl Observer {
    pub(crate) async fn start(addr: &str, protocol: ProtocolVersion) -> Self {
        let mut options = ClientOptions::new(addr, format!("observer-{}", free_port()));
        options.protocol = protocol;
        let (client, events) = Client::connect(options).await.expect("observer connects");
        let opts = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            retain_as_published: protocol == ProtocolVersion::V5,
            ..SubscriptionOptions::default()
        };
        client
            .subscribe_with(&[("#", opts)])
            .await
            .expect("observer subscribes");
        Self {
            _client: client,
            events,
            seen: Vec::new(),
        }
    }

    /// The first message (already seen or arriving within [`WAIT`]) matching `pred`.
    pub(crate) async fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&Message) -> bool,
    ) -> Message {
        if let Some(m) = self.seen.iter().find(|m| pred(m)) {
            return m.clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out waiting for {what}; saw {:#?}", self.topics())
                })
                .expect("observer running");
            if let Event::Message(m) = event {
                self.seen.push(m.clone());
                if pred(&m) {
                    return m;
                }
            }
        }
    }

    pub(crate) fn topics(&self) -> Vec<String> {
        self.seen.iter().map(|m| m.topic.to_string()).collect()
    }
}

pub(crate) fn text(m: &Message) -> &str {
    std::str::from_utf8(&m.payload).expect("utf-8 payload")
}

pub(crate) fn json(m: &Message) -> Value {
    serde_json::from_slice(&m.payload).expect("JSON payload")
}

pub(crate) fn is(topic: &str, payload: &str) -> impl Fn(&Message) -> bool {
    let (topic, payload) = (topic.to_owned(), payload.to_owned());
    move |m: &Message| *m.topic == *topic && text(m) == payload
}

/// A running simulation.
pub(crate) struct Running {
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Running {
    pub(crate) fn start(devices: Vec<SimDevice>, addr: &str) -> Self {
        let broker = BrokerOptions::parse(&format!("mqtt://{addr}")).expect("url");
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        sim::spawn(devices, &broker, &tracker, &shutdown);
        tracker.close();
        Self { shutdown, tracker }
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.tracker.wait())
            .await
            .expect("simulated devices stop");
    }
}

pub(crate) fn fleet(profile: Profile, count: usize) -> Vec<SimDevice> {
    sim::fleet(&SimConfig {
        count,
        profile,
        seed: 42,
        behaviour: Behaviour {
            telemetry_period: Duration::from_secs(1),
            button_mean: None,
            fault_mean: None,
            ..Behaviour::default()
        },
    })
}
