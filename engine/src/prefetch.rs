//! Asking the CPU to start loading memory that is about to be read, so that the cache
//! misses of several records overlap instead of following one another. A prefetch is a
//! hint: it never faults and changes nothing a program can observe, whatever the address.

/// Starts loading the cache lines of `bytes` bytes at `at`.
#[inline]
pub(crate) fn lines<T>(at: *const T, bytes: usize) {
    let start = at.cast::<u8>();
    let mut offset = 0;
    while offset < bytes {
        one(start.wrapping_add(offset));
        offset += 64;
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[allow(unsafe_code)]
fn one(at: *const u8) {
    // SAFETY: PREFETCHT0 is a hint that neither faults nor writes, for any address; SSE is
    // part of every x86-64 CPU.
    unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(at.cast()) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn one(_at: *const u8) {}
