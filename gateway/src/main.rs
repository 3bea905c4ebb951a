//! The `switchboard` command line: `serve`, `demo`.

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
            switchboard::run(config, shutdown, |bound| {
                for addr in &bound.http {
                    println!("Dashboard: http://{addr}/");
                }
            })
            .await
        }
    }
}
