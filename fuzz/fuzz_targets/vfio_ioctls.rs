//! Fuzz target `vfio_ioctls`: the emulated /dev/vfio's ioctls, region
//! accesses, opens and closes on every fd kind; see
//! `vfio_eeh_shim::fuzzing::ioctl_surface` for the input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vfio_eeh_shim::fuzzing::ioctl_surface(data));
