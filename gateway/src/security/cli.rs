//! The `switchboard passwd` and `switchboard token` subcommands.

use std::io::BufRead as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::passwd::{PasswordFile, PasswordHash};
use super::token::{self, Claims};

/// `switchboard passwd FILE add|remove|list [USER]`.
#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// The password file (created by `add` when missing).
    pub file: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: PasswdAction,
}

/// A password file operation.
#[derive(Debug, Subcommand)]
pub enum PasswdAction {
    /// Add a user or change their password (argon2id). The password comes from `--password`
    /// or the first line of standard input.
    Add {
        /// User name.
        user: String,
        /// The password (else read from standard input).
        #[arg(long, env = "SWITCHBOARD_PASSWORD")]
        password: Option<String>,
    },
    /// Remove a user.
    Remove {
        /// User name.
        user: String,
    },
    /// List the users.
    List,
}

/// Runs `switchboard passwd`.
///
/// # Errors
/// The file cannot be read, parsed or written; an empty password; removing an unknown user.
pub fn run_passwd(args: &PasswdArgs) -> anyhow::Result<()> {
    let mut file = PasswordFile::load(&args.file)
        .with_context(|| format!("password file {}", args.file.display()))?;
    match &args.action {
        PasswdAction::List => {
            for user in file.users() {
                println!("{user}");
            }
            return Ok(());
        }
        PasswdAction::Add { user, password } => {
            if user.is_empty() || user.contains(':') {
                anyhow::bail!("a user name must be non-empty and without `:`");
            }
            let password = match password {
                Some(p) => p.clone(),
                None => {
                    eprintln!("password for {user}:");
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            if password.is_empty() {
                anyhow::bail!("empty password");
            }
            file.set(
                user,
                PasswordHash::argon2(password.as_bytes()).map_err(anyhow::Error::msg)?,
            );
        }
        PasswdAction::Remove { user } => {
            if !file.remove(user) {
                anyhow::bail!("no user `{user}` in {}", args.file.display());
            }
        }
    }
    file.save(&args.file)
        .with_context(|| format!("cannot write {}", args.file.display()))?;
    eprintln!(
        "{} updated; send SIGHUP to a running switchboard to apply it",
        args.file.display()
    );
    Ok(())
}

/// `switchboard token create|list|revoke`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The gateway's data directory (holds `token.key`, `tokens.list`, `tokens.revoked`).
    #[arg(long, value_name = "DIR", env = "SWITCHBOARD_DATA_DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: TokenAction,
}

/// A token operation.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token and print it with an embed snippet.
    Create {
        /// A name for the token (`kitchen-widget`).
        #[arg(long)]
        name: String,
        /// Topic filters it may publish to, comma-separated.
        #[arg(long, value_delimiter = ',')]
        publish: Vec<String>,
        /// Topic filters it may subscribe to, comma-separated.
        #[arg(long, value_delimiter = ',')]
        subscribe: Vec<String>,
        /// Lifetime: `30d`, `12h`, `15m`, `90s` (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
        /// Only valid on WebSockets opened by this browser origin (`https://example.org`).
        #[arg(long)]
        origin: Option<String>,
        /// The gateway's public WebSocket URL, for the snippet.
        #[arg(long, default_value = "wss://HOST/mqtt")]
        gateway: String,
        /// The device the widget controls, for the snippet.
        #[arg(long, default_value = "DEVICE")]
        device: String,
    },
    /// List issued tokens (names, ids, scopes, expiry, revocation).
    List,
    /// Revoke a token by name or id (effective at the next connect after SIGHUP or restart).
    Revoke {
        /// Token name or id.
        what: String,
    },
}

/// Runs `switchboard token`.
///
/// # Errors
/// Invalid filters or durations, or the data directory cannot be read or written.
pub fn run_token(args: &TokenArgs) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    match &args.action {
        TokenAction::Create {
            name,
            publish,
            subscribe,
            expires,
            origin,
            gateway,
            device,
        } => {
            for filter in publish.iter().chain(subscribe) {
                switchboard_mqtt::topic::validate_topic_filter(filter)
                    .map_err(|_| anyhow::anyhow!("invalid topic filter `{filter}`"))?;
            }
            let now = token::unix_now();
            let expires = expires
                .as_deref()
                .map(token::parse_duration)
                .transpose()
                .map_err(anyhow::Error::msg)?
                .map(|secs| now.saturating_add(secs));
            let claims = Claims {
                id: String::new(),
                name: name.clone(),
                publish: publish.clone(),
                subscribe: subscribe.clone(),
                expires,
                origin: origin.clone(),
                issued: now,
            };
            let (claims, token) = token::create(dir, claims)
                .with_context(|| format!("cannot create a token in {}", dir.display()))?;
            println!("{token}");
            eprintln!("id: {}", claims.id);
            eprintln!("embed:");
            eprintln!(
                "<switchboard-switch gateway=\"{gateway}\" device=\"{device}\" token=\"{token}\"></switchboard-switch>"
            );
        }
        TokenAction::List => {
            let revoked: std::collections::HashSet<String> =
                std::fs::read_to_string(token::revoked_path(dir))
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned)
                    .collect();
            let now = token::unix_now();
            for c in token::list(dir)? {
                let state = if revoked.contains(&c.id) {
                    "revoked"
                } else if c.expired_at(now) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{state}\tpublish={}\tsubscribe={}\texpires={}\torigin={}",
                    c.id,
                    c.name,
                    c.publish.join(","),
                    c.subscribe.join(","),
                    c.expires
                        .map_or_else(|| "never".to_owned(), |e| e.to_string()),
                    c.origin.as_deref().unwrap_or("any"),
                );
            }
        }
        TokenAction::Revoke { what } => {
            let ids = token::revoke(dir, what)?;
            eprintln!(
                "revoked {}; send SIGHUP to a running switchboard to apply it",
                ids.join(", ")
            );
        }
    }
    Ok(())
}
