//! Scoped tokens (`sbt1.<claims>.<signature>`), presented by anyone as an MQTT password or as
//! `?token=` on the WebSocket URL.
//!
//! The input is tried three ways: as a token string; as the claims JSON of a token signed with
//! the key (so the claims parser sees arbitrary JSON behind a valid signature); and, when it is
//! claims, signed by `TokenKeys::sign` and then altered by one character.
//!
//! Properties: a token whose signature is not the key's is `Invalid`; a validly signed token
//! is accepted exactly when its claims parse, are not revoked and have not expired, and then
//! yields those claims; any change to a signed token is refused.

#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use switchboard::security::{Claims, TokenError, TokenKeys};

const KEY: [u8; 32] = *b"switchboard-fuzz-token-key-32-by";
const REVOKED: &str = "revoked-id";
const NOW: u64 = 1_800_000_000;

/// Keys loaded the way the gateway loads them, from a data directory holding `token.key`
/// and `tokens.revoked`, written once and removed again.
fn keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("switchboard-fuzz-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        std::fs::write(dir.join("token.key"), KEY).expect("key file");
        std::fs::write(dir.join("tokens.revoked"), format!("{REVOKED}\n")).expect("revocations");
        let keys = TokenKeys::open(&dir).expect("keys load");
        std::fs::remove_dir_all(&dir).expect("clean up");
        keys
    })
}

/// `sbt1.<body>.<signature>` with the key.
fn sign_raw(claims_json: &[u8]) -> String {
    let signed = format!("sbt1.{}", URL_SAFE_NO_PAD.encode(claims_json));
    let mut mac = Hmac::<Sha256>::new_from_slice(&KEY).expect("any key length");
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn expected(claims: &Claims) -> Result<Claims, TokenError> {
    if claims.id == REVOKED {
        Err(TokenError::Revoked)
    } else if claims.expired_at(NOW) {
        Err(TokenError::Expired)
    } else {
        Ok(claims.clone())
    }
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    if let Ok(text) = std::str::from_utf8(data) {
        // Whatever a client sends: refused unless it carries the key's signature.
        if keys.verify(text, NOW).is_ok() {
            let (signed, sig) = text
                .rsplit_once('.')
                .expect("an accepted token has a signature");
            let mut mac = Hmac::<Sha256>::new_from_slice(&KEY).expect("any key length");
            mac.update(signed.as_bytes());
            let sig = URL_SAFE_NO_PAD
                .decode(sig)
                .expect("an accepted signature is base64url");
            assert!(
                mac.verify_slice(&sig).is_ok(),
                "accepted a token the key did not sign"
            );
        }
    }
    let signed = sign_raw(data);
    let verdict = keys.verify(&signed, NOW);
    match serde_json::from_slice::<Claims>(data) {
        Ok(claims) => {
            assert_eq!(verdict, expected(&claims));
            let token = keys.sign(&claims);
            assert_eq!(keys.verify(&token, NOW), expected(&claims));
            // One character changed anywhere (to another base64url character or a dot).
            let position = usize::from(data.first().copied().unwrap_or(0)) * 7 % token.len();
            let original = token.as_bytes()[position];
            let replacement = if original == b'A' { b'B' } else { b'A' };
            let mut altered = token.into_bytes();
            altered[position] = replacement;
            let altered = String::from_utf8(altered).expect("ASCII");
            assert_eq!(
                keys.verify(&altered, NOW),
                Err(TokenError::Invalid),
                "{altered}"
            );
        }
        Err(_) => assert_eq!(verdict, Err(TokenError::Invalid)),
    }
});
