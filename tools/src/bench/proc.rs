//! The brokers under test as child processes, and what `/proc` says about them.
//!
//! [`BrokerProcess::start`] launches Switchboard (`switchboard serve` on port 0, addresses read
//! from its log) or Mosquitto (a generated configuration on spare loopback ports) and stops it on
//! drop. [`ProcStats`] reads CPU time (utime + stime from `/proc/<pid>/stat`, all threads) and
//! memory (`VmRSS`, `VmHWM` from `/proc/<pid>/status`). [`raise_fd_limit`] lifts the soft
//! `RLIMIT_NOFILE` to the hard limit so 10,000 connections fit (the brokers inherit it).

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::BrokerKind;

/// How long a broker has to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a broker has to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Raises the soft open-file limit to the hard limit and returns the new soft limit.
///
/// # Errors
/// When the limit cannot be read or set.
pub fn raise_fd_limit() -> anyhow::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit).context("cannot raise RLIMIT_NOFILE")?;
    }
    Ok(limit.current.unwrap_or(u64::MAX))
}

/// A snapshot of one process's resource use.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// User plus system CPU time of all threads so far, in seconds.
    pub cpu_s: f64,
    /// Resident set size now, in bytes.
    pub rss: u64,
    /// Peak resident set size (`VmHWM`), in bytes.
    pub hwm: u64,
}

impl ProcStats {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
    ///
    /// # Errors
    /// When the process is gone or the files cannot be parsed.
    pub fn read(pid: u32) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
        let cpu_s =
            parse_cpu_seconds(&stat).with_context(|| format!("cannot parse /proc/{pid}/stat"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status"))?;
        Ok(Self {
            cpu_s,
            rss: status_kb(&status, "VmRSS:").unwrap_or(0) * 1024,
            hwm: status_kb(&status, "VmHWM:").unwrap_or(0) * 1024,
        })
    }
}

/// utime + stime (fields 14 and 15, after the parenthesised command name) in seconds.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    Some((utime + stime) as f64 / ticks as f64)
}

/// A `Vm...:   1234 kB` line of `/proc/<pid>/status`, in kB.
fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A broker started by the benchmark; killed (and reaped) on drop.
#[derive(Debug)]
pub struct BrokerProcess {
    /// Which broker.
    pub kind: BrokerKind,
    /// MQTT over TCP address.
    pub mqtt: SocketAddr,
    /// MQTT over WebSocket address (`ws://ADDR/mqtt`).
    pub ws: SocketAddr,
    child: Child,
    /// Scratch directory (configuration, data), removed on drop.
    dir: PathBuf,
}

/// What the benchmark passes to a broker it starts.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// The `switchboard` executable.
    pub switchboard_bin: PathBuf,
    /// The `mosquitto` executable.
    pub mosquitto_bin: PathBuf,
    /// The broker's own persistence: `None` off (Mosquitto `persistence false`, Switchboard
    /// `[store] durability = "none"`), else Mosquitto `persistence true` and Switchboard this
    /// durability.
    pub persistence: Option<super::Durability>,
    /// Add `set_tcp_nodelay true` to Mosquitto's configuration (Switchboard always sets
    /// `TCP_NODELAY`; Mosquitto's default leaves Nagle's algorithm on).
    pub mosquitto_nodelay: bool,
}

impl BrokerProcess {
    /// Starts `kind` on loopback and waits until it accepts connections.
    ///
    /// # Errors
    /// When the executable cannot be started or does not listen within 10 s.
    pub fn start(kind: BrokerKind, options: &BrokerOptions) -> anyhow::Result<Self> {
        let dir = scratch_dir(kind)?;
        let result = match kind {
            BrokerKind::Switchboard => start_switchboard(&dir, options),
            BrokerKind::Mosquitto => start_mosquitto(&dir, options),
        };
        match result {
            Ok((child, mqtt, ws)) => Ok(Self {
                kind,
                mqtt,
                ws,
                child,
                dir,
            }),
            Err(err) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(err)
            }
        }
    }

    /// The broker's process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The broker's resource use now.
    ///
    /// # Errors
    /// When the process has exited.
    pub fn stats(&mut self) -> anyhow::Result<ProcStats> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{} exited: {status}", self.kind);
        }
        ProcStats::read(self.pid())
    }
}

impl Drop for BrokerProcess {
    /// SIGTERM first, so the broker shuts down cleanly (and a profiler wrapping it writes its
    /// output), then SIGKILL after [`STOP_TIMEOUT`].
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch_dir(kind: BrokerKind) -> anyhow::Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "switchboard-bench-{}-{kind}-{n}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// The last lines a broker wrote to stderr, for error messages.
type Tail = Arc<Mutex<Vec<String>>>;

/// Drains `child`'s stderr on a thread (a full pipe would stall the broker), keeping the last
/// lines, and reports the `listening mqtt=` / `listening http=` addresses Switchboard logs.
fn drain_stderr(child: &mut Child) -> (Tail, std::sync::mpsc::Receiver<(bool, SocketAddr)>) {
    let tail: Tail = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(stderr) = child.stderr.take() {
        let tail = Arc::clone(&tail);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                for (key, is_mqtt) in [("listening mqtt=", true), ("listening http=", false)] {
                    if let Some(at) = line.find(key) {
                        let addr = line[at + key.len()..].split_ascii_whitespace().next();
                        if let Some(addr) = addr.and_then(|a| a.parse().ok()) {
                            let _ = tx.send((is_mqtt, addr));
                        }
                    }
                }
                let mut tail = tail
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if tail.len() == 20 {
                    tail.remove(0);
                }
                tail.push(line);
            }
        });
    }
    (tail, rx)
}

fn tail_text(tail: &Tail) -> String {
    tail.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .join("\n")
}

fn start_switchboard(
    dir: &Path,
    options: &BrokerOptions,
) -> anyhow::Result<(Child, SocketAddr, SocketAddr)> {
    // The same queue and in-flight limits as the Mosquitto configuration, and room for the
    // idle-connection scenario: every client comes from 127.0.0.1, so the per-address limit
    // (Mosquitto has none) is lifted.
    let config = dir.join("switchboard.toml");
    let durability = options.persistence.map_or("none", super::Durability::name);
    std::fs::write(
        &config,
        format!(
            "[broker]\nmax_connections = 100000\nmax_queued_messages = 100000\n\
             max_queued_bytes = 1073741824\nmax_inflight = 100\n\n\
             [store]\ndurability = \"{durability}\"\n\n\
             [limits]\nmax_connections_per_address = 0\nmax_handshakes = 100000\n"
        ),
    )?;
    let mut child = Command::new(&options.switchboard_bin)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .args([
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .env("SWITCHBOARD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", options.switchboard_bin.display()))?;
    let (tail, rx) = drain_stderr(&mut child);
    let deadline = Instant::now() + START_TIMEOUT;
    let (mut mqtt, mut http) = (None, None);
    loop {
        if let (Some(mqtt), Some(http)) = (mqtt, http) {
            return Ok((child, mqtt, http));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, addr)) => mqtt = mqtt.or(Some(addr)),
            Ok((false, addr)) => http = http.or(Some(addr)),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "switchboard did not log its listening addresses within {START_TIMEOUT:?}; \
                     its last output:\n{}",
                    tail_text(&tail)
                );
            }
        }
    }
}

/// A free loopback port (bound, read, released: another process could take it in between, which
/// only makes the broker's start fail loudly).
fn spare_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a spare port")?;
    Ok(listener.local_addr()?.port())
}

/// Mosquitto's configuration for the benchmark (`ws_port` carries MQTT over WebSocket).
#[must_use]
pub fn mosquitto_config(
    port: u16,
    ws_port: u16,
    persistence_dir: Option<&Path>,
    nodelay: bool,
) -> String {
    let mut config = format!(
        "listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         max_queued_messages 100000\n\
         max_inflight_messages 100\n\
         listener {ws_port} 127.0.0.1\n\
         protocol websockets\n\
         user root\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n"
    );
    if nodelay {
        config.push_str("set_tcp_nodelay true\n");
    }
    if let Some(dir) = persistence_dir {
        config.push_str(&format!(
            "persistence true\npersistence_location {}/\n",
            dir.display()
        ));
    }
    config
}

fn start_mosquitto(
    dir: &Path,
    options: &BrokerOptions,
) -> anyhow::Result<(Child, SocketAddr, SocketAddr)> {
    let port = spare_port()?;
    let mut ws_port = spare_port()?;
    while ws_port == port {
        ws_port = spare_port()?;
    }
    let config = dir.join("mosquitto.conf");
    let persistence = options.persistence.map(|_| dir);
    std::fs::write(
        &config,
        mosquitto_config(port, ws_port, persistence, options.mosquitto_nodelay),
    )?;
    let mut child = Command::new(&options.mosquitto_bin)
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", options.mosquitto_bin.display()))?;
    let (tail, _rx) = drain_stderr(&mut child);
    let mqtt = SocketAddr::from(([127, 0, 0, 1], port));
    let ws = SocketAddr::from(([127, 0, 0, 1], ws_port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "mosquitto exited at start ({status}):\n{}",
                tail_text(&tail)
            );
        }
        if TcpStream::connect(mqtt).is_ok() && TcpStream::connect(ws).is_ok() {
            return Ok((child, mqtt, ws));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "mosquitto did not listen on {mqtt} and {ws} within {START_TIMEOUT:?}:\n{}",
                tail_text(&tail)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_spaces_in_the_name() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 3 0";
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        assert_eq!(parse_cpu_seconds(stat), Some(400.0 / ticks));
    }

    #[test]
    fn parses_status_kb() {
        let status = "Name:\tx\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(status_kb(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kb(status, "VmHWM:"), Some(2048));
        assert_eq!(status_kb(status, "VmSwap:"), None);
    }

    #[test]
    fn own_stats_are_readable() {
        let stats = ProcStats::read(std::process::id()).unwrap();
        assert!(stats.rss > 0 && stats.hwm >= stats.rss);
    }

    #[test]
    fn mosquitto_config_has_the_required_lines() {
        let config = mosquitto_config(1883, 8080, None, false);
        for line in [
            "listener 1883 127.0.0.1",
            "allow_anonymous true",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "listener 8080 127.0.0.1",
            "protocol websockets",
        ] {
            assert!(config.lines().any(|l| l == line), "{line}");
        }
        assert!(!config.contains("persistence true"));
    }
}
