//! The `switchboard passwd` and `switchboard token` subcommands.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::prompt;
use crate::security::passwd::{PasswordFile, PasswordHash};
use crate::security::token::{self, Claims};

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
    /// Add a user or change their password (argon2id). The password comes from `--password`,
    /// else it is typed twice without echo on a terminal, else it is the first line of
    /// standard input.
    Add {
        /// User name.
        user: String,
        /// The password (else prompted for, or read from standard input).
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
                None => prompt::new_password(user)?,
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
        /// A device the token may watch and switch through the device channel
        /// (`switchboard/devices/<id>` and `…/set`), e.g. `tasmota:kitchen`; repeatable.
        /// The printed snippets embed a widget for each.
        #[arg(long = "device", value_name = "ID")]
        devices: Vec<String>,
        /// The gateway's public WebSocket URL, for the snippets.
        #[arg(long, default_value = "wss://HOST/mqtt")]
        gateway: String,
    },
    /// List issued tokens (names, ids, scopes, expiry, revocation).
    List,
    /// Revoke a token by name or id (a running gateway applies it on SIGHUP and then closes the
    /// connections using it).
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
            devices,
        } => {
            if publish.is_empty() && subscribe.is_empty() && devices.is_empty() {
                anyhow::bail!(
                    "a token needs at least one --device, --publish or --subscribe: it would grant nothing"
                );
            }
            let (mut publish, mut subscribe) = (publish.clone(), subscribe.clone());
            for device in devices {
                if device.is_empty() {
                    anyhow::bail!("--device needs a device id such as `tasmota:kitchen`");
                }
                let (p, s) = switchboard_devices::view::scope(&device.as_str().into());
                publish.push(p);
                subscribe.push(s);
            }
            for filter in publish.iter().chain(&subscribe) {
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
                publish,
                subscribe,
                expires,
                origin: origin.clone(),
                issued: now,
            };
            let (claims, token) = token::create(dir, claims)
                .with_context(|| format!("cannot create a token in {}", dir.display()))?;
            println!("{token}");
            eprintln!("id: {}", claims.id);
            eprint!("{}", embed_snippets(gateway, devices, &token));
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

/// The HTML a site owner pastes to embed widgets for `devices` (a placeholder device when
/// none): the script and one element each, and the iframe alternative.
#[must_use]
pub fn embed_snippets(gateway: &str, devices: &[String], token: &str) -> String {
    let base = http_base(gateway);
    let placeholder = ["DEVICE".to_owned()];
    let devices = if devices.is_empty() {
        &placeholder[..]
    } else {
        devices
    };
    let (gateway_attr, token_attr) = (html_attr(gateway), html_attr(token));
    let mut out = format!(
        "embed with a script (the widget loads when it scrolls into view):\n\
         <script type=\"module\" src=\"{base}/embed.js\"></script>\n"
    );
    for device in devices {
        out.push_str(&format!(
            "<switchboard-switch gateway=\"{gateway_attr}\" device=\"{}\" token=\"{token_attr}\"></switchboard-switch>\n",
            html_attr(device)
        ));
    }
    out.push_str("or, where a page cannot run scripts, with an iframe:\n");
    for device in devices {
        out.push_str(&format!(
            "<iframe src=\"{base}/embed/{}?token={}\" title=\"{}\" style=\"border:0;width:320px;height:112px\"></iframe>\n",
            html_attr(&path_segment(device)),
            html_attr(token),
            html_attr(device),
        ));
    }
    out
}

/// `wss://host:8443/x/mqtt` to `https://host:8443/x`: the HTTP address the WebSocket path
/// hangs off.
fn http_base(gateway: &str) -> String {
    let (scheme, rest) = match gateway.split_once("://") {
        Some(("wss", rest)) => ("https", rest),
        Some(("ws", rest)) => ("http", rest),
        Some((scheme, rest)) => (scheme, rest),
        None => ("https", gateway),
    };
    let rest = match rest.split_once('/') {
        Some((host, path)) => match path.rsplit_once('/') {
            Some((prefix, _)) => format!("{host}/{prefix}"),
            None => host.to_owned(),
        },
        None => rest.to_owned(),
    };
    format!("{scheme}://{}", rest.trim_end_matches('/'))
}

/// Escapes text for a double-quoted HTML attribute.
fn html_attr(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes `text` as one URL path segment (unreserved characters and `:` stay).
#[must_use]
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_base_hangs_off_the_websocket_url() {
        assert_eq!(
            http_base("wss://gw.example.org/mqtt"),
            "https://gw.example.org"
        );
        assert_eq!(http_base("ws://10.0.0.2:8080/mqtt"), "http://10.0.0.2:8080");
        assert_eq!(
            http_base("wss://example.org/sb/mqtt"),
            "https://example.org/sb"
        );
        assert_eq!(http_base("wss://example.org"), "https://example.org");
    }

    #[test]
    fn snippets_name_every_device_and_escape_attributes() {
        let text = embed_snippets(
            "ws://127.0.0.1:8080/mqtt",
            &[
                "tasmota:kitchen".to_owned(),
                "z2m:living/\"lamp\"".to_owned(),
            ],
            "sbt1.abc",
        );
        assert!(
            text.contains(
                "<script type=\"module\" src=\"http://127.0.0.1:8080/embed.js\"></script>"
            )
        );
        assert!(text.contains("device=\"tasmota:kitchen\" token=\"sbt1.abc\""));
        assert!(text.contains("device=\"z2m:living/&quot;lamp&quot;\""));
        assert!(text.contains(
            "src=\"http://127.0.0.1:8080/embed/z2m:living%2F%22lamp%22?token=sbt1.abc\""
        ));
    }
}
