//! Standard Webhooks signatures (<https://www.standardwebhooks.com>), the open scheme Svix,
//! Zapier and others publish, so a receiver verifies forwarded jobs with any of its libraries.
//!
//! The signed content is `<webhook-id>.<webhook-timestamp>.<body>`; the signature is
//! `v1,<base64 HMAC-SHA256 of it>`. Because the timestamp is signed, a receiver refuses a
//! captured request replayed later (the libraries allow 5 minutes). With several secrets (a
//! rotation) the header carries one signature per secret, separated by spaces; a receiver
//! accepts the request when any of them verifies.
//!
//! A secret is `whsec_<base64 of the key bytes>`, as the Standard Webhooks libraries take it.
//! A secret without that prefix is a key made of its own UTF-8 bytes (what `WA_FORWARD_SECRET`
//! always was): a library then wants `whsec_` + the base64 of those bytes.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;

/// The prefix of a secret in the Standard Webhooks form.
const SECRET_PREFIX: &str = "whsec_";
/// Separates the secrets of a rotation in `WA_FORWARD_SECRET`.
const SECRETS_SEPARATOR: char = ',';

/// The keys forwarded jobs are signed with.
pub struct Signer {
    keys: Vec<hmac::Key>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads a comma-separated list of secrets. An empty secret, or a `whsec_` one that is not
    /// base64 of at least one byte, is refused (the error never shows the secret).
    pub fn new(secrets: &str) -> Result<Self, String> {
        let keys = secrets
            .split(SECRETS_SEPARATOR)
            .enumerate()
            .map(|(i, s)| key(s.trim()).map_err(|e| format!("secret {}: {e}", i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys })
    }

    /// The `webhook-signature` value for a request: `v1,<base64>` per key, space-separated.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let timestamp = timestamp.to_string();
        let mut out = String::with_capacity(self.keys.len() * 48);
        for key in &self.keys {
            let mut ctx = hmac::Context::with_key(key);
            ctx.update(id.as_bytes());
            ctx.update(b".");
            ctx.update(timestamp.as_bytes());
            ctx.update(b".");
            ctx.update(body);
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("v1,");
            BASE64.encode_string(ctx.sign().as_ref(), &mut out);
        }
        out
    }
}

fn key(secret: &str) -> Result<hmac::Key, &'static str> {
    let bytes = match secret.strip_prefix(SECRET_PREFIX) {
        Some(b64) => BASE64
            .decode(b64)
            .map_err(|_| "the part after whsec_ is not base64")?,
        None => secret.as_bytes().to_vec(),
    };
    if bytes.is_empty() {
        return Err("is empty");
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: u64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    /// The Standard Webhooks specification's example (also what Python's hmac computes for it).
    #[test]
    fn signs_the_specification_example() {
        let s = Signer::new(SECRET).unwrap();
        assert_eq!(
            s.sign(ID, TIMESTAMP, BODY),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    /// Two secrets give two signatures, in order, separated by one space; a flipped body byte
    /// or another timestamp gives another signature.
    #[test]
    fn rotation_and_changes() {
        let one = Signer::new(SECRET).unwrap().sign(ID, TIMESTAMP, BODY);
        let two = Signer::new(&format!("{SECRET}, plain-secret"))
            .unwrap()
            .sign(ID, TIMESTAMP, BODY);
        let (first, second) = two.split_once(' ').unwrap();
        assert_eq!(first, one);
        assert!(second.starts_with("v1,") && second != one);
        let signer = Signer::new(SECRET).unwrap();
        assert_ne!(signer.sign(ID, TIMESTAMP + 1, BODY), one);
        assert_ne!(signer.sign(ID, TIMESTAMP, br#"{"test": 2432232315}"#), one);
    }

    /// A plain secret is its own UTF-8 bytes: the same as `whsec_` + their base64.
    #[test]
    fn plain_secret_is_its_bytes() {
        let plain = Signer::new("forward-secret").unwrap();
        let b64 = format!("whsec_{}", BASE64.encode("forward-secret"));
        let whsec = Signer::new(&b64).unwrap();
        assert_eq!(plain.sign(ID, 1, BODY), whsec.sign(ID, 1, BODY));
    }

    /// Empty secrets and bad base64 are refused without echoing the secret.
    #[test]
    fn refuses_unusable_secrets() {
        for bad in ["", "a,,b", "whsec_", "whsec_not*base64"] {
            let e = Signer::new(bad).unwrap_err();
            assert!(e.starts_with("secret "), "{e}");
            assert!(!e.contains("base64*"), "{e}");
        }
    }
}
