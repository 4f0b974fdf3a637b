use vfio_eeh::addr::{Buid, PeId};
use vfio_eeh::backend::errno::EFAULT;
use vfio_eeh::ops::PeState;
use vfio_eeh::pe::FreezeScope;
use vfio_eeh::rtas::{status, RtasArgs, RtasCall, TokenTable};
use vfio_eeh::uapi;

use super::super::testing::{Fixture, Vmm};
use super::*;
use crate::config::{Platform, ShimConfig};
use crate::user::ProcessMemory;

const PHB: Buid = Buid(Buid::SPAPR_BASE.0 + 1);
const PARAMETER_ERROR: u32 = status::PARAMETER_ERROR.cast_unsigned();

/// A powernv emulator with 0000:01:00.0 (PE 0) mapped at PHB 1, 00:01.0.
fn mapped() -> (Fixture, i32) {
    let fx = Fixture::new(ShimConfig { platform: Platform::Powernv, ..ShimConfig::default() });
    let nvme = fx.device("0", "0000:01:00.0");
    let mapping = uapi::VfioAddrMapping { buid: PHB.0, bus: 0, slot: 1, func: 0, pad: [0; 5] };
    let mut m = uapi::VfioDeviceAddrMapping { argsz: 24, flags: uapi::VFIO_DEVICE_ADDR_MAPPING_SET, mapping };
    assert_eq!(fx.call(nvme, uapi::DEVICE_ADDR_MAPPING, &mut m), Ok(0));
    (fx, nvme)
}

fn token(call: RtasCall) -> u32 {
    TokenTable::default().token(call).unwrap()
}

/// The address cells of `buid`'s bus 0, `slot`.0.
fn address(buid: Buid, slot: u8) -> [u32; 3] {
    [u32::from(slot) << 11, buid.hi(), buid.lo()]
}

/// Serves `args` through the entry point; its return cells, or the errno.
fn call(fx: &Fixture, args: RtasArgs, ram: usize) -> Result<Vec<u32>, i32> {
    let mut buf = args.encode();
    fx.emu.rtas(&ProcessMemory, buf.as_mut_ptr().addr(), ram)?;
    Ok(args.read_rets(&buf))
}

#[test]
fn calls_resolve_through_this_vms_mappings_only() {
    let (fx, _) = mapped();
    let read_state = |buid, slot| {
        let args = RtasArgs::new(token(RtasCall::ReadSlotResetState2), &address(buid, slot), 4);
        call(&fx, args, 0).unwrap()
    };
    assert_eq!(read_state(PHB, 1), [0, PeState::Normal.raw(), 1, 0]);
    fx.host.freeze(PeId(0), FreezeScope::All).unwrap();
    assert_eq!(read_state(PHB, 1)[..2], [0, PeState::Stopped.raw()]);
    assert_eq!(read_state(PHB, 2)[0], PARAMETER_ERROR, "nothing at slot 2");
    assert_eq!(read_state(Buid::SPAPR_BASE, 1)[0], PARAMETER_ERROR, "another PHB's slot 1");
    assert_eq!(read_state(Buid(0x1234), 1)[0], PARAMETER_ERROR, "not this VM's PHB");
}

#[test]
fn every_buffer_the_cells_allow_gets_a_status_the_others_an_errno() {
    let (fx, _) = mapped();
    let [config, hi, lo] = address(PHB, 1);
    let bad_token = RtasArgs::new(0x1fff, &[config, hi, lo], 4);
    assert_eq!(call(&fx, bad_token, 0).unwrap()[0], PARAMETER_ERROR);
    let wrong_nargs = RtasArgs::new(token(RtasCall::SetEehOption), &[config, hi, lo], 1);
    assert_eq!(call(&fx, wrong_nargs, 0), Ok(vec![PARAMETER_ERROR]));
    let wrong_nret = RtasArgs::new(token(RtasCall::GetConfigAddrInfo2), &[config, hi, lo, 0], 1);
    assert_eq!(call(&fx, wrong_nret, 0), Ok(vec![PARAMETER_ERROR]));
    let no_room = RtasArgs::new(token(RtasCall::SetEehOption), &[config, hi, lo, 1], 0);
    assert_eq!(call(&fx, no_room, 0), Err(EINVAL));
    let mut too_many = RtasArgs::new(token(RtasCall::SetEehOption), &[0; 16], 0).encode();
    too_many[8..12].copy_from_slice(&1u32.to_be_bytes());
    assert_eq!(fx.emu.rtas(&ProcessMemory, too_many.as_mut_ptr().addr(), 0), Err(EINVAL));

    let unmapped = 0x7fff_ffff_0000_usize;
    for args in [0, 8, unmapped, usize::MAX - 3] {
        assert_eq!(fx.emu.rtas(&ProcessMemory, args, 0), Err(EFAULT), "{args:#x}");
    }
    // A call in read-only memory is read, served, and its status cannot be written.
    static READ_ONLY: [u8; 20] = [0, 0, 0x20, 0x0b, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0];
    assert_eq!(fx.emu.rtas(&ProcessMemory, READ_ONLY.as_ptr().addr(), 0), Err(EFAULT));
    let mut buf = RtasArgs::new(token(RtasCall::SetEehOption), &[config, hi, lo, 1], 1).encode();
    assert_eq!(fx.emu.rtas(&ProcessMemory, buf.as_mut_ptr().addr(), unmapped), Err(EFAULT), "the RAM window");
}

#[test]
fn calls_reach_guest_memory_through_the_window_only() {
    let (fx, _) = mapped();
    fx.host.freeze(PeId(0), FreezeScope::All).unwrap();
    let mut ram = vec![0u8; 4096];
    let window = GuestRamArg { host: ram.as_mut_ptr().addr() as u64, base: 0x10_0000, size: 4096 };
    let [config, hi, lo] = address(PHB, 1);
    let detail =
        |buffer: u32| RtasArgs::new(token(RtasCall::SlotErrorDetail), &[config, hi, lo, 0, 0, buffer, 1024, 1], 1);
    assert_eq!(call(&fx, detail(0x10_0000), 0), Ok(vec![PARAMETER_ERROR]), "no window");
    assert_eq!(
        call(&fx, detail(0x10_0000 + 4000), std::ptr::from_ref(&window).addr()),
        Ok(vec![PARAMETER_ERROR]),
        "past its end"
    );
    assert_eq!(call(&fx, detail(0x10_0000), std::ptr::from_ref(&window).addr()), Ok(vec![0]));
    assert!(ram.iter().any(|&b| b != 0), "the error log is in the guest's buffer");
}

#[test]
fn tokens_are_looked_up_by_name() {
    let (fx, _) = mapped();
    let lookup = |name: &[u8]| fx.emu.rtas_token(&ProcessMemory, name.as_ptr().addr());
    assert_eq!(lookup(b"ibm,set-eeh-option\0"), Ok(TokenTable::DEFAULT_BASE));
    for call in RtasCall::ALL {
        let name = [call.name().as_bytes(), b"\0"].concat();
        assert_eq!(lookup(&name), Ok(token(call)), "{}", call.name());
    }
    assert_eq!(lookup(b"ibm,nothing\0"), Err(ENOENT));
    assert_eq!(lookup(&[b'x'; 200]), Err(ENOENT), "longer than any name, unterminated");
    assert_eq!(fx.emu.rtas_token(&ProcessMemory, 0), Err(EFAULT));
}

/// Bad input: whatever the cells say, the entry point answers a status or
/// `EINVAL`, never a panic (a Linux-style LCG spreads the argument cells over
/// this VM's address, other addresses and garbage).
#[test]
fn any_cells_get_a_status_or_einval() {
    let (fx, _) = mapped();
    let [config, hi, lo] = address(PHB, 1);
    let mut seed = 0x2545_f491_u32;
    let mut next = || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        match seed >> 28 {
            0..=3 => [config, hi, lo, 0x801, 1, 2, 3][(seed as usize >> 8) % 7],
            _ => seed,
        }
    };
    let tokens = RtasCall::ALL.map(token);
    for &tok in tokens.iter().chain(&[0, 0x1fff, u32::MAX]) {
        for nargs in 0..=16 {
            for nret in 0..=(17 - nargs) {
                let args: Vec<u32> = (0..nargs).map(|_| next()).collect();
                let mut buf = RtasArgs::new(tok, &args, 0).encode();
                buf[8..12].copy_from_slice(&u32::try_from(nret).unwrap().to_be_bytes());
                buf.resize(HEADER_BYTES + 4 * (nargs + nret), 0);
                let result = fx.emu.rtas(&ProcessMemory, buf.as_mut_ptr().addr(), 0);
                let expected_refusal = nret == 0 || nargs + nret > MAX_CELLS;
                assert_eq!(result.is_err(), expected_refusal, "token {tok:#x} nargs {nargs} nret {nret}: {result:?}");
                assert!(matches!(result, Ok(()) | Err(EINVAL)), "{result:?}");
            }
        }
    }
}
