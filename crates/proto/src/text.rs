//! The text port's request line, compatible with the Workerman recipe.
//!
//! A backend writes one JSON object per line with a `uid` field; pushd
//! forwards the line's bytes untouched to every connection of that uid.
//! This module only finds the uid: the line itself is never re-encoded, so
//! key order, spacing and unknown fields survive.
//!
//! The parser takes `&str`: the caller checks UTF-8 once, when it turns the
//! line into the frame it will forward, and nothing here checks it again.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use thiserror::Error;

use crate::uid::{Uid, UidError};

/// Default longest accepted line, in bytes, without its line ending.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// Why a line was answered `fail` without looking up any connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineError {
    /// Not valid JSON.
    #[error("line is not valid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON, but an array, string, number, boolean or null.
    #[error("line is not a JSON object")]
    NotAnObject,
    /// The object has no `uid` field (nor a `group` one).
    #[error("line has no uid field (nor a group field)")]
    MissingUid,
    /// `uid` is neither a string nor an integer (null, float, bool, array, object).
    #[error("uid must be a string or an integer")]
    UidType,
    /// The uid string is not a valid uid.
    #[error(transparent)]
    Uid(#[from] UidError),
}

/// What pushd reads of a request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushLine {
    /// Who it goes to.
    pub to: Target,
    /// `"transient": true`: deliver now or not at all, never keep it in the mailbox.
    pub transient: bool,
}

/// Who a line goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The uid in its `uid` field.
    Uid(Uid),
    /// A line without `uid`: every member of the group in its `group` field
    /// (group names follow the uid rules).
    Group(Uid),
    /// A line with neither: exactly the connection whose id (from `list` or
    /// events) is its `connection` field, a string.
    Connection(String),
}

impl PushLine {
    /// The addressed uid, for a line that has one.
    pub fn uid(&self) -> Option<&Uid> {
        match &self.to {
            Target::Uid(uid) => Some(uid),
            Target::Group(_) | Target::Connection(_) => None,
        }
    }
}

/// The fields pushd reads; every other field is skipped (but still
/// validated as JSON by the parser).
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    uid: Raw<'a>,
    #[serde(borrow, default)]
    group: Raw<'a>,
    #[serde(borrow, default)]
    connection: Raw<'a>,
    #[serde(borrow, default)]
    transient: Raw<'a>,
}

/// A value's JSON text exactly as written, or `None` when the field is absent.
/// Read as raw text so that an integer of any size keeps its digits, and so
/// that a `transient` of another type is ignored rather than failing a line
/// that the original recipe would have forwarded.
#[derive(Default)]
struct Raw<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Not `Option<&RawValue>`: that would read `null` as an absent field.
        <&RawValue>::deserialize(deserializer).map(|raw| Raw(Some(raw)))
    }
}

/// Parses one request line (without its `\n` or `\r\n`): the uid it addresses,
/// and whether it is transient.
pub fn parse_push_line(line: &str) -> Result<PushLine, LineError> {
    // A derived struct also accepts a JSON array of its fields; only an object is a request.
    let invalid = |e: serde_json::Error| LineError::InvalidJson(e.to_string());
    if !line
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        serde_json::from_str::<serde::de::IgnoredAny>(line).map_err(invalid)?;
        return Err(LineError::NotAnObject);
    }
    let fields: Fields<'_> = serde_json::from_str(line).map_err(invalid)?;
    // A line with `uid` is a push to it, whatever else it holds (the original
    // protocol, byte for byte); `group` addresses a group only without `uid`.
    // `connection`, only without either.
    let to = match (fields.uid.0, fields.group.0, fields.connection.0) {
        (Some(raw), _, _) => Target::Uid(name(raw.get())?),
        (None, Some(raw), _) => Target::Group(name(raw.get())?),
        (None, None, Some(raw)) => {
            Target::Connection(serde_json::from_str(raw.get()).map_err(|_| LineError::UidType)?)
        }
        (None, None, None) => return Err(LineError::MissingUid),
    };
    let transient = fields.transient.0.is_some_and(|raw| raw.get() == "true");
    Ok(PushLine { to, transient })
}

/// A uid (or group name) from its raw JSON value: a string, or an integer's digits.
fn name(raw: &str) -> Result<Uid, LineError> {
    match raw.as_bytes()[0] {
        b'"' => {
            // The object parsed, so the string is well-formed: without a backslash
            // its text is what lies between the quotes (no second parse per line).
            let inner = &raw[1..raw.len() - 1];
            let text: std::borrow::Cow<'_, str> = if inner.contains('\\') {
                serde_json::from_str(raw).map_err(|e| LineError::InvalidJson(e.to_string()))?
            } else {
                std::borrow::Cow::Borrowed(inner)
            };
            Ok(Uid::parse(&text)?)
        }
        b'-' | b'0'..=b'9' => Ok(Uid::parse(integer_text(raw)?)?),
        _ => Err(LineError::UidType),
    }
}

/// The decimal text of a JSON integer token: itself, except that `-0` is `0`.
/// A fraction or an exponent (`42.0`, `1e3`) makes it a float, not an integer.
fn integer_text(number: &str) -> Result<&str, LineError> {
    let digits = number.strip_prefix('-').unwrap_or(number);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LineError::UidType);
    }
    // JSON allows no leading zeros, so the only other spelling of zero is `-0`.
    Ok(if digits == "0" { digits } else { number })
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
        parse_push_line(line).map(|line| line.uid().expect("a uid line").as_str().to_owned())
    }

    #[test]
    fn connection_addresses_one_connection_only_in_a_line_without_uid_or_group() {
        let to = |line: &str| parse_push_line(line).unwrap().to;
        let name = |text: &str| Uid::parse(text).unwrap();
        assert_eq!(
            to(r#"{"connection":"n.3","x":1}"#),
            Target::Connection("n.3".into())
        );
        assert_eq!(
            to(r#"{"uid":"u","connection":"n.3"}"#),
            Target::Uid(name("u"))
        );
        assert_eq!(
            to(r#"{"group":"g","connection":"n.3"}"#),
            Target::Group(name("g"))
        );
        assert!(matches!(
            parse_push_line(r#"{"connection":3}"#),
            Err(LineError::UidType)
        ));
    }

    #[test]
    fn group_addresses_a_group_only_in_a_line_without_uid() {
        let to = |line: &str| parse_push_line(line).unwrap().to;
        let name = |text: &str| Uid::parse(text).unwrap();
        assert_eq!(to(r#"{"group":"g","x":1}"#), Target::Group(name("g")));
        assert_eq!(to(r#"{"group":7}"#), Target::Group(name("7")));
        assert_eq!(to(r#"{"uid":"u","group":"g"}"#), Target::Uid(name("u")));
        assert_eq!(to(r#"{"group":"g","uid":5}"#), Target::Uid(name("5")));
        assert!(matches!(
            parse_push_line(r#"{"group":null}"#),
            Err(LineError::UidType)
        ));
        assert!(matches!(
            parse_push_line(r#"{"group":""}"#),
            Err(LineError::Uid(_))
        ));
    }

    #[test]
    fn only_transient_true_is_transient() {
        let transient = |line: &str| parse_push_line(line).unwrap().transient;
        assert!(transient(r#"{"uid":1,"transient":true}"#));
        assert!(transient(r#"{"transient" : true, "uid":1}"#));
        for line in [
            r#"{"uid":1}"#,
            r#"{"uid":1,"transient":false}"#,
            r#"{"uid":1,"transient":"true"}"#,
            r#"{"uid":1,"transient":1}"#,
            r#"{"uid":1,"data":{"transient":true}}"#,
        ] {
            assert!(!transient(line), "{line}");
        }
    }

    #[test]
    fn string_and_integer_uids_are_the_same_uid() {
        assert_eq!(uid(r#"{"uid":42,"msg":"hi"}"#).unwrap(), "42");
        assert_eq!(uid(r#"{"uid":"42","msg":"hi"}"#).unwrap(), "42");
        assert_eq!(uid(r#"{"uid":" 42 "}"#).unwrap(), "42");
        assert_eq!(uid(r#"{"uid":-7}"#).unwrap(), "-7");
    }

    #[test]
    fn integers_are_taken_by_value_whatever_their_size() {
        assert_eq!(uid(r#"{"uid":-0}"#).unwrap(), "0");
        assert_eq!(uid(r#"{"uid":0}"#).unwrap(), "0");
        assert_eq!(
            uid(r#"{"uid":12345678901234567890123}"#).unwrap(),
            "12345678901234567890123"
        );
        assert_eq!(
            uid(r#"{"uid":-18446744073709551616}"#).unwrap(),
            "-18446744073709551616"
        );
        assert_eq!(
            uid(&format!(r#"{{"uid":{}}}"#, "9".repeat(129))),
            Err(LineError::Uid(UidError::TooLong))
        );
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
            r#"{"uid":42.0}"#,
            r#"{"uid":1e3}"#,
            r#"{"uid":-1E3}"#,
            r#"{"uid":true}"#,
            r#"{"uid":[1]}"#,
            r#"{"uid":{"a":1}}"#,
        ] {
            assert_eq!(uid(line), Err(LineError::UidType), "{line}");
        }
    }

    #[test]
    fn only_an_object_is_a_request() {
        for line in [
            r#"["x"]"#, r#" [42]"#, r#""x""#, "42", "true", "false", "null",
        ] {
            assert_eq!(uid(line), Err(LineError::NotAnObject), "{line}");
        }
        assert_eq!(uid(r#" {"uid":"x"} "#).unwrap(), "x");
    }

    #[test]
    fn missing_uid_and_invalid_json_fail() {
        assert_eq!(uid(r#"{"msg":"hi"}"#), Err(LineError::MissingUid));
        assert!(matches!(uid("hello"), Err(LineError::InvalidJson(_))));
        assert!(matches!(uid(r#"{"uid":1"#), Err(LineError::InvalidJson(_))));
        assert!(matches!(uid(""), Err(LineError::InvalidJson(_))));
        assert!(matches!(
            uid(r#"{"uid":1,"uid":2}"#),
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

    proptest::proptest! {
        /// A string uid reads the same with or without the shortcut for
        /// strings with no escape: as serde_json decodes it.
        #[test]
        fn a_string_uid_is_what_json_says(text in "(?s).{0,20}") {
            let line = serde_json::json!({ "uid": text }).to_string();
            let decoded: String = serde_json::from_str(&serde_json::json!(text).to_string()).unwrap();
            proptest::prop_assert_eq!(
                parse_push_line(&line).map(|l| l.uid().unwrap().as_str().to_owned()),
                Uid::parse(&decoded).map(|u| u.as_str().to_owned()).map_err(LineError::from)
            );
        }
    }

    #[test]
    fn line_endings() {
        assert_eq!(trim_line_ending(b"ab\r\n"), b"ab");
        assert_eq!(trim_line_ending(b"ab\n"), b"ab");
        assert_eq!(trim_line_ending(b"ab"), b"ab");
        assert_eq!(trim_line_ending(b"ab\r"), b"ab");
    }
}
