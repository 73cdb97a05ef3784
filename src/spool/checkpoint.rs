//! The forwarder's durable position: the first sequence number not yet delivered downstream.
//! Written to a temporary file, fsynced, renamed over the old one, and the directory
//! fsynced, so a crash leaves either the old or the new value, never a torn one.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::record::Seq;
use super::segment::sync_dir;

/// A checkpoint file for one downstream sink.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    path: PathBuf,
}

impl Checkpoint {
    /// The checkpoint named `name` in `dir` (e.g. `kafka`).
    pub fn new(dir: &Path, name: &str) -> Self {
        Self {
            path: dir.join(format!("{name}.checkpoint")),
        }
    }

    /// The stored position, or `None` when nothing was ever checkpointed.
    ///
    /// # Errors
    /// I/O errors, or a file whose contents are not a valid checkpoint.
    pub fn load(&self) -> io::Result<Option<Seq>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut parts = text.trim().split(' ');
        let (Some(seq), Some(crc), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed checkpoint",
            ));
        };
        if format!("{:08x}", crc32c::crc32c(seq.as_bytes())) != crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "checkpoint checksum mismatch",
            ));
        }
        seq.parse()
            .map(|s| Some(Seq(s)))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "checkpoint is not a number"))
    }

    /// Durably replaces the stored position.
    ///
    /// # Errors
    /// Any I/O error; the previous checkpoint is then still in place.
    pub fn store(&self, next: Seq) -> io::Result<()> {
        let seq = next.0.to_string();
        let tmp = self.path.with_extension("checkpoint.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{seq} {:08x}", crc32c::crc32c(seq.as_bytes()))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::new(dir.path(), "kafka");
        assert_eq!(cp.load().unwrap(), None);
        cp.store(Seq(1234)).unwrap();
        assert_eq!(cp.load().unwrap(), Some(Seq(1234)));
        cp.store(Seq(99)).unwrap();
        assert_eq!(cp.load().unwrap(), Some(Seq(99)));
        std::fs::write(dir.path().join("kafka.checkpoint"), "100 00000000\n").unwrap();
        assert!(cp.load().is_err());
    }
}
