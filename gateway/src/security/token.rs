//! Scoped tokens for the dashboard and embedded widgets, which cannot set headers on a
//! WebSocket: `sbt1.<claims>.<signature>`, the claims base64url JSON, the signature
//! HMAC-SHA256 over `sbt1.<claims>` with the key in `<data_dir>/token.key` (32 random bytes,
//! created with mode 0600 on first use).
//!
//! A token is presented as the MQTT password (any user name) or as `?token=` on the WebSocket
//! URL. It grants exactly its publish and subscribe filters, until its expiry, and when it
//! names an origin, only to WebSocket connections whose `Origin` header equals it.
//! Issued tokens are listed (without their signature) in `<data_dir>/tokens.list`, revoked ids
//! in `<data_dir>/tokens.revoked`; both are re-read on `SIGHUP`.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The token prefix (format version 1).
pub const PREFIX: &str = "sbt1.";
const KEY_FILE: &str = "token.key";
const LIST_FILE: &str = "tokens.list";
const REVOKED_FILE: &str = "tokens.revoked";

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Random identifier (revocation uses it).
    pub id: String,
    /// Human name (`kitchen-widget`).
    pub name: String,
    /// Topic filters the holder may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Topic filters the holder may subscribe to (and receive from).
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Unix seconds after which the token is refused; `None`: never expires.
    #[serde(default)]
    pub expires: Option<u64>,
    /// The browser origin the token is bound to (`https://example.org`).
    #[serde(default)]
    pub origin: Option<String>,
    /// Unix seconds of creation.
    pub issued: u64,
}

impl Claims {
    /// Whether the token has expired at `now` (Unix seconds).
    #[must_use]
    pub fn expired_at(&self, now: u64) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token, or the signature does not match.
    #[error("invalid token")]
    Invalid,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
    /// On the revocation list.
    #[error("token revoked")]
    Revoked,
    /// Origin-bound and the connection's origin differs (or it is not a WebSocket).
    #[error("token not valid for this origin")]
    Origin,
}

/// The signing key and the revocation list.
#[derive(Clone)]
pub struct TokenKeys {
    key: [u8; 32],
    revoked: HashSet<String>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("revoked", &self.revoked.len())
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch.
#[must_use]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenKeys {
    /// Loads the key from `data_dir` (creating it, mode 0600, when missing) and the revocation
    /// list.
    ///
    /// # Errors
    /// The I/O error, or a key file of the wrong length.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join(KEY_FILE);
        let key = match std::fs::read(&path) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                std::io::Error::other(format!("{} must hold 32 bytes", path.display()))
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir)?;
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
                create_new_private(&path, &key)?;
                key
            }
            Err(err) => return Err(err),
        };
        let revoked = match std::fs::read_to_string(data_dir.join(REVOKED_FILE)) {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(err) => return Err(err),
        };
        Ok(Self { key, revoked })
    }

    /// A digest of the signing key: tells whether two loads hold the same key without
    /// keeping the key itself elsewhere.
    #[must_use]
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest as _;
        Sha256::digest(self.key).into()
    }

    /// Whether the token with this id is on the revocation list.
    #[must_use]
    pub fn is_revoked(&self, id: &str) -> bool {
        self.revoked.contains(id)
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// Signs `claims` into a token string.
    #[must_use]
    pub fn sign(&self, claims: &Claims) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signed = format!("{PREFIX}{body}");
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signed}.{sig}")
    }

    /// Checks the signature (constant-time), expiry and revocation of `token` at `now`.
    ///
    /// # Errors
    /// Why the token is refused.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let (signed, sig) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let body = signed.strip_prefix(PREFIX).ok_or(TokenError::Invalid)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Invalid)?;
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&sig).map_err(|_| TokenError::Invalid)?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Invalid)?;
        if self.is_revoked(&claims.id) {
            return Err(TokenError::Revoked);
        }
        if claims.expired_at(now) {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Creates a file with mode 0600 that must not exist yet.
fn create_new_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// The issued tokens' claims in `<data_dir>/tokens.list` (one JSON object a line).
///
/// # Errors
/// The I/O error (a missing file is an empty list).
pub fn list(data_dir: &Path) -> std::io::Result<Vec<Claims>> {
    match std::fs::read_to_string(data_dir.join(LIST_FILE)) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err),
    }
}

/// Creates a token: a random id, signed with the data directory's key, recorded in the list.
///
/// # Errors
/// The I/O error.
pub fn create(data_dir: &Path, mut claims: Claims) -> std::io::Result<(Claims, String)> {
    let keys = TokenKeys::open(data_dir)?;
    let mut id = [0u8; 9];
    getrandom::fill(&mut id).map_err(|e| std::io::Error::other(e.to_string()))?;
    claims.id = URL_SAFE_NO_PAD.encode(id);
    let token = keys.sign(&claims);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(data_dir.join(LIST_FILE))?;
    writeln!(
        file,
        "{}",
        serde_json::to_string(&claims).map_err(std::io::Error::other)?
    )?;
    Ok((claims, token))
}

/// Revokes every issued token whose id or name is `what` (or `what` as an id even if not
/// listed). Returns the revoked ids.
///
/// # Errors
/// The I/O error.
pub fn revoke(data_dir: &Path, what: &str) -> std::io::Result<Vec<String>> {
    let mut ids: Vec<String> = list(data_dir)?
        .into_iter()
        .filter(|c| c.id == what || c.name == what)
        .map(|c| c.id)
        .collect();
    if ids.is_empty() {
        ids.push(what.to_owned());
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(revoked_path(data_dir))?;
    for id in &ids {
        writeln!(file, "{id}")?;
    }
    Ok(ids)
}

/// Where revoked ids are listed.
#[must_use]
pub fn revoked_path(data_dir: &Path) -> PathBuf {
    data_dir.join(REVOKED_FILE)
}

/// Parses a duration like `30d`, `12h`, `15m`, `90s` (or bare seconds).
///
/// # Errors
/// A description of the expected format.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a number and a unit (30d, 12h, 15m, 90s)"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (s, m, h, d, w)")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            id: "id1".into(),
            name: "w".into(),
            publish: vec!["cmnd/k/POWER".into()],
            subscribe: vec!["stat/k/#".into()],
            expires: Some(100),
            origin: None,
            issued: 1,
        }
    }

    #[test]
    fn sign_verify_expire_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let keys = TokenKeys::open(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let token = keys.sign(&claims());
        assert_eq!(keys.verify(&token, 50).unwrap(), claims());
        assert_eq!(keys.verify(&token, 100), Err(TokenError::Expired));
        let mut forged = token.clone();
        forged.pop();
        forged.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(keys.verify(&forged, 50), Err(TokenError::Invalid));
        assert_eq!(keys.verify("sbt1.x", 50), Err(TokenError::Invalid));
        revoke(dir.path(), "id1").unwrap();
        let keys = TokenKeys::open(dir.path()).unwrap();
        assert_eq!(keys.verify(&token, 50), Err(TokenError::Revoked));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("90"), Ok(90));
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("d").is_err());
    }
}
