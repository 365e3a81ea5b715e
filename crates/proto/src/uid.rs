//! What a uid is.
//!
//! A WebSocket client's first text message and a text-port line's `uid` field
//! both go through [`normalize_uid`], so `" 42 "`, `"42"` and `42` name the
//! same user everywhere.

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

/// Trims surrounding whitespace and checks the result is a valid uid:
/// 1 to [`MAX_UID_LEN`] bytes of UTF-8 without control characters.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_surrounding_whitespace() {
        assert_eq!(normalize_uid("  42\r\n"), Ok("42"));
        assert_eq!(normalize_uid("\u{3000}émile\t"), Ok("émile"));
    }

    #[test]
    fn rejects_empty_and_blank() {
        assert_eq!(normalize_uid(""), Err(UidError::Empty));
        assert_eq!(normalize_uid(" \t\n"), Err(UidError::Empty));
    }

    #[test]
    fn length_limit_is_in_bytes() {
        assert!(normalize_uid(&"a".repeat(MAX_UID_LEN)).is_ok());
        assert_eq!(
            normalize_uid(&"a".repeat(MAX_UID_LEN + 1)),
            Err(UidError::TooLong)
        );
        // 43 three-byte characters are 129 bytes.
        assert_eq!(normalize_uid(&"€".repeat(43)), Err(UidError::TooLong));
    }

    #[test]
    fn rejects_inner_control_characters() {
        assert_eq!(normalize_uid("a\nb"), Err(UidError::ControlCharacter));
        assert_eq!(normalize_uid("a\0b"), Err(UidError::ControlCharacter));
        assert_eq!(
            normalize_uid("a\u{1b}[31m"),
            Err(UidError::ControlCharacter)
        );
        assert_eq!(normalize_uid("user 42"), Ok("user 42"));
    }
}
