//! SCRAM-SHA-256 (RFC 5802, RFC 7677) for MQTT 5 enhanced authentication.
//!
//! Where it sits: a v5 CONNECT naming Authentication Method `SCRAM-SHA-256` carries the
//! client-first-message as Authentication Data. The connection task
//! ([`crate::broker`]) gives it to [`ServerExchange::start`], sends the server-first-message in
//! an AUTH packet (reason 0x18 Continue authentication), reads the client-final-message from the
//! client's AUTH 0x18 and gives it to [`ServerExchange::finish`]. On success the
//! server-final-message (`v=<server signature>`) goes back as the CONNACK's Authentication Data
//! and the SCRAM user name becomes the connection's authenticated user name. The password never
//! crosses the network, and the server stores only salted verifiers ([`Credential`]).
//!
//! This module is sans-I/O: strings in, strings out. The credential file (`[scram] file`) has
//! one line per user, `user:salt_b64:iterations:stored_key_b64:server_key_b64`;
//! `switchboard passwd-scram FILE add USER` maintains it ([`add_user`]).
//!
//! The client side ([`ScramClient`], [`client_final`]) and the shared arithmetic live in
//! [`switchboard_mqtt::scram`], one implementation for Rust clients here and the browser's
//! wasm client; [`client`] makes a [`ScramClient`] with the system random source.
//!
//! Channel binding (`p=` GS2 flag) is not offered: the MQTT layer has no way to advertise it,
//! and TLS already protects the exchange when it is used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use switchboard_mqtt::scram::{MAX_ITERATIONS, MIN_ITERATIONS, hmac_sha256, salted_password};
pub use switchboard_mqtt::scram::{METHOD, ScramClient, ScramError, client_final};

/// PBKDF2 iterations used for new credentials (RFC 7677 asks for at least 4096).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Longest client-first or client-final message accepted, in bytes.
const MAX_MESSAGE: usize = 1024;

/// The `[scram]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScramConfig {
    /// The credential file (`switchboard passwd-scram FILE add USER`). Unset: a CONNECT asking
    /// for SCRAM-SHA-256 gets CONNACK 0x8C (Bad authentication method).
    pub file: Option<PathBuf>,
}

/// One user's stored SCRAM verifier: the salt, the iteration count and the two keys derived
/// from the salted password. The password itself cannot be recovered from it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The PBKDF2 salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// Derives the verifier of `password` with `salt` and `iterations`.
    #[must_use]
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        // RFC 5802 asks for SASLprep of the password; passwords are used as UTF-8 bytes as
        // they are (identical for ASCII, as every common client does).
        let salted = salted_password(password.as_bytes(), salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// A verifier with a fresh random 16-byte salt.
    ///
    /// # Errors
    /// When the system random source fails.
    pub fn generate(password: &str, iterations: u32) -> Result<Self, getrandom::Error> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt)?;
        Ok(Self::derive(password, &salt, iterations))
    }

    /// The credential file line for `user`.
    #[must_use]
    pub fn to_line(&self, user: &str) -> String {
        format!(
            "{user}:{}:{}:{}:{}",
            B64.encode(&self.salt),
            self.iterations,
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }

    /// Parses a credential file line into the user name and the verifier.
    ///
    /// # Errors
    /// A description of what is wrong with the line.
    pub fn from_line(line: &str) -> Result<(String, Self), String> {
        // The user name may not contain ':'; the other fields never do.
        let fields: Vec<&str> = line.split(':').collect();
        let [user, salt, iterations, stored, server] = fields[..] else {
            return Err("expected user:salt:iterations:stored_key:server_key".to_owned());
        };
        if user.is_empty() {
            return Err("empty user name".to_owned());
        }
        let salt = B64.decode(salt).map_err(|e| format!("salt: {e}"))?;
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
            .ok_or_else(|| format!("iterations must be {MIN_ITERATIONS}..={MAX_ITERATIONS}"))?;
        let key = |text: &str, what: &str| -> Result<[u8; 32], String> {
            B64.decode(text)
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or_else(|| format!("{what}: not 32 bytes of base64"))
        };
        Ok((
            user.to_owned(),
            Self {
                salt,
                iterations,
                stored_key: key(stored, "stored_key")?,
                server_key: key(server, "server_key")?,
            },
        ))
    }
}

/// The SCRAM credential file: user name to verifier.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    users: HashMap<String, Credential>,
}

impl Credentials {
    /// Parses the file format (blank lines and `#` comments allowed).
    ///
    /// # Errors
    /// The first bad line, with its number.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, cred) =
                Credential::from_line(line).map_err(|e| format!("line {}: {e}", n + 1))?;
            users.insert(user, cred);
        }
        Ok(Self { users })
    }

    /// Reads and parses a credential file.
    ///
    /// # Errors
    /// When the file cannot be read or a line is invalid.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read SCRAM file {}: {e}", path.display()))?;
        Self::parse(&text)
            .map_err(|e| anyhow::anyhow!("invalid SCRAM file {}: {e}", path.display()))
    }

    /// Adds or replaces a user.
    pub fn insert(&mut self, user: impl Into<String>, credential: Credential) {
        self.users.insert(user.into(), credential);
    }

    /// The verifier of `user`.
    #[must_use]
    pub fn get(&self, user: &str) -> Option<&Credential> {
        self.users.get(user)
    }

    /// Number of users.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// `switchboard passwd-scram FILE add|delete USER`: maintain the SCRAM credential file.
#[derive(Debug, Clone, clap::Args)]
pub struct PasswdScramArgs {
    /// The credential file (`[scram] file`); created with mode 0600.
    pub file: PathBuf,
    /// `add` (or replace) or `delete`.
    pub action: PasswdAction,
    /// The user name.
    pub user: String,
    /// The password (default: typed twice without echo on a terminal, else one line from
    /// standard input).
    #[arg(long, env = "SWITCHBOARD_SCRAM_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

/// What `passwd-scram` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PasswdAction {
    /// Add the user, or replace its password.
    Add,
    /// Remove the user.
    Delete,
}

/// Runs `switchboard passwd-scram`.
///
/// # Errors
/// When the file cannot be read or written, or no password is given.
pub fn run_passwd(args: &PasswdScramArgs) -> anyhow::Result<()> {
    match args.action {
        PasswdAction::Add => {
            let password = match &args.password {
                Some(p) => p.clone(),
                None => crate::prompt::new_password(&args.user)?,
            };
            if password.is_empty() {
                anyhow::bail!("empty password");
            }
            add_user(&args.file, &args.user, &password)?;
            println!(
                "{} {}: SCRAM-SHA-256 verifier stored. A running gateway picks it up on SIGHUP.",
                args.file.display(),
                args.user
            );
        }
        PasswdAction::Delete => {
            delete_user(&args.file, &args.user)?;
            println!("{}: {} removed.", args.file.display(), args.user);
        }
    }
    Ok(())
}

/// Removes `user` from the credential file.
///
/// # Errors
/// When the file cannot be read or written, or has no such user.
pub fn delete_user(path: &Path, user: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let prefix = format!("{user}:");
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    if kept.len() == text.len() || kept.lines().count() == text.lines().count() {
        anyhow::bail!("no user {user} in {}", path.display());
    }
    Ok(crate::files::write_private(path, kept.as_bytes())?)
}

/// Adds (or replaces) `user` with `password` in the credential file at `path`, creating it
/// with mode 0600 when missing. Other lines (comments included) are kept as they are.
///
/// # Errors
/// When the user name contains `:` or is empty, or the file cannot be read or written.
pub fn add_user(path: &Path, user: &str, password: &str) -> anyhow::Result<()> {
    if user.is_empty() || user.contains([':', '\n', '\r']) {
        anyhow::bail!("a SCRAM user name must be non-empty and contain no ':' or line break");
    }
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let credential = Credential::generate(password, DEFAULT_ITERATIONS)
        .map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    let prefix = format!("{user}:");
    let mut out = String::new();
    for line in existing.lines() {
        if !line.starts_with(&prefix) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&credential.to_line(user));
    out.push('\n');
    Ok(crate::files::write_private(path, out.as_bytes())?)
}

/// A successful exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    /// The authenticated user name (from the client-first-message).
    pub username: String,
    /// The server-final-message, `v=<server signature>`, for the CONNACK.
    pub server_final: String,
}

/// The server side of one exchange, between the server-first and the client-final message.
#[derive(Debug)]
pub struct ServerExchange {
    username: String,
    /// `None` for an unknown user: the exchange runs to the end with a fake salt and fails.
    credential: Option<Credential>,
    /// The GS2 header as sent (`n,,`), echoed base64-encoded in the client-final `c=`.
    gs2_header: String,
    /// Client nonce followed by server nonce.
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

impl ServerExchange {
    /// Parses the client-first-message and answers the server-first-message
    /// (`r=<nonce>,s=<salt>,i=<iterations>`). `server_nonce` must be fresh and unpredictable
    /// ([`fresh_nonce`]); an unknown user gets a fake but stable salt so the answer does not
    /// reveal whether the user exists.
    ///
    /// # Errors
    /// [`ScramError::Malformed`] when the message is not a valid client-first-message.
    pub fn start(
        credentials: &Credentials,
        client_first: &[u8],
        server_nonce: &str,
    ) -> Result<(Self, String), ScramError> {
        if client_first.len() > MAX_MESSAGE {
            return Err(ScramError::Malformed("client-first-message too long"));
        }
        let text = std::str::from_utf8(client_first)
            .map_err(|_| ScramError::Malformed("client-first-message is not UTF-8"))?;
        // gs2-header = gs2-cbind-flag "," [ authzid ] ","
        let (flag, rest) = text
            .split_once(',')
            .ok_or(ScramError::Malformed("missing GS2 header"))?;
        match flag {
            "n" | "y" => {}
            _ if flag.starts_with("p=") => {
                return Err(ScramError::Malformed("channel binding is not supported"));
            }
            _ => return Err(ScramError::Malformed("bad GS2 channel binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("missing GS2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed(
                "an authorization identity is not supported",
            ));
        }
        let gs2_header = format!("{flag},,");
        let mut attrs = bare.split(',');
        let username = attrs
            .next()
            .and_then(|a| a.strip_prefix("n="))
            .ok_or(ScramError::Malformed("missing user name"))
            .and_then(decode_saslname)?;
        let client_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("missing client nonce"))?;
        if client_nonce.is_empty()
            || !client_nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(ScramError::Malformed("bad client nonce"));
        }
        if attrs.any(|a| a.starts_with("m=")) {
            return Err(ScramError::Malformed("mandatory extension not supported"));
        }
        let credential = credentials.get(&username).cloned();
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (fake_salt(&username), DEFAULT_ITERATIONS),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        Ok((
            Self {
                username,
                credential,
                gs2_header,
                nonce,
                client_first_bare: bare.to_owned(),
                server_first: server_first.clone(),
            },
            server_first,
        ))
    }

    /// The user name the client claims (not yet proven).
    #[must_use]
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Verifies the client-final-message (`c=<gs2 header>,r=<nonce>,p=<proof>`).
    ///
    /// # Errors
    /// [`ScramError::Malformed`] for a bad message, [`ScramError::Mismatch`] when the nonce or
    /// the channel binding differs (a replayed message), [`ScramError::BadProof`] for a wrong
    /// password or an unknown user.
    pub fn finish(self, client_final: &[u8]) -> Result<Success, ScramError> {
        if client_final.len() > MAX_MESSAGE {
            return Err(ScramError::Malformed("client-final-message too long"));
        }
        let text = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("client-final-message is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("missing proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("missing channel binding"))?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("missing nonce"))?;
        let binding_ok = B64
            .decode(binding)
            .is_ok_and(|b| b == self.gs2_header.as_bytes());
        if !binding_ok || nonce != self.nonce {
            return Err(ScramError::Mismatch);
        }
        let proof: [u8; 32] = B64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed("proof is not 32 bytes of base64"))?;
        let Some(credential) = self.credential else {
            return Err(ScramError::BadProof);
        };
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let client_signature = hmac_sha256(&credential.stored_key, auth_message.as_bytes());
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(client_signature) {
            *k ^= s;
        }
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        if !bool::from(stored.ct_eq(&credential.stored_key)) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac_sha256(&credential.server_key, auth_message.as_bytes());
        Ok(Success {
            username: self.username,
            server_final: format!("v={}", B64.encode(server_signature)),
        })
    }
}

/// A fresh server nonce: 18 random bytes, base64 (printable, no `,`).
///
/// # Errors
/// When the system random source fails.
pub fn fresh_nonce() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes)?;
    Ok(B64.encode(bytes))
}

/// A SCRAM-SHA-256 client (for [`switchboard_mqtt::client::ClientState::with_enhanced_auth`])
/// authenticating as `user` with `password`, its nonces from the system random source.
#[must_use]
pub fn client(user: impl Into<String>, password: impl Into<Vec<u8>>) -> ScramClient {
    ScramClient::new(user, password, |buf: &mut [u8]| {
        // Without the system random source, fastrand (seeded from the OS and the time) still
        // gives a nonce that does not repeat; its unpredictability is what suffers.
        if getrandom::fill(buf).is_err() {
            fastrand::fill(buf);
        }
    })
}

/// `saslname`: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn decode_saslname(text: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(out)
}

/// A salt for an unknown user: HMAC of the name under a per-process secret, so it is stable
/// for one name (asking twice does not reveal the user is unknown) and unrelated across names.
fn fake_salt(username: &str) -> Vec<u8> {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    let secret = SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        // Without a random source the salt is still stable per name; only its secrecy suffers.
        let _ = getrandom::fill(&mut s);
        s
    });
    hmac_sha256(secret, username.as_bytes())[..16].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 section 3.
    const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn credentials() -> Credentials {
        let mut c = Credentials::default();
        c.insert(
            "user",
            Credential::derive("pencil", &B64.decode(SALT).unwrap(), 4096),
        );
        c
    }

    #[test]
    fn rfc7677_server_side() {
        let (exchange, server_first) =
            ServerExchange::start(&credentials(), CLIENT_FIRST.as_bytes(), SERVER_NONCE).unwrap();
        assert_eq!(server_first, SERVER_FIRST);
        assert_eq!(exchange.username(), "user");
        let success = exchange.finish(CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(success.username, "user");
        assert_eq!(success.server_final, SERVER_FINAL);
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        let (exchange, server_first) =
            ServerExchange::start(&credentials(), CLIENT_FIRST.as_bytes(), SERVER_NONCE).unwrap();
        let (wrong, _) = client_final(
            b"pen",
            "n=user,r=rOprNGfwEbeRWgbNEkqO",
            "rOprNGfwEbeRWgbNEkqO",
            &server_first,
            "n,,",
        )
        .unwrap();
        assert_eq!(exchange.finish(wrong.as_bytes()), Err(ScramError::BadProof));

        let first = b"n,,n=nobody,r=abc";
        let (exchange, server_first) = ServerExchange::start(&credentials(), first, "xyz").unwrap();
        let (_, again) = ServerExchange::start(&credentials(), first, "xyz").unwrap();
        assert_eq!(server_first, again, "an unknown user's salt is stable");
        let (attempt, _) =
            client_final(b"pencil", "n=nobody,r=abc", "abc", &server_first, "n,,").unwrap();
        assert_eq!(
            exchange.finish(attempt.as_bytes()),
            Err(ScramError::BadProof)
        );
    }

    #[test]
    fn replayed_or_garbled_final_messages_fail() {
        let (exchange, _) =
            ServerExchange::start(&credentials(), CLIENT_FIRST.as_bytes(), "another-nonce")
                .unwrap();
        assert_eq!(
            exchange.finish(CLIENT_FINAL.as_bytes()),
            Err(ScramError::Mismatch)
        );
        let (exchange, _) =
            ServerExchange::start(&credentials(), CLIENT_FIRST.as_bytes(), SERVER_NONCE).unwrap();
        assert!(matches!(
            exchange.finish(b"c=biws,r=x"),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn bad_client_first_messages_are_refused() {
        let c = credentials();
        for bad in [
            &b"n=user,r=abc"[..],
            b"p=tls-unique,,n=user,r=abc",
            b"n,a=admin,n=user,r=abc",
            b"n,,n=us=er,r=abc",
            b"n,,n=user",
            b"n,,n=user,r=abc,m=ext",
            b"n,,n=,r=abc",
        ] {
            assert!(
                ServerExchange::start(&c, bad, "s").is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let (exchange, _) = ServerExchange::start(&c, b"n,,n=a=2Cb=3Dc,r=abc", "s").unwrap();
        assert_eq!(exchange.username(), "a,b=c");
    }

    #[test]
    fn credential_lines_round_trip() {
        let cred = Credential::derive("pencil", b"salty", 4096);
        let line = cred.to_line("plug");
        let (user, back) = Credential::from_line(&line).unwrap();
        assert_eq!(user, "plug");
        assert_eq!(back, cred);
        assert!(Credential::from_line("plug:c2FsdA==:10:AA==:AA==").is_err());
        let parsed = Credentials::parse(&format!("# comment\n\n{line}\n")).unwrap();
        assert_eq!(parsed.len(), 1);
        assert!(Credentials::parse("junk\n").unwrap_err().contains("line 1"));
    }

    #[test]
    fn add_user_replaces_and_keeps_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scram");
        add_user(&path, "a", "one").unwrap();
        add_user(&path, "b", "two").unwrap();
        add_user(&path, "a", "three").unwrap();
        let creds = Credentials::load(&path).unwrap();
        assert_eq!(creds.len(), 2);
        let a = creds.get("a").unwrap();
        assert_eq!(*a, Credential::derive("three", &a.salt, a.iterations));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(add_user(&path, "x:y", "p").is_err());
    }
}
