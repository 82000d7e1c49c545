//! The opaque secret value that scripts hand to bindings but can never print.

use std::fmt;
use std::sync::Arc;

/// A secret value. Its text is reachable only through [`Secret::expose`], which bindings call
/// at the moment they hand the value to a client library; `Debug` and `Display` print a mask.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    name: Arc<str>,
    value: Arc<str>,
}

/// What every output shows in place of a secret value.
pub const MASK: &str = "***";

impl Secret {
    /// Wraps `value`; `name` says where it came from (shown in place of the value).
    pub fn new(name: impl Into<Arc<str>>, value: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The reference the script used to obtain the secret, safe to show.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The secret text. Call it only to hand the value to a client library.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Length in characters, which scripts may check (e.g. "at least 32 characters").
    pub fn char_len(&self) -> usize {
        self.value.chars().count()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}: {MASK})", self.name)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let secret = Secret::new("env:TOKEN", "hunter2-very-secret");
        assert_eq!(secret.to_string(), "***");
        let debug = format!("{secret:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("env:TOKEN"));
        assert_eq!(secret.expose(), "hunter2-very-secret");
    }
}
