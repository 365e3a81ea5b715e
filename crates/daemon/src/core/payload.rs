//! A message as pushd holds it: UTF-8 text in one reference-counted
//! allocation, shared by every queue, mailbox and socket write that holds it
//! (a clone is a count, not a copy). The core's own type, so that it speaks no
//! adapter's or library's wire type.

use std::fmt;

use bytes::Bytes;

/// UTF-8 text, shared. The bytes are valid UTF-8 by construction: every way
/// to make one starts from a `str` or checks.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Payload(Bytes);

impl Payload {
    /// A payload of a constant, with no allocation.
    pub(crate) const fn from_static(text: &'static str) -> Self {
        Payload(Bytes::from_static(text.as_bytes()))
    }

    /// `prefix` followed by `payload`, in one new allocation (a `pushd.v2`
    /// frame's `ID PAYLOAD`).
    pub(crate) fn prefixed(prefix: fmt::Arguments<'_>, payload: &Payload) -> Self {
        use std::io::Write;
        // Room for an id (`BOOT-N `: about 35 bytes) without growing.
        let mut joined = Vec::with_capacity(payload.len() + 40);
        joined
            .write_fmt(prefix)
            .expect("writing to a Vec cannot fail");
        joined.extend_from_slice(payload.as_bytes());
        // Formatted text, then UTF-8 text: UTF-8.
        Payload(Bytes::from(joined))
    }

    /// The bytes, as written to a socket.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Bytes of the payload.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The text. Checks the bytes again (no `unsafe` here), so it is for
    /// logs and tests, not for the push path, which moves bytes.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a payload is UTF-8 by construction")
    }
}

impl From<String> for Payload {
    fn from(text: String) -> Self {
        Payload(Bytes::from(text))
    }
}

impl From<&str> for Payload {
    fn from(text: &str) -> Self {
        Payload(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl TryFrom<Bytes> for Payload {
    type Error = std::str::Utf8Error;

    /// Bytes that prove to be UTF-8.
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Payload(bytes))
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Payload {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// As text: the state file and the upgrade's hand-over carry payloads.
impl serde::Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// From text, checked to be UTF-8 like every way into a payload.
impl<'de> serde::Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Payload::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_shared_text() {
        let hello = Payload::from("héllo");
        let copy = hello.clone();
        assert_eq!(copy.as_bytes().as_ptr(), hello.as_bytes().as_ptr());
        assert_eq!(
            Payload::prefixed(format_args!("{}-{} ", 1, 2), &hello),
            "1-2 héllo"
        );
        assert_eq!(hello.len(), 6);
        assert!(Payload::try_from(Bytes::from_static(b"\xff")).is_err());
        assert_eq!(Payload::from_static("!gap").to_string(), "!gap");
    }
}
