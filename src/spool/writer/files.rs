//! Segment files as the writer makes and leaves them: a new segment created atomically
//! (magic durable before it gets its name), closed segments flushed off the writer
//! thread with `durability = "os"`, and what a crash mid-roll left behind.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::mpsc::{SyncSender, sync_channel};

use crate::spool::segment::{self, SegmentInfo};

/// Suffix of a segment being created: it becomes `<seq>.seg` by rename only once its magic
/// is durable, so a failed or interrupted roll never leaves a half-made segment behind.
pub(super) const NEW_SUFFIX: &str = ".new";

/// Creates an empty segment (just the magic) under a temporary name, makes it durable, then
/// renames it into place and syncs the directory. Any failure (ENOSPC writing the magic, a
/// failed fsync) removes the temporary file and leaves no `<seq>.seg` behind that a retry
/// would trip over (`create_new` would fail with `AlreadyExists` forever) or that recovery
/// and readers would take for the tail. A retry renames over anything left by an earlier
/// attempt whose final directory sync failed.
pub(super) fn create_segment_atomically(
    dir: &std::path::Path,
    seg: &SegmentInfo,
) -> io::Result<File> {
    let mut tmp = seg.path.clone().into_os_string();
    tmp.push(NEW_SUFFIX);
    let tmp = std::path::PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let made = (|| {
        // O_APPEND: the failed-write undo (`set_len`) relies on writes going to the end.
        let mut f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .read(true)
            .open(&tmp)?;
        f.write_all(segment::MAGIC)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &seg.path)?;
        Ok(f)
    })();
    let f = match made {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    segment::sync_dir(dir)?;
    Ok(f)
}

/// Removes temporary segments a crash left mid-roll; they hold no records.
/// With `durability = "os"` a closed segment can hold a whole segment of dirty pages;
/// flushing them on the writer thread stalled every awaiting request for 100+ ms at each
/// roll. One `spool-sync` thread flushes closed segments instead (two may wait; more and
/// the writer flushes itself). `None` if the thread cannot start: the writer flushes.
pub(super) fn start_flusher() -> Option<SyncSender<File>> {
    let (tx, rx) = sync_channel::<File>(2);
    std::thread::Builder::new()
        .name("spool-sync".into())
        .spawn(move || {
            for f in rx {
                flush(&f);
            }
        })
        .ok()
        .map(|_| tx)
}

pub(super) fn flush(f: &File) {
    if let Err(e) = f.sync_all() {
        tracing::warn!(error = %e, "could not flush a closed spool segment");
    }
}

pub(super) fn remove_unfinished_segments(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(&format!(".seg{NEW_SUFFIX}")) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
