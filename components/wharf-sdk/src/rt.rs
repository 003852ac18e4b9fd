//! What a `no_std` component needs from a runtime, installed by
//! [`crate::no_std_runtime!`]: a heap, a panic handler and `cabi_realloc`.
//! A component that uses std gets all three from std and wasi-libc instead,
//! and with them about two dozen WASI imports that every instance pays for
//! (docs/PERFORMANCE.md, "session 6").
//!
//! The heap is a bump allocator. A call's blocks all die with the call, so
//! bookkeeping for reuse within one is wasted work. It starts at the
//! linker's `__heap_base` and fills the initial linear memory before it
//! grows any: a `memory.grow` costs far more than the allocations around it.
//! The last block is freed and resized in place, which covers a `Vec` or
//! `String` being built; other frees are ignored, so a handler that churns
//! through much more memory than it keeps should reuse its buffers.
//!
//! It counts the blocks alive, and when the last one is freed the heap is
//! empty again. That happens between two calls (the host frees a call's
//! answer through `cabi_post_*` before the next call's arguments arrive), so
//! an instance the host keeps for many calls (`instance_reuse`) starts each
//! on the same empty heap instead of growing by every call's garbage. A
//! block leaked on purpose (`Box::leak`) keeps the heap growing as before;
//! the host retires an instance whose memory nears its limit.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::Cell;
use core::ptr;

use crate::prelude::*;

const PAGE: usize = 65536;

unsafe extern "C" {
    /// Where the linker put the end of the data and the start of the heap.
    static __heap_base: u8;
}

/// The global allocator of a `no_std` component; see the module's doc.
pub struct InstanceAllocator {
    next: Cell<usize>,
    end: Cell<usize>,
    /// Blocks given out and not yet freed.
    live: Cell<usize>,
}

// SAFETY: a component instance runs on one thread; nothing is shared.
unsafe impl Sync for InstanceAllocator {}

impl InstanceAllocator {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        InstanceAllocator { next: Cell::new(0), end: Cell::new(0), live: Cell::new(0) }
    }

    /// The first free byte; sets the heap up on the instance's first allocation.
    fn next(&self) -> usize {
        if self.end.get() == 0 {
            self.next.set(&raw const __heap_base as usize);
            self.end.set(wasm32::memory_size(0) * PAGE);
        }
        self.next.get()
    }

    /// Makes `[.., end)` part of the heap, growing memory if needed.
    fn reserve(&self, end: usize) -> bool {
        if end <= self.end.get() {
            return true;
        }
        let pages = (end - self.end.get()).div_ceil(PAGE);
        if wasm32::memory_grow(0, pages) == usize::MAX {
            return false;
        }
        self.end.set(self.end.get() + pages * PAGE);
        true
    }

    fn is_last(&self, ptr: *mut u8, size: usize) -> bool {
        ptr as usize + size == self.next.get()
    }
}

unsafe impl GlobalAlloc for InstanceAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let start = self.next().next_multiple_of(layout.align());
        match start.checked_add(layout.size()) {
            Some(end) if self.reserve(end) => {
                self.next.set(end);
                self.live.set(self.live.get() + 1);
                start as *mut u8
            }
            _ => ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.live.set(self.live.get().saturating_sub(1));
        if self.live.get() == 0 {
            // Nothing alive: the whole heap is free again.
            self.next.set(&raw const __heap_base as usize);
        } else if self.is_last(ptr, layout.size()) {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.is_last(ptr, layout.size()) {
            return match (ptr as usize).checked_add(new_size) {
                Some(end) if self.reserve(end) => {
                    self.next.set(end);
                    ptr
                }
                _ => ptr::null_mut(),
            };
        }
        // SAFETY: the caller guarantees a valid layout for `new_size`.
        let new = unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
        if !new.is_null() {
            // SAFETY: both blocks are live and at least this long; a new block never overlaps.
            unsafe { ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // The old block is dead now (never the last: `new` is after it).
            self.live.set(self.live.get() - 1);
        }
        new
    }
}

/// The canonical ABI's allocator: how the host hands the guest strings and lists.
///
/// # Safety
/// Called by the host only, with a block this allocator gave out (or null).
pub unsafe fn cabi_realloc(old: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    use alloc::alloc::{alloc, realloc};
    let ptr = if old_len == 0 {
        if new_len == 0 {
            return align as *mut u8;
        }
        // SAFETY: the canonical ABI passes a power-of-two alignment.
        unsafe { alloc(Layout::from_size_align_unchecked(new_len, align)) }
    } else {
        // SAFETY: as above, and `old` was allocated with this layout.
        unsafe { realloc(old, Layout::from_size_align_unchecked(old_len, align), new_len) }
    };
    if ptr.is_null() {
        wasm32::unreachable();
    }
    ptr
}

/// Sends the panic's message to the host's log, then traps: the host answers
/// 500 (or retries the event) and keeps serving. std would write the message
/// to stderr, which the host does not keep.
pub fn panic(info: &core::panic::PanicInfo) -> ! {
    static PANICKING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    // A panic while reporting one (say, out of memory) just traps.
    if !PANICKING.swap(true, core::sync::atomic::Ordering::Relaxed) {
        // Message and place as two fields: `{info}` would put a line break
        // into the host's log line.
        let message = format!("{}", info.message());
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        crate::log::error("component panicked", &[("panic", &message), ("at", &at)]);
    }
    wasm32::unreachable()
}
