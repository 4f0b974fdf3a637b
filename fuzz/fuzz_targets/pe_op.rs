//! Fuzz target `pe_op`: see [`vfio_eeh_fuzz::pe_op`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vfio_eeh_fuzz::pe_op(data));
