//! Checking a JWT: its shape, an unsigned `alg: none` refused before anything else, the key
//! (HMAC secret, RSA/EC/Ed PEM, or a JWKS entry) and the claims, with a reason on every refusal.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::bindings::tls::certificate::rfc3339;

/// A token split into its decoded header and claims, not yet trusted.
pub struct Parts {
    pub header: Value,
    pub claims: Value,
}

/// Why a token or key cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refusal {
    #[error("not a JWT: {0}")]
    Malformed(String),
    #[error("rejected: the token is unsigned (alg: none)")]
    Unsigned,
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("{0}")]
    Key(String),
}

/// Decodes header and claims without verifying anything.
pub fn split(token: &str) -> Result<Parts, Refusal> {
    let pieces: Vec<&str> = token.trim().split('.').collect();
    if pieces.len() != 3 {
        return Err(Refusal::Malformed(format!(
            "expected three dot-separated parts, found {}",
            pieces.len()
        )));
    }
    Ok(Parts {
        header: segment(pieces[0], "header")?,
        claims: segment(pieces[1], "claims")?,
    })
}

fn segment(text: &str, what: &str) -> Result<Value, Refusal> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| Refusal::Malformed(format!("the {what} is not base64url")))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|_| Refusal::Malformed(format!("the {what} is not JSON")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(Refusal::Malformed(format!(
            "the {what} is not a JSON object"
        )))
    }
}

/// What a verification checks besides the signature.
pub struct Rules {
    pub algorithms: Vec<Algorithm>,
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub subject: Option<String>,
    pub leeway: u64,
    pub required: Vec<String>,
}

/// Where the key comes from.
pub enum KeySource {
    /// A shared secret or a PEM public key (or certificate) as text.
    Text(String),
    /// A JWKS document already fetched.
    Jwks(Value),
}

/// Verifies `token` and returns its parts; the refusal says why not.
pub fn verify(token: &str, key: &KeySource, rules: &Rules) -> Result<Parts, Refusal> {
    let parts = split(token)?;
    let alg = parts.header["alg"].as_str().unwrap_or_default();
    if alg.eq_ignore_ascii_case("none") || alg.is_empty() {
        return Err(Refusal::Unsigned);
    }
    let header_alg: Algorithm = alg
        .parse()
        .map_err(|_| Refusal::Rejected(format!("unknown algorithm `{alg}`")))?;
    let (key, allowed) = decoding_key(key, &parts.header, header_alg, &rules.algorithms)?;
    if !allowed.contains(&header_alg) {
        return Err(Refusal::Rejected(format!(
            "the token is signed with {alg}, but only {} is accepted",
            names(&allowed)
        )));
    }
    let validation = validation(rules, allowed);
    jsonwebtoken::decode::<Value>(token.trim(), &key, &validation)
        .map_err(|err| explain(err.kind(), &parts.claims, rules))?;
    Ok(parts)
}

fn validation(rules: &Rules, allowed: Vec<Algorithm>) -> Validation {
    let mut validation = Validation::new(allowed[0]);
    validation.algorithms = allowed;
    validation.leeway = rules.leeway;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&rules.required);
    if rules.issuers.is_empty() {
        validation.iss = None;
    } else {
        validation.set_issuer(&rules.issuers);
    }
    if rules.audiences.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&rules.audiences);
    }
    validation.sub = rules.subject.clone();
    validation
}

fn names(algorithms: &[Algorithm]) -> String {
    algorithms
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key to verify with and the algorithms it may verify: the script's `alg` when given,
/// else every algorithm of the key's family (never another family, which is how algorithm
/// confusion attacks work).
fn decoding_key(
    source: &KeySource,
    header: &Value,
    header_alg: Algorithm,
    wanted: &[Algorithm],
) -> Result<(DecodingKey, Vec<Algorithm>), Refusal> {
    let (key, from_key) = match source {
        KeySource::Text(text) => text_key(text, wanted.first().copied().unwrap_or(header_alg))?,
        KeySource::Jwks(document) => jwks_key(document, header)?,
    };
    let allowed = if !wanted.is_empty() {
        wanted.to_vec()
    } else if let Some(alg) = from_key {
        vec![alg]
    } else {
        key.family().algorithms().to_vec()
    };
    Ok((key, allowed))
}

fn text_key(text: &str, alg: Algorithm) -> Result<(DecodingKey, Option<Algorithm>), Refusal> {
    let pem = text.contains("-----BEGIN");
    let bad = |kind: &str| Refusal::Key(format!("the key is not a usable {kind} key"));
    let key = match (pem, alg) {
        (false, _) => DecodingKey::from_secret(text.as_bytes()).map_err(|_| bad("HMAC"))?,
        (true, Algorithm::ES256 | Algorithm::ES384) => {
            DecodingKey::from_ec_pem(text.as_bytes()).map_err(|_| bad("EC"))?
        }
        (true, Algorithm::EdDSA) => {
            DecodingKey::from_ed_pem(text.as_bytes()).map_err(|_| bad("Ed25519"))?
        }
        (true, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => {
            return Err(Refusal::Key(
                "a PEM key cannot verify an HMAC (HS*) token: give the shared secret".to_owned(),
            ));
        }
        (true, _) => pem_key(text)?,
    };
    Ok((key, None))
}

/// A PEM key of whatever kind it is, for when no algorithm says which to expect.
fn pem_key(text: &str) -> Result<DecodingKey, Refusal> {
    let bytes = text.as_bytes();
    DecodingKey::from_rsa_pem(bytes)
        .or_else(|_| DecodingKey::from_ec_pem(bytes))
        .or_else(|_| DecodingKey::from_ed_pem(bytes))
        .map_err(|_| {
            Refusal::Key("the PEM text is not an RSA, EC or Ed25519 public key".to_owned())
        })
}

fn jwks_key(document: &Value, header: &Value) -> Result<(DecodingKey, Option<Algorithm>), Refusal> {
    let set: JwkSet = serde_json::from_value(document.clone())
        .map_err(|err| Refusal::Key(format!("the JWKS is not a key set: {err}")))?;
    let kid = header["kid"].as_str();
    let jwk = match (kid, set.keys.as_slice()) {
        (Some(kid), _) => set
            .find(kid)
            .ok_or_else(|| Refusal::Rejected(format!("no key with kid `{kid}` in the JWKS")))?,
        (None, [only]) => only,
        (None, keys) => {
            return Err(Refusal::Rejected(format!(
                "the token names no kid and the JWKS holds {} keys",
                keys.len()
            )));
        }
    };
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|err| Refusal::Key(format!("the JWKS key is unusable: {err}")))?;
    let alg = jwk
        .common
        .key_algorithm
        .and_then(|alg| alg.to_string().parse::<Algorithm>().ok());
    Ok((key, alg))
}

/// A refusal from the library, in words.
fn explain(kind: &ErrorKind, claims: &Value, rules: &Rules) -> Refusal {
    let claim = |name: &str| claims[name].clone();
    let reason = match kind {
        ErrorKind::InvalidSignature => {
            "the signature does not match (a different key, or the token was altered)".to_owned()
        }
        ErrorKind::ExpiredSignature => match claim("exp").as_i64() {
            Some(exp) => format!(
                "the token expired at {} (leeway {} s)",
                rfc3339(exp),
                rules.leeway
            ),
            None => "the token has expired".to_owned(),
        },
        ErrorKind::ImmatureSignature => match claim("nbf").as_i64() {
            Some(nbf) => format!("the token is not valid before {}", rfc3339(nbf)),
            None => "the token is not valid yet".to_owned(),
        },
        ErrorKind::InvalidIssuer => format!(
            "issuer {} is not {}",
            claim("iss"),
            rules.issuers.join(" or ")
        ),
        ErrorKind::InvalidAudience => format!(
            "audience {} is not {}",
            claim("aud"),
            rules.audiences.join(" or ")
        ),
        ErrorKind::InvalidSubject => format!("subject {} is not the expected one", claim("sub")),
        ErrorKind::MissingRequiredClaim(name) => format!("the token has no `{name}` claim"),
        ErrorKind::InvalidClaimFormat(name) => format!("the `{name}` claim is malformed"),
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not match the key".to_owned(),
        ErrorKind::Base64(_) | ErrorKind::InvalidToken => {
            "the token is malformed (a part is not valid base64url)".to_owned()
        }
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            return Refusal::Key("the key does not fit the token's algorithm".to_owned());
        }
        other => format!("{other:?}"),
    };
    Refusal::Rejected(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn rules() -> Rules {
        Rules {
            algorithms: Vec::new(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            subject: None,
            leeway: 0,
            required: vec!["exp".into()],
        }
    }

    fn hs256(claims: Value) -> String {
        let key = EncodingKey::from_secret(b"shared-secret-for-tests").unwrap();
        encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn hmac_tokens_verify_and_expired_ones_say_when() {
        let key = KeySource::Text("shared-secret-for-tests".into());
        let good = hs256(json!({"sub": "ops", "exp": now() + 600}));
        assert_eq!(verify(&good, &key, &rules()).unwrap().claims["sub"], "ops");
        let old = hs256(json!({"exp": now() - 600}));
        let refusal = verify(&old, &key, &rules()).err().unwrap().to_string();
        assert!(
            refusal.starts_with("rejected: the token expired at"),
            "{refusal}"
        );
    }

    #[test]
    fn unsigned_and_altered_tokens_are_refused() {
        let key = KeySource::Text("shared-secret-for-tests".into());
        let claims = URL_SAFE_NO_PAD.encode(json!({"exp": now() + 600}).to_string());
        let none = format!("{}.{claims}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(verify(&none, &key, &rules()).err(), Some(Refusal::Unsigned));
        let good = hs256(json!({"exp": now() + 600}));
        let altered = altered_signature(&good);
        let refusal = verify(&altered, &key, &rules()).err().unwrap().to_string();
        assert!(refusal.contains("signature does not match"), "{refusal}");
    }

    /// The token with one character in the middle of its signature changed.
    fn altered_signature(token: &str) -> String {
        let at = token.rfind('.').unwrap() + 10;
        let mut bytes = token.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_pem_key_never_verifies_an_hmac_token() {
        let token = hs256(json!({"exp": now() + 600}));
        let pem =
            KeySource::Text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into());
        let refusal = verify(&token, &pem, &rules()).err();
        assert!(matches!(refusal, Some(Refusal::Key(_))), "{refusal:?}");
    }
}
