//! Join tokens: how a node agent finds and trusts a control plane it has never seen.
//!
//! The shape is k3s's: `K10<sha256 of the CA bundle, hex>::node:<secret>`. The agent fetches
//! the CA bundle from the unauthenticated `/cacerts` endpoint over an unverified TLS connection,
//! and trusts it only if its hash equals the token's; from then on it verifies the server with
//! that CA and presents `<secret>` as its bearer token. So the token alone is enough to join,
//! and a man in the middle cannot substitute its own CA.

use sha2::{Digest as _, Sha256};

/// The path of the CA bundle, served without authentication.
pub const CACERTS_PATH: &str = "/cacerts";

const PREFIX: &str = "K10";

/// A parsed join token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    /// The SHA-256 of the CA bundle, lower-case hex.
    pub ca_hash: String,
    /// The bearer token the agent presents.
    pub secret: String,
}

/// Why a token is not a join token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinTokenError {
    #[error("the join token does not start with `K10<CA hash>::`")]
    Shape,
    #[error("the join token's CA hash `{0}` is not 64 hex digits")]
    Hash(String),
    #[error("the join token has no secret after `::node:`")]
    Secret,
}

impl JoinToken {
    /// The token for a CA bundle and a bearer token.
    pub fn new(ca_pem: &str, secret: &str) -> Self {
        Self {
            ca_hash: ca_hash(ca_pem),
            secret: secret.to_owned(),
        }
    }

    /// Parses `K10<hash>::node:<secret>`.
    pub fn parse(text: &str) -> Result<Self, JoinTokenError> {
        let (hash, credentials) = text
            .trim()
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once("::"))
            .ok_or(JoinTokenError::Shape)?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(JoinTokenError::Hash(hash.to_owned()));
        }
        let secret = credentials
            .strip_prefix("node:")
            .filter(|s| !s.is_empty())
            .ok_or(JoinTokenError::Secret)?;
        Ok(Self {
            ca_hash: hash.to_ascii_lowercase(),
            secret: secret.to_owned(),
        })
    }

    /// Whether `ca_pem`, as fetched from `/cacerts`, is the CA this token pins.
    pub fn trusts(&self, ca_pem: &str) -> bool {
        ca_hash(ca_pem) == self.ca_hash
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{}::node:{}", self.ca_hash, self.secret)
    }
}

/// The SHA-256 of a CA bundle's bytes, as served, in lower-case hex.
pub fn ca_hash(ca_pem: &str) -> String {
    Sha256::digest(ca_pem.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_pins_its_ca() {
        let token = JoinToken::new("-----BEGIN CERTIFICATE-----\nabc\n", "s3cret");
        let text = token.to_string();
        assert!(
            text.starts_with("K10") && text.ends_with("::node:s3cret"),
            "{text}"
        );
        let parsed = JoinToken::parse(&text).unwrap();
        assert_eq!(parsed, token);
        assert!(parsed.trusts("-----BEGIN CERTIFICATE-----\nabc\n"));
        assert!(!parsed.trusts("-----BEGIN CERTIFICATE-----\nabd\n"));
        // Known vector: SHA-256 of the empty string.
        assert_eq!(
            ca_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        assert_eq!(JoinToken::parse("abc"), Err(JoinTokenError::Shape));
        assert!(matches!(
            JoinToken::parse("K10abc::node:x"),
            Err(JoinTokenError::Hash(h)) if h == "abc"
        ));
        let hash = "0".repeat(64);
        assert_eq!(
            JoinToken::parse(&format!("K10{hash}::server:x")),
            Err(JoinTokenError::Secret)
        );
        assert_eq!(
            JoinToken::parse(&format!("K10{hash}::node:")),
            Err(JoinTokenError::Secret)
        );
    }
}
