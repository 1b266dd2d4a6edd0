//! Preallocated, raw-pointer-addressed memory shared with the kernel.
//!
//! The I/O backends hand the kernel pointers into their buffers (message
//! headers, address slots, payload buffers, the io_uring buffer ring). While
//! the kernel may read or write that memory, no Rust reference covering it
//! may exist, so the memory lives in a [`RawArray`]: one zeroed heap
//! allocation made at construction, addressed only through raw pointers, and
//! freed on drop. Nothing here allocates after construction.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Types for which the all-zero bit pattern is a valid value.
///
/// # Safety
///
/// Implementors must be plain data for which `mem::zeroed()` is sound.
pub(crate) unsafe trait ZeroValid: Sized {}

// SAFETY: integers are valid for every bit pattern.
unsafe impl ZeroValid for u8 {}
// SAFETY: C struct of integers and raw pointers; null/zero is valid for each.
unsafe impl ZeroValid for libc::msghdr {}
// SAFETY: C struct of a raw pointer and a length; null/0 is valid.
unsafe impl ZeroValid for libc::iovec {}
// SAFETY: C struct of a msghdr (see above) and an integer.
unsafe impl ZeroValid for libc::mmsghdr {}
// SAFETY: C struct of integers and byte arrays.
unsafe impl ZeroValid for libc::sockaddr_in6 {}

/// A fixed-length, zero-initialised array of `T` on the heap, addressed only
/// through raw pointers (so the kernel may access it while we hold it).
///
/// Not `Send`/`Sync` (it holds a `NonNull`): the backends are per-thread.
pub(crate) struct RawArray<T: ZeroValid> {
    ptr: NonNull<T>,
    len: usize,
    layout: Layout,
    leaked: bool,
}

impl<T: ZeroValid> RawArray<T> {
    /// Allocates `len` zeroed elements aligned to at least `align` bytes
    /// (`align` must be a power of two; use 4096 for kernel-shared rings).
    ///
    /// # Panics
    ///
    /// Panics if `len` is zero or the size overflows `isize`; aborts on
    /// allocation failure like every other Rust allocation.
    pub(crate) fn zeroed(len: usize, align: usize) -> Self {
        assert!(len > 0, "RawArray must not be empty");
        let layout = Layout::array::<T>(len)
            .and_then(|l| l.align_to(align.max(std::mem::align_of::<T>())))
            .expect("RawArray layout overflow")
            .pad_to_align();
        assert!(layout.size() > 0, "RawArray of a zero-sized type");
        // SAFETY: `layout` has a non-zero size (asserted above).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<T>()) else {
            alloc::handle_alloc_error(layout)
        };
        Self {
            ptr,
            len,
            layout,
            leaked: false,
        }
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Raw pointer to element `i`.
    ///
    /// # Panics
    ///
    /// Panics if `i >= len`.
    #[inline]
    pub(crate) fn ptr(&self, i: usize) -> *mut T {
        assert!(
            i < self.len,
            "RawArray index {i} out of bounds ({})",
            self.len
        );
        // SAFETY: `i < len`, so the offset stays inside the allocation.
        unsafe { self.ptr.as_ptr().add(i) }
    }

    /// Never free this memory: used when the kernel might still access it
    /// (an io_uring teardown that did not confirm every cancellation).
    pub(crate) fn leak(&mut self) {
        self.leaked = true;
    }

    /// Base pointer of the allocation.
    #[inline]
    pub(crate) fn base(&self) -> *mut T {
        self.ptr.as_ptr()
    }
}

impl<T: ZeroValid> Drop for RawArray<T> {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // SAFETY: allocated in `zeroed` with exactly this layout, freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr().cast::<u8>(), self.layout) };
    }
}

impl<T: ZeroValid> std::fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawArray")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .finish()
    }
}
