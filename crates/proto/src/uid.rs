//! What a uid is, as a type: a [`Uid`] exists only once its text was checked.
//!
//! A WebSocket client's first text message, a text-port line's `uid` field, a
//! token's `sub` and every uid in the admin protocol become a [`Uid`] where they
//! enter pushd, so `" 42 "`, `"42"` and `42` name the same user everywhere and
//! nothing behind the edge checks again.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// The longest uid accepted, in bytes of UTF-8 after trimming.
pub const MAX_UID_LEN: usize = 128;

/// Why a candidate uid was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UidError {
    /// Nothing left after trimming whitespace.
    #[error("uid is empty")]
    Empty,
    /// Longer than [`MAX_UID_LEN`] bytes.
    #[error("uid is longer than {MAX_UID_LEN} bytes")]
    TooLong,
    /// Contains a control character (newline, NUL, escape, ...).
    #[error("uid contains a control character")]
    ControlCharacter,
}

/// A valid, normalised uid: 1 to [`MAX_UID_LEN`] bytes of UTF-8 without
/// control characters or surrounding whitespace.
///
/// Reference-counted, so the registry, its uid index and every message that
/// names the uid share one copy.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(Arc<str>);

impl Uid {
    /// Trims surrounding whitespace and checks what is left.
    pub fn parse(raw: &str) -> Result<Uid, UidError> {
        normalize_uid(raw).map(|uid| Uid(Arc::from(uid)))
    }

    /// The uid's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Trims surrounding whitespace and checks the result is a valid uid,
/// without allocating; [`Uid::parse`] is the same check.
pub fn normalize_uid(raw: &str) -> Result<&str, UidError> {
    let uid = raw.trim();
    if uid.is_empty() {
        return Err(UidError::Empty);
    }
    if uid.len() > MAX_UID_LEN {
        return Err(UidError::TooLong);
    }
    if uid.chars().any(char::is_control) {
        return Err(UidError::ControlCharacter);
    }
    Ok(uid)
}

impl Deref for Uid {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by [`Uid`] be searched with a `&str`.
impl Borrow<str> for Uid {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Uid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A uid on the wire is a JSON string, checked as it is read.
impl<'de> Deserialize<'de> for Uid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Uid::parse(&raw)
            .map_err(|err| serde::de::Error::custom(format!("invalid uid {raw:?}: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_surrounding_whitespace() {
        assert_eq!(Uid::parse("  42\r\n").unwrap().as_str(), "42");
        assert_eq!(Uid::parse("\u{3000}émile\t").unwrap().as_str(), "émile");
    }

    #[test]
    fn rejects_empty_and_blank() {
        assert_eq!(Uid::parse(""), Err(UidError::Empty));
        assert_eq!(Uid::parse(" \t\n"), Err(UidError::Empty));
    }

    #[test]
    fn length_limit_is_in_bytes() {
        assert!(Uid::parse(&"a".repeat(MAX_UID_LEN)).is_ok());
        assert_eq!(
            Uid::parse(&"a".repeat(MAX_UID_LEN + 1)),
            Err(UidError::TooLong)
        );
        // 43 three-byte characters are 129 bytes.
        assert_eq!(Uid::parse(&"€".repeat(43)), Err(UidError::TooLong));
    }

    #[test]
    fn rejects_inner_control_characters() {
        assert_eq!(Uid::parse("a\nb"), Err(UidError::ControlCharacter));
        assert_eq!(Uid::parse("a\0b"), Err(UidError::ControlCharacter));
        assert_eq!(Uid::parse("a\u{1b}[31m"), Err(UidError::ControlCharacter));
        assert_eq!(Uid::parse("user 42").unwrap().as_str(), "user 42");
    }

    #[test]
    fn the_wire_form_is_a_string_checked_when_read() {
        let uid: Uid = serde_json::from_str(r#"" 42 ""#).unwrap();
        assert_eq!(serde_json::to_string(&uid).unwrap(), r#""42""#);
        let err = serde_json::from_str::<Uid>(r#""""#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid uid \"\": uid is empty")
        );
    }
}
