//! The append-only, hash-chained transcript file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::event::{Event, Record};
use super::mask::Masker;

/// The `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Appends events to a transcript. Each line is masked, chained to the one before it by a
/// SHA-256 of that line's bytes, and handed to the OS in one write before `append` returns,
/// so a crash afterwards cannot lose it.
pub struct TranscriptWriter {
    file: File,
    path: PathBuf,
    seq: u64,
    prev: String,
    masker: Masker,
}

impl TranscriptWriter {
    /// Creates a new transcript; fails if the file exists, so no run overwrites another's.
    pub fn create(path: &Path, masker: Masker) -> io::Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)?;
        Ok(Self {
            file,
            path: path.to_owned(),
            seq: 0,
            prev: GENESIS.to_owned(),
            masker,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Masks and writes one event, returning the record as written. With `durable`, the line
    /// is also synced to the disk: used before side effects.
    pub fn append(&mut self, ts: String, event: Event, durable: bool) -> io::Result<Record> {
        let mut record = Record {
            seq: self.seq,
            prev: self.prev.clone(),
            ts,
            event,
        };
        if !self.masker.is_empty() {
            let mut value = serde_json::to_value(&record).map_err(io::Error::other)?;
            self.masker.mask_json(&mut value);
            record = serde_json::from_value(value).map_err(io::Error::other)?;
        }
        let mut line = serde_json::to_string(&record).map_err(io::Error::other)?;
        self.prev = hex::encode(Sha256::digest(line.as_bytes()));
        self.seq += 1;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        if durable {
            self.file.sync_data()?;
        }
        Ok(record)
    }

    /// Flushes everything to the disk; called when the run ends.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}
