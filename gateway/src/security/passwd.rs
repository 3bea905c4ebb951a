//! The password file: one `user:hash` line per user, the hash in one of three formats so
//! Mosquitto password files work unchanged:
//!
//! * `$argon2id$...`: a PHC string, written by `switchboard passwd FILE add USER`;
//! * `$6$<salt b64>$<hash b64>`: Mosquitto 1.x, `sha512(password ++ salt)`;
//! * `$7$<iterations>$<salt b64>$<hash b64>`: Mosquitto 2.x, PBKDF2-HMAC-SHA512.
//!
//! Verification is slow on purpose (argon2id, PBKDF2): callers run it off the async reactor.
//! Comparisons of derived hashes are constant-time (`subtle`; argon2's verifier is too).

use std::collections::BTreeMap;
use std::path::Path;

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha512};
use subtle::ConstantTimeEq as _;

use super::LoadError;

/// Largest accepted PBKDF2 iteration count (a hostile file must not stall the verifier).
const MAX_ITERATIONS: u32 = 10_000_000;

/// One stored password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// A PHC string (`$argon2id$v=19$m=...`).
    Argon2(String),
    /// Mosquitto `$6$`: salted SHA-512.
    Sha512 {
        /// The salt bytes.
        salt: Vec<u8>,
        /// `sha512(password ++ salt)`.
        hash: Vec<u8>,
    },
    /// Mosquitto `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 {
        /// Iteration count.
        iterations: u32,
        /// The salt bytes.
        salt: Vec<u8>,
        /// The derived key.
        hash: Vec<u8>,
    },
}

impl PasswordHash {
    /// Parses the hash part of a password file line.
    ///
    /// # Errors
    /// A description of what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let b64 = |s: &str| {
            STANDARD
                .decode(s)
                .map_err(|e| format!("invalid base64 `{s}`: {e}"))
        };
        if text.starts_with("$argon2") {
            argon2::PasswordHash::new(text).map_err(|e| format!("invalid argon2 hash: {e}"))?;
            return Ok(Self::Argon2(text.to_owned()));
        }
        if let Some(rest) = text.strip_prefix("$6$") {
            let (salt, hash) = rest
                .split_once('$')
                .ok_or("a `$6$` hash is `$6$<salt>$<hash>`")?;
            return Ok(Self::Sha512 {
                salt: b64(salt)?,
                hash: b64(hash)?,
            });
        }
        if let Some(rest) = text.strip_prefix("$7$") {
            let mut parts = rest.splitn(3, '$');
            let (Some(iterations), Some(salt), Some(hash)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err("a `$7$` hash is `$7$<iterations>$<salt>$<hash>`".to_owned());
            };
            let iterations = iterations
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_ITERATIONS).contains(n))
                .ok_or_else(|| format!("invalid iteration count `{iterations}`"))?;
            return Ok(Self::Pbkdf2 {
                iterations,
                salt: b64(salt)?,
                hash: b64(hash)?,
            });
        }
        Err("unknown hash format (expected `$argon2id$`, `$6$` or `$7$`)".to_owned())
    }

    /// A new argon2id hash of `password` with a random salt.
    ///
    /// # Errors
    /// When the system random source fails.
    pub fn argon2(password: &[u8]) -> Result<Self, String> {
        Argon2::default()
            .hash_password(password)
            .map(|h| Self::Argon2(h.to_string()))
            .map_err(|e| format!("cannot hash the password: {e}"))
    }

    /// Whether `password` matches. Slow (argon2id, PBKDF2): call it off the async reactor.
    #[must_use]
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Argon2(phc) => Argon2::default()
                .verify_password(password, phc.as_str())
                .is_ok(),
            Self::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                bool::from(digest.finalize().as_slice().ct_eq(hash))
            }
            Self::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => {
                if hash.is_empty() || hash.len() > 64 {
                    return false;
                }
                let mut out = vec![0u8; hash.len()];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                bool::from(out.as_slice().ct_eq(hash))
            }
        }
    }

    /// The text stored in the file.
    #[must_use]
    pub fn to_text(&self) -> String {
        match self {
            Self::Argon2(phc) => phc.clone(),
            Self::Sha512 { salt, hash } => {
                format!("$6${}${}", STANDARD.encode(salt), STANDARD.encode(hash))
            }
            Self::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => format!(
                "$7${iterations}${}${}",
                STANDARD.encode(salt),
                STANDARD.encode(hash)
            ),
        }
    }
}

/// A parsed password file, users in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    users: BTreeMap<String, PasswordHash>,
}

impl PasswordFile {
    /// Parses the text of a password file (blank lines and `#` comments are skipped).
    ///
    /// # Errors
    /// [`LoadError::Line`] naming the first bad line.
    pub fn parse(text: &str) -> Result<Self, LoadError> {
        let mut users = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |why: String| LoadError::Line { line: i + 1, why };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| err("expected `user:hash`".to_owned()))?;
            if user.is_empty() {
                return Err(err("empty user name".to_owned()));
            }
            let hash = PasswordHash::parse(hash).map_err(err)?;
            users.insert(user.to_owned(), hash);
        }
        Ok(Self { users })
    }

    /// Reads and parses a password file; a missing file is an empty one.
    ///
    /// # Errors
    /// [`LoadError::Io`] or [`LoadError::Line`].
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(err) => Err(LoadError::Io(err.to_string())),
        }
    }

    /// Writes the file (mode 0600 on Unix), replacing it atomically.
    ///
    /// # Errors
    /// The I/O error.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::files::write_private(path, self.to_text().as_bytes())
    }

    /// The file's text.
    #[must_use]
    pub fn to_text(&self) -> String {
        self.users
            .iter()
            .map(|(user, hash)| format!("{user}:{}\n", hash.to_text()))
            .collect()
    }

    /// Whether there are no users.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user names, sorted.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// The stored hash of `user` (the SCRAM exchange can read it).
    #[must_use]
    pub fn get(&self, user: &str) -> Option<&PasswordHash> {
        self.users.get(user)
    }

    /// Adds or replaces a user.
    pub fn set(&mut self, user: &str, hash: PasswordHash) {
        self.users.insert(user.to_owned(), hash);
    }

    /// Removes a user; false when there was none.
    pub fn remove(&mut self, user: &str) -> bool {
        self.users.remove(user).is_some()
    }

    /// Whether `user` exists and `password` matches. Slow: call it off the async reactor.
    /// An unknown user costs the same as a wrong password (a dummy hash is verified), so the
    /// timing does not tell which user names exist.
    #[must_use]
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => hash.verify(password),
            None => {
                let _ = dummy_hash().verify(password);
                false
            }
        }
    }
}

/// A fixed argon2id hash verified for unknown users.
fn dummy_hash() -> &'static PasswordHash {
    static DUMMY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        PasswordHash::argon2(b"switchboard-dummy")
            .unwrap_or_else(|_| PasswordHash::Argon2(String::new()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mosquitto_hashes_verify() {
        // Written by `mosquitto_passwd` 2.0 (`-H sha512` and the default).
        let file = PasswordFile::parse(
            "alice:$7$101$xXCaRcpivdWkiud9$4feCtB8f7LqqbQX0wT9N4bL4DYgnUBu47qNQaBCxLFmkiVQN8Br9vEiPo8wcpFkf/Skiw943CgZIwd374HA7Eg==\n\
             bob:$6$zlzhxvLVJg4DMQnj$Rfm/VBPqj8E9dptR5C8fUl1FBm9BSF5/W9XnEG2S+t87FJDEmoHJ5HxQo8/APA3SHRZ/4Zf8IhacJYepp+ZEDQ==\n",
        )
        .unwrap();
        assert!(file.verify("alice", b"secret"));
        assert!(!file.verify("alice", b"secreT"));
        assert!(file.verify("bob", b"pw2"));
        assert!(!file.verify("bob", b"pw"));
        assert!(!file.verify("nobody", b"pw2"));
    }

    #[test]
    fn argon2_round_trip_and_bad_lines() {
        let mut file = PasswordFile::default();
        file.set("u", PasswordHash::argon2(b"pw").unwrap());
        let file = PasswordFile::parse(&file.to_text()).unwrap();
        assert!(file.verify("u", b"pw"));
        assert!(!file.verify("u", b"pW"));
        let err = PasswordFile::parse("# c\n\nu:$9$x\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(PasswordFile::parse("u:$7$0$AA==$AA==").is_err());
        assert!(PasswordFile::parse("nocolon").is_err());
    }
}
