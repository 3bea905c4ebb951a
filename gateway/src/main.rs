//! The `switchboard` command line: `serve`, `demo`, `sim`, `bench`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use switchboard::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "MQTT broker-gateway and smart plug dashboard"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker-gateway.
    Serve(ServeArgs),
    /// Run the gateway with a simulated household of plugs.
    Demo {
        /// How many simulated plugs.
        #[arg(long, default_value_t = 12)]
        plugs: usize,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Simulate smart plugs against any MQTT broker.
    Sim(SimArgs),
    /// Load-test a broker (Switchboard, Mosquitto, or both side by side).
    Bench(switchboard::bench::BenchArgs),
}

#[derive(Debug, Args)]
struct SimArgs {
    /// The broker, `mqtt://HOST:PORT`.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    /// How many plugs.
    #[arg(long, default_value_t = 12)]
    count: usize,
    /// Firmware family: tasmota, shelly1, shelly2, z2m, ha or mixed.
    #[arg(long, default_value = "mixed")]
    profile: switchboard::sim::Profile,
    /// Seed for identifiers, readings, button presses and faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Telemetry period in seconds.
    #[arg(long, default_value_t = 10)]
    telemetry_period: u64,
    /// Mean seconds between physical button presses per plug (0: none).
    #[arg(long, default_value_t = 1200)]
    button_every: u64,
    /// Inject faults: devices going offline, flapping, slow confirmations.
    #[arg(long)]
    faults: bool,
    /// Mean seconds between faults per device, with --faults.
    #[arg(long, default_value_t = 300)]
    fault_every: u64,
    /// User name for every device.
    #[arg(long)]
    username: Option<String>,
    /// Password for every device.
    #[arg(long, env = "SWITCHBOARD_SIM_PASSWORD")]
    password: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML configuration file; command-line options override it.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// MQTT over TCP listener, `host:port` (repeatable; port 0 picks a free port).
    #[arg(long = "mqtt", value_name = "ADDR")]
    mqtt: Vec<SocketAddr>,
    /// HTTP listener for the dashboard and MQTT over WebSocket at `/mqtt` (repeatable).
    #[arg(long = "http", value_name = "ADDR")]
    http: Vec<SocketAddr>,
    /// Directory for durable state.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The built dashboard to serve (default: the workspace's `dist/`).
    #[arg(long, value_name = "DIR")]
    www: Option<PathBuf>,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if !self.mqtt.is_empty() {
            config.listeners.mqtt = self.mqtt;
        }
        if !self.http.is_empty() {
            config.listeners.http = self.http;
        }
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        if let Some(dir) = self.www {
            config.www = dir;
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = switchboard::shutdown::on_signals()?;
    match cli.command {
        Command::Serve(args) => {
            let config = args.into_config()?;
            switchboard::run(config, shutdown, |_| {}).await
        }
        Command::Demo { plugs, serve } => {
            let config = serve.into_config()?;
            tracing::info!(plugs, "demo mode");
            let sim_shutdown = shutdown.clone();
            switchboard::run(config, shutdown, move |bound| {
                switchboard::sim::start_demo(bound, plugs, &sim_shutdown);
            })
            .await
        }
        Command::Sim(args) => run_sim(args, shutdown).await,
        Command::Bench(args) => switchboard::bench::run(args, shutdown).await,
    }
}

async fn run_sim(
    args: SimArgs,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use std::time::Duration;
    use switchboard::sim;

    let mut broker = sim::BrokerOptions::parse(&args.broker).map_err(anyhow::Error::msg)?;
    broker.username = args.username;
    broker.password = args.password;
    let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    let config = sim::SimConfig {
        count: args.count,
        profile: args.profile,
        seed: args.seed,
        behaviour: sim::Behaviour {
            telemetry_period: Duration::from_secs(args.telemetry_period.max(1)),
            button_mean: secs(args.button_every),
            fault_mean: secs(args.fault_every).filter(|_| args.faults),
            epoch_secs: sim::unix_now(),
        },
    };
    let devices = sim::fleet(&config);
    tracing::info!(
        plugs = args.count,
        devices = devices.len(),
        profile = %args.profile,
        broker = %broker.addr,
        "simulating"
    );
    sim::run(devices, &broker, shutdown).await;
    Ok(())
}
