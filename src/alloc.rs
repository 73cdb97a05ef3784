//! The process's allocator: mimalloc, called the way C code calls it.
//!
//! The `mimalloc` crate's `GlobalAlloc` sends every allocation through mimalloc's aligned
//! entry points, even for Rust's usual alignments of 1 to 8 bytes. Those try the small-block
//! fast path first, but anything over 1 KiB (hyper's 8 KiB read and write buffers, a
//! rendered NCCO's `BytesMut`) takes their generic path, which over-allocates to align:
//! ~620 instructions per answer request (callgrind). Every mimalloc block is at least 8-byte
//! aligned (block sizes are multiples of the word size, pages start 16-aligned), so
//! alignments up to 8 go to plain `mi_malloc`; larger ones keep the aligned calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Alignment every mimalloc block has without asking.
const PLAIN_ALIGN: usize = 8;

/// mimalloc as the Rust global allocator (see the module doc).
pub struct MiMalloc;

// SAFETY: each method forwards to the mimalloc function with the same contract (null on
// failure, memory valid until freed, alignment as requested: asked for explicitly above
// `PLAIN_ALIGN`, given by every block below it); `mi_free` takes pointers from any of them.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: see the impl; `ptr` came from one of the calls above.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl; `ptr` came from one of the calls above with `layout`.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_and_alignment_comes_back_aligned_and_usable() {
        let a = MiMalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 15, 16, 24, 100, 1024, 1025, 8192, 70_000, 3 << 20] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; every pointer is freed with its layout.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xab, size);
                    let p = a.realloc(p, layout, size * 2);
                    assert_eq!(p as usize % align, 0, "realloc {size} align {align}");
                    assert_eq!(*p.add(size - 1), 0xab);
                    a.dealloc(p, Layout::from_size_align(size * 2, align).unwrap());
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
