//! Fuzz target `nvme`: see [`vfio_eeh_fuzz::nvme`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vfio_eeh_fuzz::nvme(data));
