//! Network interfaces by index: the name an index stands for, as flow events and the
//! per-interface metrics print it.

/// The name of interface `ifindex`, or `ifN` for an index the kernel no longer knows.
pub fn name(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: a buffer of IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("if{ifindex}");
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_has_its_name_and_unknown_indexes_a_placeholder() {
        // Index 1 is the loopback in every network namespace.
        assert_eq!(super::name(1), "lo");
        assert_eq!(super::name(u32::MAX), format!("if{}", u32::MAX));
    }
}
