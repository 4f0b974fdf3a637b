//! Fuzz target `topology`: see [`vfio_eeh_fuzz::topology`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vfio_eeh_fuzz::topology(data));
