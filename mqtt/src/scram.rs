//! SCRAM-SHA-256 (RFC 5802, RFC 7677) for MQTT 5 enhanced authentication: the client side
//! ([`ScramClient`], [`client_final`]) and the arithmetic the gateway's server side shares
//! ([`salted_password`], [`hmac_sha256`]). Feature `scram`.
//!
//! Where it sits: [`ScramClient`] is an [`EnhancedAuth`] for the sans-I/O
//! [`ClientState`](crate::client::ClientState). On every (re)connection the state machine sends
//! CONNECT with Authentication Method `SCRAM-SHA-256` and the client-first-message
//! (`n,,n=<user>,r=<fresh nonce>`), answers the server's AUTH 0x18 (server-first-message) with
//! an AUTH 0x18 carrying the client-final-message (`c=biws,r=<nonce>,p=<proof>`), and accepts
//! the CONNACK only when its Authentication Data is the server-final-message
//! (`v=<server signature>`) a server knowing this password's verifier must send: a server that
//! cannot prove itself fails the connect ([`CloseReason::AuthFailed`]). The password never
//! crosses the network, in any message.
//!
//! The hashes are plain Rust (sha2, hmac, pbkdf2) on purpose: browsers offer no
//! `crypto.subtle` on plain-http origins, which is exactly where SCRAM matters (a LAN without
//! TLS). The crate has no randomness of its own (no OS access on wasm32): the caller gives
//! [`ScramClient::new`] a function filling a buffer with random bytes (`getrandom` natively,
//! `crypto.getRandomValues` in a browser, which works on insecure origins too).
//!
//! Not supported: channel binding (the GS2 header is always `n,,`, as MQTT has no way to
//! advertise it) and SASLprep (passwords are used as their bytes, identical for ASCII).
//!
//! [`EnhancedAuth`]: crate::client::EnhancedAuth
//! [`CloseReason::AuthFailed`]: crate::client::CloseReason::AuthFailed

use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::ReasonCode;
use crate::client::EnhancedAuth;

/// The MQTT Authentication Method name (as EMQX and other brokers spell it).
pub const METHOD: &str = "SCRAM-SHA-256";

/// Fewest PBKDF2 iterations accepted (RFC 7677 asks for at least 4096). A client refuses
/// fewer: a fake server asking for `i=1` would make the proof cheap to brute-force offline.
pub const MIN_ITERATIONS: u32 = 4096;

/// Most PBKDF2 iterations accepted: bounds the work a hostile peer or file can ask for.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// Random bytes in a client nonce: 120 bits, 20 base64 characters without padding (the length
/// of RFC 7677's example nonce).
pub const NONCE_BYTES: usize = 15;

/// The GS2 header this client sends: no channel binding, no authorization identity.
const GS2_HEADER: &str = "n,,";

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message does not follow the RFC 5802 grammar, or uses an unsupported feature
    /// (channel binding, an authorization identity, a mandatory extension, an iteration count
    /// outside [`MIN_ITERATIONS`]`..=`[`MAX_ITERATIONS`] for a client), or the server's nonce
    /// does not extend the client's.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client-final-message echoes a different nonce or GS2 header (a replay, or
    /// tampering).
    #[error("SCRAM nonce or channel binding mismatch")]
    Mismatch,
    /// The proof is wrong: wrong password, or unknown user (indistinguishable on purpose).
    #[error("SCRAM authentication failed")]
    BadProof,
}

/// `SaltedPassword := Hi(Normalize(password), salt, i)`: PBKDF2-HMAC-SHA-256, 32 bytes.
#[must_use]
pub fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
    out
}

/// HMAC-SHA-256 of `data` under `key`.
#[must_use]
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The client side's computation (RFC 5802 section 3): given the password, the
/// client-first-message-bare, the client nonce, the server-first-message and the GS2 header,
/// returns the client-final-message and the server-final-message a genuine server answers.
///
/// # Errors
/// [`ScramError::Malformed`] when the server-first-message is invalid (missing attribute, a
/// mandatory extension, iterations outside [`MIN_ITERATIONS`]`..=`[`MAX_ITERATIONS`]) or its
/// nonce does not extend `client_nonce`.
pub fn client_final(
    password: &[u8],
    client_first_bare: &str,
    client_nonce: &str,
    server_first: &str,
    gs2_header: &str,
) -> Result<(String, String), ScramError> {
    let mut nonce = None;
    let mut salt = None;
    let mut iterations = None;
    for attr in server_first.split(',') {
        if let Some(v) = attr.strip_prefix("r=") {
            nonce = Some(v);
        } else if let Some(v) = attr.strip_prefix("s=") {
            salt = base64::decode(v);
        } else if let Some(v) = attr.strip_prefix("i=") {
            iterations = v
                .parse::<u32>()
                .ok()
                .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i));
        } else if attr.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory extension not supported"));
        }
    }
    let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
        return Err(ScramError::Malformed("bad server-first-message"));
    };
    if !nonce.starts_with(client_nonce) || nonce.len() == client_nonce.len() {
        return Err(ScramError::Malformed("server nonce does not extend ours"));
    }
    let salted = salted_password(password, &salt, iterations);
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let server_key = hmac_sha256(&salted, b"Server Key");
    // `concat` rather than `format!`: no formatting machinery in the browser's wasm.
    let without_proof = ["c=", &base64::encode(gs2_header.as_bytes()), ",r=", nonce].concat();
    let auth_message = [client_first_bare, ",", server_first, ",", &without_proof].concat();
    let signature = hmac_sha256(&stored_key, auth_message.as_bytes());
    let mut proof = client_key;
    for (p, s) in proof.iter_mut().zip(signature) {
        *p ^= s;
    }
    let server_signature = hmac_sha256(&server_key, auth_message.as_bytes());
    Ok((
        [&without_proof, ",p=", &base64::encode(&proof)].concat(),
        ["v=", &base64::encode(&server_signature)].concat(),
    ))
}

/// Fills a buffer with random bytes (`getrandom::fill`, `crypto.getRandomValues`, ...).
type Random = Box<dyn FnMut(&mut [u8]) + Send>;

/// The client side of SCRAM-SHA-256 for [`ClientState::with_enhanced_auth`]: a fresh nonce per
/// connection, and the server's signature checked (in constant time) before the connection
/// counts as up.
///
/// ```
/// use switchboard_mqtt::client::ClientState;
/// use switchboard_mqtt::scram::ScramClient;
/// use switchboard_mqtt::{Connect, ProtocolVersion};
///
/// # fn os_random(buf: &mut [u8]) { buf.fill(4) } // getrandom::fill, crypto.getRandomValues
/// let auth = ScramClient::new("plug", "s3cret", os_random);
/// let client = ClientState::new(Connect::new(ProtocolVersion::V5, "plug-1"))
///     .with_enhanced_auth(Box::new(auth));
/// ```
///
/// [`ClientState::with_enhanced_auth`]: crate::client::ClientState::with_enhanced_auth
pub struct ScramClient {
    user: String,
    password: Vec<u8>,
    random: Random,
    /// This connection's client nonce and client-first-message-bare (set by `start`).
    nonce: String,
    bare: String,
    /// The server-final-message a genuine server sends (set by `step`, taken by `finish`).
    expected: Option<String>,
}

impl core::fmt::Debug for ScramClient {
    /// Nothing of the credentials. (Nor the user name: `str`'s `Debug` escaping would cost the
    /// browser's wasm several kilobytes of Unicode tables, through the `EnhancedAuth` vtable.)
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ScramClient { .. }")
    }
}

impl ScramClient {
    /// A client authenticating as `user` with `password` (its UTF-8 bytes; no SASLprep).
    /// `random` fills a buffer with unpredictable bytes; it is called once per connection for
    /// the [`NONCE_BYTES`]-byte client nonce.
    #[must_use]
    pub fn new(
        user: impl Into<String>,
        password: impl Into<Vec<u8>>,
        random: impl FnMut(&mut [u8]) + Send + 'static,
    ) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
            random: Box::new(random),
            nonce: String::new(),
            bare: String::new(),
            expected: None,
        }
    }
}

impl EnhancedAuth for ScramClient {
    fn method(&self) -> &str {
        METHOD
    }

    fn start(&mut self) -> Bytes {
        let mut random = [0u8; NONCE_BYTES];
        (self.random)(&mut random);
        // Base64 has no ',' and only printable characters, as RFC 5802 asks of a nonce.
        self.nonce = base64::encode(&random);
        // saslname: ',' and '=' escaped.
        let mut user = String::with_capacity(self.user.len());
        for c in self.user.chars() {
            match c {
                '=' => user.push_str("=3D"),
                ',' => user.push_str("=2C"),
                c => user.push(c),
            }
        }
        self.bare = ["n=", &user, ",r=", &self.nonce].concat();
        self.expected = None;
        Bytes::from([GS2_HEADER, &self.bare].concat())
    }

    fn step(&mut self, data: &[u8]) -> Result<Bytes, ReasonCode> {
        let bad = ReasonCode::NotAuthorized;
        // One server-first-message per exchange.
        if self.expected.is_some() || self.bare.is_empty() {
            return Err(bad);
        }
        let server_first = core::str::from_utf8(data).map_err(|_| bad)?;
        let (answer, expected) = client_final(
            &self.password,
            &self.bare,
            &self.nonce,
            server_first,
            GS2_HEADER,
        )
        .map_err(|_| bad)?;
        self.expected = Some(expected);
        Ok(Bytes::from(answer))
    }

    fn finish(&mut self, data: Option<&[u8]>) -> Result<(), ReasonCode> {
        match (self.expected.take(), data) {
            (Some(expected), Some(data)) if bool::from(expected.as_bytes().ct_eq(data)) => Ok(()),
            _ => Err(ReasonCode::NotAuthorized),
        }
    }
}

/// Standard base64 with padding (RFC 4648 section 4), written out: the `base64` crate's
/// general-purpose engine and the formatting its panics bring cost the browser's wasm several
/// kilobytes gzipped, for a few dozen bytes encoded per connection. (The gateway's server side
/// uses the crate; the tests check both agree.)
mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
            let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// `None` unless `text` is canonical padded base64.
    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        let text = text.as_bytes();
        if !text.len().is_multiple_of(4) {
            return None;
        }
        let quads = text.len() / 4;
        let mut out = Vec::with_capacity(quads * 3);
        for (q, quad) in text.chunks_exact(4).enumerate() {
            let pad = if q + 1 == quads {
                quad.iter().rev().take_while(|&&c| c == b'=').count()
            } else {
                0
            };
            if pad > 2 {
                return None;
            }
            let mut n = 0u32;
            for &c in &quad[..4 - pad] {
                n = (n << 6) | u32::from(value(c)?);
            }
            n <<= 6 * pad as u32;
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            // Bits beyond the last whole byte must be zero (one encoding per byte string).
            if bytes[3 - pad..].iter().any(|&b| b != 0) {
                return None;
            }
            out.extend_from_slice(&bytes[..3 - pad]);
        }
        Some(out)
    }

    fn value(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ::base64::Engine as _;
    use ::base64::engine::general_purpose::STANDARD as B64;

    use super::*;
    use crate::client::{Action, ClientState, CloseReason};
    use crate::{Auth, ConnAck, Connect, Packet, ProtocolVersion};

    // RFC 7677 section 3.
    const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    /// A "random" source giving the RFC's client nonce (it is 15 bytes of base64).
    fn rfc_nonce(buf: &mut [u8]) {
        buf.copy_from_slice(&B64.decode(CLIENT_NONCE).unwrap());
    }

    #[test]
    fn base64_agrees_with_the_base64_crate() {
        let data: Vec<u8> = (0..=255u8).rev().chain(0..=255).collect();
        for len in 0..64 {
            for start in [0, 1, 100, 250] {
                let bytes = &data[start..start + len];
                let ours = base64::encode(bytes);
                assert_eq!(ours, B64.encode(bytes));
                assert_eq!(base64::decode(&ours).as_deref(), Some(bytes));
            }
        }
        for bad in [
            "A", "AB", "ABC", "A===", "====", "AB=C", "AB==AB==", "AB*=", "AB=", "AB\n==", "QR==",
            "QUJ=",
        ] {
            assert_eq!(base64::decode(bad), None, "{bad}");
            assert!(B64.decode(bad).is_err(), "the crate agrees: {bad}");
        }
    }

    #[test]
    fn rfc7677_client_final() {
        let (client_final, server_final) = client_final(
            b"pencil",
            "n=user,r=rOprNGfwEbeRWgbNEkqO",
            CLIENT_NONCE,
            SERVER_FIRST,
            "n,,",
        )
        .unwrap();
        assert_eq!(client_final, CLIENT_FINAL);
        assert_eq!(server_final, SERVER_FINAL);
    }

    #[test]
    fn rfc7677_through_enhanced_auth() {
        let mut client = ScramClient::new("user", "pencil", rfc_nonce);
        assert_eq!(client.method(), "SCRAM-SHA-256");
        assert_eq!(&client.start()[..], CLIENT_FIRST.as_bytes());
        let answer = client.step(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(&answer[..], CLIENT_FINAL.as_bytes());
        assert_eq!(client.finish(Some(SERVER_FINAL.as_bytes())), Ok(()));
    }

    #[test]
    fn a_wrong_server_signature_fails() {
        let mut client = ScramClient::new("user", "pencil", rfc_nonce);
        client.start();
        client.step(SERVER_FIRST.as_bytes()).unwrap();
        let mut forged = SERVER_FINAL.to_owned();
        forged.replace_range(2..3, "7");
        assert_eq!(
            client.finish(Some(forged.as_bytes())),
            Err(ReasonCode::NotAuthorized)
        );
        // Nor does a server that skips the exchange, or a second finish, pass.
        let mut client = ScramClient::new("user", "pencil", rfc_nonce);
        client.start();
        assert_eq!(
            client.finish(Some(SERVER_FINAL.as_bytes())),
            Err(ReasonCode::NotAuthorized)
        );
        client.step(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(client.finish(None), Err(ReasonCode::NotAuthorized));
        assert_eq!(
            client.finish(Some(SERVER_FINAL.as_bytes())),
            Err(ReasonCode::NotAuthorized)
        );
    }

    #[test]
    fn bad_server_first_messages_fail() {
        let mut client = ScramClient::new("user", "pencil", rfc_nonce);
        for bad in [
            // Nonce not extending ours, or not extending it at all.
            "r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            // Too few iterations (cheap to brute-force), too many, none; no salt.
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4000000000",
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==",
            "r=rOprNGfwEbeRWgbNEkqOx,i=4096",
            "m=ext,r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        ] {
            client.start();
            assert_eq!(
                client.step(bad.as_bytes()),
                Err(ReasonCode::NotAuthorized),
                "{bad}"
            );
        }
        client.start();
        assert_eq!(client.step(b"\xff"), Err(ReasonCode::NotAuthorized));
    }

    #[test]
    fn each_connection_gets_a_fresh_nonce_and_escaped_user() {
        let mut counter = 0u8;
        let mut client = ScramClient::new("a,b=c", "pw", move |buf: &mut [u8]| {
            counter += 1;
            buf.fill(counter);
        });
        let first = client.start();
        let second = client.start();
        assert_ne!(first, second);
        let text = std::str::from_utf8(&first).unwrap();
        let nonce = text.strip_prefix("n,,n=a=2Cb=3Dc,r=").unwrap();
        assert_eq!(nonce.len(), 20);
        assert!(
            !format!("{client:?}").contains("pw"),
            "Debug hides the password"
        );
    }

    /// The state machine with a scripted server: CONNECT carries the method and the
    /// client-first-message (and no password), AUTH is answered, and the CONNACK's server
    /// signature decides whether the connection counts as up.
    fn run(server_final: &str) -> Vec<Action> {
        let mut state = ClientState::new(Connect::new(ProtocolVersion::V5, "c"))
            .with_enhanced_auth(Box::new(ScramClient::new("user", "pencil", rfc_nonce)));
        state.handle_connected(Duration::ZERO);
        let Some(Action::Send(Packet::Connect(connect))) = state.poll_action() else {
            panic!("CONNECT first");
        };
        assert_eq!(connect.password, None);
        assert_eq!(
            connect.properties.authentication_method.as_deref(),
            Some(METHOD)
        );
        assert_eq!(
            connect.properties.authentication_data.as_deref(),
            Some(CLIENT_FIRST.as_bytes())
        );
        let mut auth = Auth {
            code: ReasonCode::ContinueAuthentication,
            ..Auth::default()
        };
        auth.properties.authentication_method = Some(METHOD.into());
        auth.properties.authentication_data = Some(Bytes::from_static(SERVER_FIRST.as_bytes()));
        state.handle_packet(Packet::Auth(auth), Duration::ZERO);
        let actions: Vec<_> = state.drain_actions().collect();
        let answer = actions.iter().find_map(|a| match a {
            Action::Send(Packet::Auth(auth)) => auth.properties.authentication_data.clone(),
            _ => None,
        });
        assert_eq!(answer.as_deref(), Some(CLIENT_FINAL.as_bytes()));
        let mut ack = ConnAck::new(false, ReasonCode::Success);
        ack.properties.authentication_method = Some(METHOD.into());
        ack.properties.authentication_data = Some(Bytes::copy_from_slice(server_final.as_bytes()));
        state.handle_packet(Packet::ConnAck(ack), Duration::ZERO);
        state.drain_actions().collect()
    }

    #[test]
    fn the_state_machine_connects_only_when_the_server_proves_itself() {
        let good = run(SERVER_FINAL);
        assert!(good.contains(&Action::Connected {
            session_present: false
        }));
        let forged = run("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert!(!forged.iter().any(|a| matches!(a, Action::Connected { .. })));
        assert!(forged.contains(&Action::Close {
            reason: CloseReason::AuthFailed(ReasonCode::NotAuthorized)
        }));
        assert!(forged.iter().any(|a| matches!(
            a,
            Action::Send(Packet::Disconnect(d)) if d.code == ReasonCode::NotAuthorized
        )));
    }
}
