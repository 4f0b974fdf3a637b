//! Fuzz target `addr`: see [`vfio_eeh_fuzz::addr`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vfio_eeh_fuzz::addr(data));
