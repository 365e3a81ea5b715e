//! The text port's request line, compatible with the Workerman recipe.
//!
//! A backend writes one JSON object per line with a `uid` field; pushd
//! forwards the line's bytes untouched to every connection of that uid.
//! This module only finds and normalises the uid: the line itself is never
//! re-encoded, so key order, spacing and unknown fields survive.

use std::borrow::Cow;

use serde::Deserialize;
use thiserror::Error;

use crate::uid::{UidError, normalize_uid};

/// Default longest accepted line, in bytes, without its line ending.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// Why a line was answered `fail` without looking up any connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineError {
    /// Not a JSON object, or not valid JSON at all.
    #[error("line is not a JSON object: {0}")]
    InvalidJson(String),
    /// The object has no `uid` field.
    #[error("line has no uid field")]
    MissingUid,
    /// `uid` is neither a string nor an integer (null, float, bool, array, object).
    #[error("uid must be a string or an integer")]
    UidType,
    /// The uid string is not a valid uid.
    #[error(transparent)]
    Uid(#[from] UidError),
}

/// The one field pushd reads; every other field is skipped (but still
/// validated as JSON by the parser).
#[derive(Deserialize)]
struct PushLine<'a> {
    #[serde(borrow, default)]
    uid: RawUid<'a>,
}

/// A uid as it may appear on the wire. Strings with escapes cannot be
/// borrowed, hence the `Cow`.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum RawUid<'a> {
    Unsigned(u64),
    Signed(i64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
    Other(serde::de::IgnoredAny),
    /// The field is absent (never produced by the wire, only by `default`).
    #[serde(skip_deserializing)]
    #[default]
    Missing,
}

/// Parses one request line (without its `\n` or `\r\n`) and returns the
/// normalised uid it addresses.
///
/// The caller forwards `line` itself as the text frame; a line that parses is
/// valid JSON and therefore valid UTF-8.
pub fn parse_push_line(line: &[u8]) -> Result<Cow<'_, str>, LineError> {
    let parsed: PushLine<'_> =
        serde_json::from_slice(line).map_err(|e| LineError::InvalidJson(e.to_string()))?;
    match parsed.uid {
        RawUid::Unsigned(n) => Ok(Cow::Owned(n.to_string())),
        RawUid::Signed(n) => Ok(Cow::Owned(n.to_string())),
        RawUid::Text(Cow::Borrowed(s)) => Ok(Cow::Borrowed(normalize_uid(s)?)),
        RawUid::Text(Cow::Owned(s)) => Ok(Cow::Owned(normalize_uid(&s)?.to_owned())),
        RawUid::Other(_) => Err(LineError::UidType),
        RawUid::Missing => Err(LineError::MissingUid),
    }
}

/// Strips one trailing `\n` and then one `\r`, as the text port accepts both
/// line endings.
pub fn trim_line_ending(mut line: &[u8]) -> &[u8] {
    if let Some(rest) = line.strip_suffix(b"\n") {
        line = rest;
    }
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(line: &str) -> Result<String, LineError> {
        parse_push_line(line.as_bytes()).map(Cow::into_owned)
    }

    #[test]
    fn string_and_integer_uids_are_the_same_uid() {
        assert_eq!(uid(r#"{"uid":42,"msg":"hi"}"#).unwrap(), "42");
        assert_eq!(uid(r#"{"uid":"42","msg":"hi"}"#).unwrap(), "42");
        assert_eq!(uid(r#"{"uid":" 42 "}"#).unwrap(), "42");
        assert_eq!(uid(r#"{"uid":-7}"#).unwrap(), "-7");
    }

    #[test]
    fn escaped_strings_are_decoded_then_normalised() {
        assert_eq!(uid(r#"{"uid":"\u00e9mile\t"}"#).unwrap(), "émile");
    }

    #[test]
    fn other_json_types_are_bad_requests() {
        for line in [
            r#"{"uid":null}"#,
            r#"{"uid":4.5}"#,
            r#"{"uid":true}"#,
            r#"{"uid":[1]}"#,
            r#"{"uid":{"a":1}}"#,
        ] {
            assert_eq!(uid(line), Err(LineError::UidType), "{line}");
        }
    }

    #[test]
    fn missing_uid_and_invalid_json_fail() {
        assert_eq!(uid(r#"{"msg":"hi"}"#), Err(LineError::MissingUid));
        assert!(matches!(uid("hello"), Err(LineError::InvalidJson(_))));
        assert!(matches!(uid("[1,2]"), Err(LineError::InvalidJson(_))));
        assert!(matches!(uid(r#"{"uid":1"#), Err(LineError::InvalidJson(_))));
        assert!(matches!(uid(""), Err(LineError::InvalidJson(_))));
        assert!(matches!(
            parse_push_line(b"{\"uid\":\"\xff\"}"),
            Err(LineError::InvalidJson(_))
        ));
    }

    #[test]
    fn invalid_uid_strings_fail() {
        assert_eq!(uid(r#"{"uid":"  "}"#), Err(LineError::Uid(UidError::Empty)));
        assert_eq!(
            uid(r#"{"uid":"a\nb"}"#),
            Err(LineError::Uid(UidError::ControlCharacter))
        );
    }

    #[test]
    fn line_endings() {
        assert_eq!(trim_line_ending(b"ab\r\n"), b"ab");
        assert_eq!(trim_line_ending(b"ab\n"), b"ab");
        assert_eq!(trim_line_ending(b"ab"), b"ab");
        assert_eq!(trim_line_ending(b"ab\r"), b"ab");
    }
}
