//! `--state-file`: a single node's waiting messages, copies kept for resumes,
//! bans and id position, written at a stop and read back at the next start.
//!
//! The file is `MAGIC`, a format version (u32, little-endian), the body's
//! length (u64), the body ([`Saved`] in postcard), and the body's SHA-256. It
//! is written to a temporary file beside it, synced, and renamed over it, so a
//! reader sees the old file or the new one, never half of one. A file that
//! cannot be read (not pushd's, another version, cut short, damaged) is moved
//! aside and pushd starts empty: never a crash, never a refusal to start.
//!
//! A file that was read is removed: from then on the running process holds
//! the state. A crash (SIGKILL) then loses what it held, and never brings back
//! a snapshot older than what was delivered since (which would deliver raw
//! messages twice and hand out message numbers again).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ring::digest::{SHA256, digest};
use tracing::{info, warn};

use crate::core::saved::Saved;

/// What a state file starts with.
const MAGIC: &[u8; 12] = b"pushd-state\n";

/// The body's format: bump it when [`Saved`] changes shape (and keep reading
/// the older ones: version 1 had no groups).
pub(crate) const VERSION: u32 = 2;

/// Version 1's body: [`Saved`] without groups.
#[derive(serde::Deserialize)]
struct SavedV1 {
    saved_at_ms: u64,
    ids: crate::core::saved::SavedIds,
    bans: Vec<(String, u64)>,
    stores: Vec<crate::core::saved::SavedStore>,
}

/// Bytes of the header: magic, version, body length.
const HEADER: usize = MAGIC.len() + 4 + 8;

/// Bytes of the trailer: the body's SHA-256.
const TRAILER: usize = 32;

/// Why a state file could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unreadable {
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    #[error("not a pushd state file")]
    NotOurs,
    #[error("format version {0}; this pushd reads versions 1 to {VERSION}")]
    Version(u32),
    #[error("cut short or damaged (length or checksum does not match)")]
    Damaged,
    #[error("cannot decode it: {0}")]
    Decode(postcard::Error),
}

/// What writing the state took.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    pub(crate) bytes: u64,
    pub(crate) took: Duration,
}

/// Encodes `saved` as a whole file.
fn encode(saved: &Saved) -> Result<Vec<u8>, postcard::Error> {
    let body = postcard::to_stdvec(saved)?;
    let mut file = Vec::with_capacity(HEADER + body.len() + TRAILER);
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&VERSION.to_le_bytes());
    file.extend_from_slice(&(body.len() as u64).to_le_bytes());
    file.extend_from_slice(&body);
    file.extend_from_slice(digest(&SHA256, &body).as_ref());
    Ok(file)
}

/// Decodes a whole file.
fn decode(file: &[u8]) -> Result<Saved, Unreadable> {
    if file.len() < HEADER || &file[..MAGIC.len()] != MAGIC {
        return Err(Unreadable::NotOurs);
    }
    let field = |at: usize, len: usize| &file[MAGIC.len() + at..MAGIC.len() + at + len];
    let version = u32::from_le_bytes(field(0, 4).try_into().expect("4 bytes"));
    if version != VERSION && version != 1 {
        return Err(Unreadable::Version(version));
    }
    let length = u64::from_le_bytes(field(4, 8).try_into().expect("8 bytes"));
    if (file.len() - HEADER) as u64 != length.saturating_add(TRAILER as u64) {
        return Err(Unreadable::Damaged);
    }
    let (body, sum) = file[HEADER..].split_at(length as usize);
    if digest(&SHA256, body).as_ref() != sum {
        return Err(Unreadable::Damaged);
    }
    if version == 1 {
        let v1: SavedV1 = postcard::from_bytes(body).map_err(Unreadable::Decode)?;
        return Ok(Saved {
            saved_at_ms: v1.saved_at_ms,
            ids: v1.ids,
            bans: v1.bans,
            stores: v1.stores,
            groups: Vec::new(),
        });
    }
    postcard::from_bytes(body).map_err(Unreadable::Decode)
}

/// Writes `saved` to `path` atomically: a temporary file in the same
/// directory (made, owner-only, if missing), synced, renamed over `path`, and
/// the directory synced. The file is readable by its owner only: it holds
/// messages.
pub(crate) fn write(path: &Path, saved: &Saved) -> io::Result<Written> {
    let started = Instant::now();
    let file = encode(saved).map_err(io::Error::other)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    let temporary = temporary_path(path);
    let written = (|| {
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        out.write_all(&file)?;
        out.sync_all()?;
        fs::rename(&temporary, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map(|()| Written {
        bytes: file.len() as u64,
        took: started.elapsed(),
    })
}

/// Reads `path`: `Ok(None)` when there is no state file.
pub(crate) fn read(path: &Path) -> Result<Option<Saved>, Unreadable> {
    match fs::read(path) {
        Ok(file) => decode(&file).map(Some),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// What a start reads: the saved state at `path`, if there is a readable one,
/// which is then removed (the running process holds it from now on). An
/// unreadable one is moved aside. Tells the log either way.
pub(crate) fn take(path: &Path) -> Option<Saved> {
    let started = Instant::now();
    match read(path) {
        Ok(Some(saved)) => {
            if let Err(err) = fs::remove_file(path) {
                warn!(path = %path.display(), %err,
                      "cannot remove the state file after reading it; a crash would read it again");
            }
            info!(path = %path.display(), took = ?started.elapsed(), "state file read");
            Some(saved)
        }
        Ok(None) => {
            info!(path = %path.display(), "no state file: starting empty");
            None
        }
        Err(why) => {
            match move_aside(path) {
                Ok(aside) => warn!(path = %path.display(), %why, aside = %aside.display(),
                                   "the state file is unreadable; moved aside, starting empty"),
                Err(err) => warn!(path = %path.display(), %why, %err,
                                  "the state file is unreadable and cannot be moved aside; starting empty"),
            }
            None
        }
    }
}

/// Moves an unreadable state file aside, to `PATH.unreadable-MS`; returns
/// where it went.
pub(crate) fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".unreadable-{}", crate::core::ids::unix_ms()));
    let aside = PathBuf::from(aside);
    fs::rename(path, &aside)?;
    Ok(aside)
}

/// The temporary file a write goes through, beside `path`.
fn temporary_path(path: &Path) -> PathBuf {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(temporary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::saved::{SavedEntry, SavedIds, SavedStore};

    fn sample() -> Saved {
        Saved {
            saved_at_ms: 1,
            ids: SavedIds { boot: 7, next: 42 },
            bans: vec![("b".into(), 99)],
            stores: vec![SavedStore {
                uid: "u".into(),
                resumable_until_ms: Some(5),
                lost_through: 3,
                newest: 41,
                entries: vec![SavedEntry {
                    id: 41,
                    expires_ms: 8,
                    delivered: false,
                    message: "héllo".into(),
                }],
            }],
            groups: vec![crate::core::saved::SavedGroup {
                group: "g".into(),
                members: vec![("u".into(), None), ("v".into(), Some(9))],
            }],
        }
    }

    #[test]
    fn a_file_reads_back_as_written_and_any_damage_is_caught() {
        let file = encode(&sample()).unwrap();
        let back = decode(&file).unwrap();
        assert_eq!(format!("{back:?}"), format!("{:?}", sample()));
        assert!(matches!(decode(b"junk"), Err(Unreadable::NotOurs)));
        assert!(matches!(
            decode(&file[..file.len() - 1]),
            Err(Unreadable::Damaged)
        ));
        for at in HEADER..file.len() {
            let mut flipped = file.clone();
            flipped[at] ^= 1;
            assert!(
                matches!(decode(&flipped), Err(Unreadable::Damaged)),
                "byte {at}"
            );
        }
        let mut newer = file.clone();
        newer[MAGIC.len()] = 9;
        assert!(matches!(decode(&newer), Err(Unreadable::Version(9))));
    }

    #[test]
    fn a_version_1_file_reads_back_without_groups() {
        #[derive(serde::Serialize)]
        struct V1<'a> {
            saved_at_ms: u64,
            ids: SavedIds,
            bans: &'a [(String, u64)],
            stores: &'a [SavedStore],
        }
        let saved = sample();
        let body = postcard::to_stdvec(&V1 {
            saved_at_ms: saved.saved_at_ms,
            ids: saved.ids,
            bans: &saved.bans,
            stores: &saved.stores,
        })
        .unwrap();
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&1u32.to_le_bytes());
        file.extend_from_slice(&(body.len() as u64).to_le_bytes());
        file.extend_from_slice(&body);
        file.extend_from_slice(digest(&SHA256, &body).as_ref());
        let back = decode(&file).unwrap();
        assert_eq!(
            (back.ids.next, back.stores.len(), back.groups.len()),
            (42, 1, 0)
        );
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_makes_its_directory() {
        let dir = tempfile_dir();
        let path = dir.join("state/pushd.state");
        write(&path, &sample()).unwrap();
        assert!(read(&path).unwrap().is_some());
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!temporary_path(&path).exists());
        assert!(read(&dir.join("absent")).unwrap().is_none());
        let aside = move_aside(&path).unwrap();
        assert!(aside.exists() && !path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A fresh directory of this test's own.
    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pushd-state-test-{}-{}",
            std::process::id(),
            crate::core::ids::unix_ms()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
