//! Fuzz target `rtas`: see [`vfio_eeh_fuzz::rtas`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vfio_eeh_fuzz::rtas(data));
