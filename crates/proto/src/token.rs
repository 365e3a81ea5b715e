//! Signed tokens that carry a uid, for `--auth token`.
//!
//! The format is the field's convention, so that every backend language can
//! mint tokens with its standard library: a JWT whose `sub` is the uid and
//! whose `exp` (seconds since the epoch) is required, signed with HS256 and a
//! shared secret, or with RS256, ES256 or EdDSA and a private key whose public
//! half pushd holds. pushd verifies them; `pushctl token` mints HS256 ones;
//! keys are read from files, never from the command line.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::uid::{Uid, UidError, normalize_uid};

/// Shortest accepted secret, in bytes (HS256 wants at least its 256 bits).
pub const MIN_SECRET_LEN: usize = 32;

/// Clock difference tolerated when checking `exp`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// The claims pushd reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The uid.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// Why a token or a secret was refused.
#[derive(Debug, Error)]
pub enum TokenError {
    /// The secret file could not be read.
    #[error("cannot read the secret file {path}: {source}")]
    SecretFile {
        /// The path tried.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The secret is too short to be safe.
    #[error("the secret in {path} is {len} bytes; at least {MIN_SECRET_LEN} are required")]
    ShortSecret {
        /// The path read.
        path: String,
        /// Its length after trimming.
        len: usize,
    },
    /// The public key file could not be read or holds no usable key.
    #[error("cannot use the public key in {path}: {reason}")]
    PublicKey {
        /// The path tried.
        path: String,
        /// Why.
        reason: String,
    },
    /// Bad signature, expired, malformed, wrong algorithm, no `exp`.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The `sub` claim is not a valid uid.
    #[error("invalid uid in token: {0}")]
    Uid(#[from] UidError),
}

/// Reads a shared secret from `path`; surrounding whitespace (a trailing
/// newline from `echo` or an editor) is not part of it.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, TokenError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TokenError::SecretFile {
        path: shown.clone(),
        source,
    })?;
    let secret = bytes.trim_ascii().to_vec();
    if secret.len() < MIN_SECRET_LEN {
        return Err(TokenError::ShortSecret {
            path: shown,
            len: secret.len(),
        });
    }
    Ok(secret)
}

/// Mints a token for `uid` that expires at `exp` (seconds since the epoch).
pub fn mint(secret: &[u8], uid: &str, exp: u64) -> Result<String, TokenError> {
    let claims = Claims {
        sub: normalize_uid(uid)?.to_owned(),
        exp,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|err| TokenError::Invalid(err.to_string()))
}

/// Checks tokens against one secret.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier { .. }")
    }
}

impl Verifier {
    /// A verifier for HS256 tokens signed with `secret`.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        Verifier {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A verifier for tokens signed by the private half of the PEM public key
    /// in `path` (`-----BEGIN PUBLIC KEY-----`, or `RSA PUBLIC KEY`): RS256
    /// (and RS384/RS512, PS256/384/512) for an RSA key, ES256 (ES384) for a
    /// P-256 (P-384) key, EdDSA for an Ed25519 key.
    pub fn from_public_key_file(path: &Path) -> Result<Self, TokenError> {
        let refuse = |reason: String| TokenError::PublicKey {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|err| refuse(err.to_string()))?;
        use Algorithm::*;
        type Decode = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;
        let families: [(Decode, &[Algorithm]); 3] = [
            (
                DecodingKey::from_rsa_pem,
                &[RS256, RS384, RS512, PS256, PS384, PS512],
            ),
            (DecodingKey::from_ec_pem, &[ES256, ES384]),
            (DecodingKey::from_ed_pem, &[EdDSA]),
        ];
        for (decode, algorithms) in families {
            if let Ok(key) = decode(&pem) {
                let mut validation = Validation::new(algorithms[0]);
                validation.algorithms = algorithms.to_vec();
                validation.leeway = LEEWAY_SECS;
                return Ok(Verifier { key, validation });
            }
        }
        Err(refuse(
            "not a PEM RSA, EC (P-256, P-384) or Ed25519 public key".into(),
        ))
    }

    /// The uid of a valid token.
    pub fn verify(&self, token: &str) -> Result<Uid, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token.trim(), &self.key, &self.validation)
            .map_err(|err| TokenError::Invalid(err.to_string()))?;
        Ok(Uid::parse(&data.claims.sub)?)
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn minted_tokens_verify_to_their_uid() {
        let token = mint(SECRET, " 42 ", now_secs() + 60).unwrap();
        assert_eq!(Verifier::new(SECRET).verify(&token).unwrap().as_str(), "42");
    }

    #[test]
    fn expired_wrong_key_and_garbage_are_refused() {
        let verifier = Verifier::new(SECRET);
        let expired = mint(SECRET, "42", now_secs() - LEEWAY_SECS - 5).unwrap();
        assert!(
            verifier
                .verify(&expired)
                .unwrap_err()
                .to_string()
                .contains("Expired")
        );
        let other = mint(
            b"another secret of thirty-two bytes!",
            "42",
            now_secs() + 60,
        )
        .unwrap();
        assert!(verifier.verify(&other).is_err());
        assert!(verifier.verify("42").is_err());
        assert!(verifier.verify("").is_err());
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        #[derive(Serialize)]
        struct NoExp {
            sub: String,
        }
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &NoExp { sub: "42".into() },
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(Verifier::new(SECRET).verify(&token).is_err());
    }

    #[test]
    fn short_secrets_are_refused() {
        let dir = std::env::temp_dir().join(format!("pushd-secret-{}", std::process::id()));
        std::fs::write(&dir, "short\n").unwrap();
        assert!(matches!(
            read_secret_file(&dir),
            Err(TokenError::ShortSecret { len: 5, .. })
        ));
        std::fs::write(&dir, format!("{}\n", String::from_utf8_lossy(SECRET))).unwrap();
        assert_eq!(read_secret_file(&dir).unwrap(), SECRET);
        std::fs::remove_file(&dir).unwrap();
    }
}
