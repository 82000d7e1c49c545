//! Masking: replaces every known secret value, and its common encodings, before any output.

use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::secret::MASK;

/// Secrets shorter than this are not masked: masking two letters everywhere would garble all
/// output while protecting nothing. Registering one logs a warning instead.
pub const MIN_MASKED_LEN: usize = 3;

/// A shared, growing set of secret values. Cloning shares the set.
#[derive(Clone, Default)]
pub struct Masker {
    inner: Arc<RwLock<Patterns>>,
}

#[derive(Default)]
struct Patterns {
    values: Vec<String>,
    matcher: Option<AhoCorasick>,
}

impl Masker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a secret value; returns false when it is too short to be masked.
    pub fn add(&self, secret: &str) -> bool {
        if secret.chars().count() < MIN_MASKED_LEN {
            return false;
        }
        let mut patterns = self
            .inner
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        if patterns.values.iter().any(|known| known == secret) {
            return true;
        }
        patterns.values.push(secret.to_owned());
        let variants: Vec<String> = patterns.values.iter().flat_map(|v| encodings(v)).collect();
        patterns.matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&variants)
            .ok();
        true
    }

    /// True when no secret has been registered, so callers can skip work.
    pub fn is_empty(&self) -> bool {
        self.read().values.is_empty()
    }

    /// Returns `text` with every secret (in any known encoding) replaced by the mask.
    pub fn mask(&self, text: &str) -> String {
        let patterns = self.read();
        match &patterns.matcher {
            Some(matcher) if matcher.is_match(text) => {
                let masks = vec![MASK; matcher.patterns_len()];
                matcher.replace_all(text, &masks)
            }
            _ => text.to_owned(),
        }
    }

    /// Masks every string inside a JSON value, keys included.
    pub fn mask_json(&self, value: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        self.mask_json_inner(value);
    }

    fn mask_json_inner(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(text) => {
                let masked = self.mask(text);
                if masked != *text {
                    *text = masked;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.mask_json_inner(item)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    self.mask_json_inner(&mut item);
                    map.insert(self.mask(&key), item);
                }
            }
            _ => {}
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Patterns> {
        self.inner
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The value itself and the forms it commonly takes on its way into a log line: base64 (both
/// alphabets, with and without padding), URL-encoding and JSON string escaping.
fn encodings(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let mut forms = vec![
        secret.to_owned(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
        secret.replace(' ', "+"),
    ];
    if let Ok(quoted) = serde_json::to_string(secret) {
        forms.push(quoted[1..quoted.len() - 1].to_owned());
    }
    forms.sort();
    forms.dedup();
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_plain_and_encoded_forms() {
        let masker = Masker::new();
        assert!(masker.add("p@ss w\"rd/42"));
        let b64 = STANDARD.encode("p@ss w\"rd/42");
        let text = format!(
            "plain p@ss w\"rd/42 b64 {b64} url p%40ss%20w%22rd%2F42 json p@ss w\\\"rd/42 end"
        );
        let masked = masker.mask(&text);
        assert_eq!(masked, "plain *** b64 *** url *** json *** end");
    }

    #[test]
    fn masks_inside_json_values_and_keys() {
        let masker = Masker::new();
        masker.add("topsecret");
        let mut value = serde_json::json!({"a": ["x topsecret y"], "topsecret": 1});
        masker.mask_json(&mut value);
        assert_eq!(value, serde_json::json!({"a": ["x *** y"], "***": 1}));
    }

    #[test]
    fn refuses_values_too_short_to_mask() {
        let masker = Masker::new();
        assert!(!masker.add("ab"));
        assert_eq!(masker.mask("ab cd"), "ab cd");
    }

    #[test]
    fn longest_match_wins_when_secrets_overlap() {
        let masker = Masker::new();
        masker.add("secret");
        masker.add("secret-and-more");
        assert_eq!(masker.mask("[secret-and-more]"), "[***]");
    }
}
