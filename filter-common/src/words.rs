//! Copying and zeroing by 8-byte words, and an opaque zero: what keeps LLVM's lowering of
//! plain copies and masks from costing or confusing the verifier on the BPF target.

/// Copies a value as 8-byte words. On the BPF target LLVM turns a plain copy or zeroing of
/// a struct into a call to a byte-by-byte `memcpy`/`memset` loop (a few instructions per
/// byte); written as volatile words it stays a handful of loads and stores.
///
/// # Safety
/// `dst` and `src` must be valid, 8-byte aligned (byte arrays inside aligned structs at
/// aligned offsets qualify) and not overlapping.
#[inline(always)]
pub unsafe fn copy_words<T: Copy>(dst: *mut T, src: *const T) {
    const { assert!(size_of::<T>().is_multiple_of(8)) };
    let (d, s) = (dst.cast::<u64>(), src.cast::<u64>());
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: word `i` lies inside both values, aligned (the caller's promise).
        unsafe { d.add(i).write_volatile(s.add(i).read_volatile()) };
        i += 1;
    }
}

/// Zero, as far as LLVM knows something unknown. Added to an index before its mask, it
/// keeps the mask in the program: LLVM drops a mask it can prove redundant, or turns a
/// masked index that grows in a loop into a pointer stepped forward, and the 6.1 verifier
/// then loses the index's bound. The verifier itself still sees the zero.
#[inline(always)]
pub fn opaque_zero<T: Default>() -> T {
    core::hint::black_box(T::default())
}

/// Zeroes a value as 8-byte words (see [`copy_words`]).
///
/// # Safety
/// `dst` must be valid and 8-byte aligned, and all zeroes a valid value of `T`.
#[inline(always)]
pub unsafe fn zero_words<T: Copy>(dst: *mut T) {
    const { assert!(size_of::<T>().is_multiple_of(8)) };
    let d = dst.cast::<u64>();
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: word `i` lies inside the value, aligned (the caller's promise).
        unsafe { d.add(i).write_volatile(0) };
        i += 1;
    }
}
