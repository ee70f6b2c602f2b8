//! Who may use the dashboard, and proof that a POST comes from its own page.
//!
//! Without `--token` (loopback only) everyone who can reach the address may read and act, as
//! with any local tool; with it, a request must carry the token as `Authorization: Bearer`
//! or the session cookie the login form sets. Either way every POST that changes something
//! must carry the CSRF token the page was served with, in the `X-CSRF-Token` header: another
//! site can make a browser send a cookie, not read the page to learn the token.
//!
//! Every comparison with a secret runs in constant time: both sides are HMACed under a key
//! of this process and the tags compared with `ring::hmac::verify`.

use hyper::header::{AUTHORIZATION, COOKIE, HeaderMap};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "wa_dashboard";
/// The header a POST carries the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Secrets of one dashboard process.
pub struct Auth {
    /// key the comparisons HMAC under
    key: hmac::Key,
    /// the token's tag under `key`, when a token is required
    token: Option<hmac::Tag>,
    /// the session cookie's value (random per process: a restart logs everyone out)
    session: String,
    /// the CSRF token put into the page
    csrf: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token_required", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

/// 32 random bytes as hex.
fn random_hex(rng: &SystemRandom) -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is not something to serve pages through.
    rng.fill(&mut bytes)
        .expect("the OS random number generator");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Auth {
    pub fn new(token: Option<&str>) -> Self {
        let rng = SystemRandom::new();
        let key = hmac::Key::new(hmac::HMAC_SHA256, random_hex(&rng).as_bytes());
        let token = token.map(|t| hmac::sign(&key, t.as_bytes()));
        Self {
            key,
            token,
            session: random_hex(&rng),
            csrf: random_hex(&rng),
        }
    }

    /// Whether a token is required at all.
    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// The CSRF token the page carries.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// The session cookie's value, set by a good login.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// True when `given` is the token (constant time).
    pub fn token_matches(&self, given: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|tag| hmac::verify(&self.key, given.as_bytes(), tag.as_ref()).is_ok())
    }

    fn same(&self, given: &str, expected: &str) -> bool {
        let tag = hmac::sign(&self.key, expected.as_bytes());
        hmac::verify(&self.key, given.as_bytes(), tag.as_ref()).is_ok()
    }

    /// True when the request may read and act: no token required, or it carries the token as
    /// a bearer header or the session cookie.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        if !self.required() {
            return true;
        }
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|t| self.token_matches(t.trim())) {
            return true;
        }
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == COOKIE_NAME && self.same(value, &self.session))
    }

    /// True when a POST carries the page's CSRF token.
    pub fn csrf_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| self.same(t, &self.csrf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// With a token: the bearer header or the session cookie admits, anything else does not.
    #[test]
    fn token_admission() {
        let a = Auth::new(Some("s3cret"));
        assert!(!a.admits(&headers(&[])));
        assert!(a.admits(&headers(&[("authorization", "Bearer s3cret")])));
        assert!(!a.admits(&headers(&[("authorization", "Bearer s3cre")])));
        assert!(!a.admits(&headers(&[("authorization", "Basic s3cret")])));
        let cookie = format!("x=1; {COOKIE_NAME}={}", a.session());
        assert!(a.admits(&headers(&[("cookie", &cookie)])));
        assert!(!a.admits(&headers(&[("cookie", &format!("{COOKIE_NAME}=nope"))])));
    }

    /// Without a token everyone is admitted; CSRF is checked all the same.
    #[test]
    fn csrf_always_checked() {
        let a = Auth::new(None);
        assert!(a.admits(&headers(&[])));
        assert!(!a.csrf_ok(&headers(&[])));
        assert!(!a.csrf_ok(&headers(&[(CSRF_HEADER, "0")])));
        assert!(a.csrf_ok(&headers(&[(CSRF_HEADER, a.csrf())])));
        assert!(!a.token_matches(""));
    }
}
