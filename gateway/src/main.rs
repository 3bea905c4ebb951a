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
    Bench(switchboard_tools::bench::BenchArgs),
    /// Check a configuration file and report every problem with its line (exit 1 if any).
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Manage HTTP API keys.
    ApiKey {
        #[command(subcommand)]
        action: ApiKeyAction,
    },
    /// Generate a local CA and a server certificate for TLS on the LAN (or a client
    /// certificate with --client).
    Cert(switchboard::cert::CertArgs),
    /// Add or delete a SCRAM-SHA-256 user (MQTT 5 enhanced authentication).
    PasswdScram(switchboard::scram::PasswdScramArgs),
    /// Manage a password file: `passwd FILE add|remove|list [USER]` (argon2id; Mosquitto
    /// password files are read too).
    Passwd(switchboard::cli::PasswdArgs),
    /// Create, list and revoke scoped tokens for the dashboard and widgets.
    Token(switchboard::cli::TokenArgs),
}

#[derive(Debug, Subcommand)]
enum ApiKeyAction {
    /// Print a new random API key and the `[api] keys` entry (its SHA-256) to configure.
    Create,
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
    profile: switchboard_tools::sim::Profile,
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
    /// Log format, `text` or `json` (overrides `[log] format`).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<switchboard::observe::LogFormat>,
    /// Accept clients without credentials from any address (default: loopback only, and only
    /// while no users are configured).
    #[arg(long)]
    allow_anonymous: bool,
    /// Password file (`switchboard passwd`, or a Mosquitto password file); reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// ACL file in Mosquitto's format; reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    acl_file: Option<PathBuf>,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<Config> {
        // The file, then `SWITCHBOARD_<TABLE>__<KEY>` overrides, then the flags below.
        let mut config = Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
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
        if self.allow_anonymous {
            config.security.allow_anonymous = true;
        }
        if let Some(path) = self.password_file {
            config.security.password_file = Some(path);
        }
        if let Some(path) = self.acl_file {
            config.security.acl_file = Some(path);
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::CheckConfig { file } => return check_config(file),
        Command::ApiKey {
            action: ApiKeyAction::Create,
        } => return create_api_key(),
        _ => {}
    }
    // serve and demo log as configured; a bad configuration is reported before anything runs.
    let log = match &cli.command {
        Command::Serve(args) | Command::Demo { serve: args, .. } => match args.log_config() {
            Ok(log) => log,
            Err(err) => {
                eprintln!("error: {err:#}");
                return ExitCode::FAILURE;
            }
        },
        _ => switchboard::observe::LogConfig::default(),
    };
    if let Err(err) = switchboard::observe::init_logging(&log) {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
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
                switchboard_tools::sim::start_demo(&bound.http, &bound.mqtt, plugs, &sim_shutdown);
            })
            .await
        }
        Command::Sim(args) => run_sim(args, shutdown).await,
        Command::Bench(args) => switchboard_tools::bench::run(args, shutdown).await,
        // Handled in `main` before the runtime starts.
        Command::CheckConfig { .. } | Command::ApiKey { .. } => Ok(()),
        Command::Cert(args) => switchboard::cert::run(&args),
        Command::PasswdScram(args) => switchboard::scram::run_passwd(&args),
        Command::Passwd(args) => switchboard::cli::run_passwd(&args),
        Command::Token(args) => switchboard::cli::run_token(&args),
    }
}

impl ServeArgs {
    /// The `[log]` settings the gateway will run with.
    fn log_config(&self) -> anyhow::Result<switchboard::observe::LogConfig> {
        let mut log = Config::load(self.config.as_deref(), std::env::vars())?.log;
        if let Some(format) = self.log_format {
            log.format = format;
        }
        Ok(log)
    }
}

/// `switchboard check-config FILE`: every problem on stderr with its line, exit 1; or "ok".
fn check_config(file: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("error: cannot read {}: {err}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let problems = switchboard::config::check(&text);
    if problems.is_empty() {
        println!("ok");
        return ExitCode::SUCCESS;
    }
    for problem in &problems {
        eprintln!("{}: {problem}", file.display());
    }
    eprintln!("{} problem(s) found", problems.len());
    ExitCode::FAILURE
}

/// `switchboard api-key create`.
fn create_api_key() -> ExitCode {
    match switchboard::api::create_key() {
        Ok((key, hash)) => {
            println!("API key (give it to the client; only its hash is configured):\n  {key}");
            println!(
                "Add its hash to the configuration:\n  [api]\n  keys = [\"{}\"]",
                hash.to_hex()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_sim(
    args: SimArgs,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use std::time::Duration;
    use switchboard_tools::sim;

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
