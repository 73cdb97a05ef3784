//! Segment files as the writer makes and leaves them: a new segment created atomically
//! (magic durable before it gets its name) or recycled from a spare, closed segments
//! flushed off the writer thread with `durability = "os"`, and what a crash mid-roll left
//! behind (segments deleted off the writer thread: `deleter.rs`).
//!
//! # Recycling
//! With `durability = "fsync"` every batch ends in an `fdatasync`. Appending to a growing
//! file makes each of them write the inode too (the size changed), and new blocks need
//! allocating; writing over blocks a file already has does neither, and on this project's
//! build machine took half the time (`benches/load/fdatasync.py`). And deleting 64 MiB
//! segments on the writer thread, as retention did, stalled appends (13.5 ms a file on that
//! machine, several at once: 40-70 ms in the events' p99.9 in those rounds). So,
//! as PostgreSQL recycles WAL files, a segment that retention deletes is kept instead (up
//! to [`MAX_SPARES`], while the disk budget has room) as `<seq>.spare`, and the next roll
//! renames it into place and writes over it. Its old records stay past the new data,
//! hidden behind an end marker, zeros to the end of the page, that follows every batch;
//! they are not numbered one past the new records besides, and readers stop at either
//! (`segment.rs`). Writing whole pages spares a read of a page no longer cached. A roll
//! cuts the file at its last record, so closed segments look like any other. Spares count
//! against the disk budget, are deleted first when it is tight, and are deleted at
//! startup. Segments let go beyond the spares go to the `spool-delete` thread
//! (`deleter.rs`).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, sync_channel};

use crate::spool::Durability;
use crate::spool::record::END_MARKER;
use crate::spool::segment::{self, SegmentInfo};

/// Spares kept at most, each a segment's worth of disk. In a steady state each roll lets
/// one segment go (retention runs at every roll) and takes one spare; the second covers
/// a roll that comes before retention has let one go.
pub(super) const MAX_SPARES: usize = 2;

/// Suffix of a deleted segment kept for reuse.
pub(super) const SPARE_EXT: &str = "spare";

/// A deleted segment's file, waiting to be written over as a new segment.
#[derive(Debug)]
pub(super) struct Spare {
    pub(super) path: PathBuf,
    pub(super) len: u64,
}

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
        // Not O_APPEND: writes go to explicit offsets (`write_all_at`), which Linux
        // ignores under O_APPEND.
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
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

/// A recycled file is written over in whole pages: a write ending inside a page the page
/// cache no longer holds (a spare from a week's retention) would first read that page
/// from the disk, on the writer thread.
const PAGE: usize = 4096;
static ZEROS: [u8; 2 * PAGE] = [0; 2 * PAGE];

/// The zeros that follow a batch ending at file offset `end` in a recycled file: an end
/// marker, and on to the end of its page.
pub(super) fn end_padding(end: u64) -> &'static [u8] {
    let mut pad = (PAGE - (end % PAGE as u64) as usize) % PAGE;
    if pad < END_MARKER.len() {
        pad += PAGE;
    }
    &ZEROS[..pad]
}

/// Makes `spare` the segment `seg` and returns it with its length: its first page a magic
/// and then zeros (an end marker), durable before the rename with fsync durability, then
/// the directory synced. With `os`
/// durability the spare may still be being flushed by `spool-sync`, and syncing it here
/// would wait for that on the writer thread. On failure the spare is deleted (the caller
/// creates a segment instead); a rename that happened is undone by that creation, which
/// renames over it.
pub(super) fn recycle_spare(
    dir: &std::path::Path,
    spare: &Spare,
    seg: &SegmentInfo,
    durability: Durability,
) -> io::Result<(File, u64)> {
    let made = (|| {
        let f = OpenOptions::new()
            .write(true)
            .read(true)
            .open(&spare.path)?;
        let mut start = [0u8; PAGE];
        start[..segment::MAGIC.len()].copy_from_slice(segment::MAGIC);
        f.write_all_at(&start, 0)?;
        if durability == Durability::Fsync {
            f.sync_data()?;
        }
        std::fs::rename(&spare.path, &seg.path)?;
        Ok(f)
    })();
    match made {
        Ok(f) => {
            segment::sync_dir(dir)?;
            Ok((f, spare.len.max(PAGE as u64)))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&spare.path);
            Err(e)
        }
    }
}

/// Writes all of `slices` at `offset`, as many as `pwritev` takes per call.
pub(super) fn write_all_at(
    file: &File,
    mut slices: &mut [IoSlice<'_>],
    mut offset: u64,
) -> io::Result<()> {
    /// `IOV_MAX` on Linux.
    const MAX_IOV: usize = 1024;
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = slices.len().min(MAX_IOV);
        let at = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, and the first `n`
        // slices are valid for reads for the duration of the call.
        let wrote = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                slices.as_ptr().cast::<libc::iovec>(),
                n as libc::c_int,
                at,
            )
        };
        match wrote {
            0 => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote zero bytes")),
            n if n > 0 => {
                IoSlice::advance_slices(&mut slices, n as usize);
                offset += n as u64;
            }
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

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

/// Removes temporary segments a crash left mid-roll (they hold no records) and spares
/// (deleted segments' bytes; kept only while the writer that made them runs).
pub(super) fn remove_unfinished_files(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(&format!(".seg{NEW_SUFFIX}")) || name.ends_with(&format!(".{SPARE_EXT}"))
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
