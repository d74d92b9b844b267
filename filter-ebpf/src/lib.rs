//! Empty library target: lets filter-daemon's build.rs depend on this crate so cargo rebuilds
//! the embedded object when the program changes.
#![no_std]
