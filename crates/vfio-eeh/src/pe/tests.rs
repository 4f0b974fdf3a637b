//! Tests of the PE state machine: the PAPR table cell by cell, the VFIO
//! table, freeze accounting, and random sequences against a reference model.

use super::*;
use crate::ops::ErrFunc;
use proptest::prelude::*;

const T0: Duration = Duration::from_secs(10);
const HOT: EehOp = EehOp::Reset(ResetKind::Hot);

/// The six columns of the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Normal,
    Reset,
    Stopped,
    StoppedDma,
    Unavail,
    Failed,
}

const COLS: [Col; 6] = [Col::Normal, Col::Reset, Col::Stopped, Col::StoppedDma, Col::Unavail, Col::Failed];

/// An enabled PE in the given column at `T0`.
fn pe_in(col: Col) -> PeMachine {
    let mut pe = PeMachine::default();
    pe.apply(&EehOp::Enable, T0).unwrap();
    match col {
        Col::Normal => {}
        Col::Reset => {
            pe.apply(&HOT, T0).unwrap();
        }
        Col::Stopped => assert_eq!(pe.freeze(FreezeScope::All, T0), FreezeOutcome::Frozen { count: 1 }),
        Col::StoppedDma => assert_eq!(pe.freeze(FreezeScope::Dma, T0), FreezeOutcome::Frozen { count: 1 }),
        Col::Unavail => {
            pe.apply(&HOT, T0).unwrap();
            pe.apply(&EehOp::ResetDeactivate, T0).unwrap();
        }
        Col::Failed => pe.fail(),
    }
    pe
}

fn inj(kind: ErrType, addr: u64, mask: u64) -> ErrInjection {
    ErrInjection { kind, func: ErrFunc::LoadMemAddr, addr, mask }
}

/// Expected PAPR result: the new state, or the RTAS status of a refusal.
type Cell = Result<PeState, i32>;

fn check_papr_row(name: &str, row: [Cell; 6], primitive: impl Fn(&mut PeMachine) -> Result<(), PeError>) {
    for (col, expected) in COLS.into_iter().zip(row) {
        let mut pe = pe_in(col);
        let before = pe.clone();
        match (primitive(&mut pe), expected) {
            (Ok(()), Ok(state)) => assert_eq!(pe.state(), state, "{name} in {col:?}"),
            (Err(e), Err(status)) => {
                assert_eq!(e.rtas_status(), status, "{name} in {col:?}: {e}");
                assert_eq!(pe, before, "{name} in {col:?} changed the PE");
            }
            (got, want) => panic!("{name} in {col:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn papr_pe_state_control_table() {
    use PeState::*;
    // Columns: 0, 1, 2, 4, 5t, 5p (LoPAPR "PE State Control").
    check_papr_row("thaw MMIO", [Err(-3), Err(-7), Ok(StoppedDma), Err(-3), Err(-7), Err(-7)], |pe| pe.thaw_mmio());
    check_papr_row("thaw DMA", [Err(-3), Err(-7), Err(-7), Ok(Normal), Err(-7), Err(-7)], |pe| pe.thaw_dma());
    check_papr_row("deassert", [Ok(Normal), Ok(Unavailable), Err(-7), Err(-3), Err(-7), Err(-7)], |pe| {
        pe.deassert_reset(T0).map(drop)
    });
    for kind in [ResetKind::Hot, ResetKind::Fundamental] {
        check_papr_row("assert", [Ok(Reset), Ok(Reset), Ok(Reset), Ok(Reset), Err(-7), Err(-7)], |pe| {
            pe.assert_reset(kind, T0).map(drop)
        });
    }
}

/// Expected VFIO result: the reply value and new state, or the errno.
type VfioCell = Result<(u32, PeState), i32>;

fn check_vfio_row(op: EehOp, row: [VfioCell; 6]) {
    for (col, expected) in COLS.into_iter().zip(row) {
        let mut pe = pe_in(col);
        let before = pe.clone();
        match (pe.apply(&op, T0), expected) {
            (Ok(done), Ok((value, state))) => {
                assert_eq!((done.reply.ioctl_value(), done.status.state), (value, state), "{op:?} in {col:?}");
                assert_eq!(pe.state(), state);
            }
            (Err(e), Err(errno)) => {
                assert_eq!(e.errno(), errno, "{op:?} in {col:?}: {e}");
                assert_eq!(pe, before, "{op:?} in {col:?} changed the PE");
            }
            (got, want) => panic!("{op:?} in {col:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn vfio_ops_follow_linux_semantics() {
    use PeState::*;
    const EIO: i32 = errno::EIO;
    let ok = |s| Ok((0, s));
    check_vfio_row(EehOp::Disable, [ok(Normal), ok(Reset), ok(Stopped), ok(StoppedDma), ok(Unavailable), Err(EIO)]);
    check_vfio_row(EehOp::Enable, [ok(Normal), ok(Reset), ok(Normal), ok(Normal), ok(Unavailable), Err(EIO)]);
    check_vfio_row(EehOp::UnfreezeIo, [ok(Normal), Err(EIO), ok(StoppedDma), ok(StoppedDma), Err(EIO), Err(EIO)]);
    check_vfio_row(EehOp::UnfreezeDma, [ok(Normal), Err(EIO), Err(EIO), ok(Normal), Err(EIO), Err(EIO)]);
    check_vfio_row(
        EehOp::GetState,
        [
            Ok((0, Normal)),
            Ok((1, Reset)),
            Ok((2, Stopped)),
            Ok((4, StoppedDma)),
            Ok((5, Unavailable)),
            Ok((5, Unavailable)),
        ],
    );
    check_vfio_row(EehOp::ResetDeactivate, [ok(Normal), ok(Unavailable), ok(Normal), ok(Normal), Err(EIO), Err(EIO)]);
    for kind in [ResetKind::Hot, ResetKind::Fundamental] {
        check_vfio_row(EehOp::Reset(kind), [ok(Reset), ok(Reset), ok(Reset), ok(Reset), Err(EIO), Err(EIO)]);
    }
    check_vfio_row(EehOp::Configure, [ok(Normal), ok(Reset), ok(Stopped), ok(StoppedDma), ok(Unavailable), Err(EIO)]);
    let arm = EehOp::InjectErr(inj(ErrType::Bus64, 0, 0));
    check_vfio_row(arm, [ok(Normal), ok(Reset), ok(Stopped), ok(StoppedDma), ok(Unavailable), Err(EIO)]);
}

#[test]
fn resets_need_eeh_enabled() {
    for op in [HOT, EehOp::Reset(ResetKind::Fundamental), EehOp::ResetDeactivate] {
        let mut pe = PeMachine::default();
        let err = pe.apply(&op, T0).unwrap_err();
        assert_eq!(err, PeError::NotEnabled);
        assert_eq!(err.errno(), errno::EIO);
        assert_eq!(err.into_backend(PeId(3)), BackendError::NotEnabled(PeId(3)));
        assert_eq!(pe, PeMachine::default());
    }
}

#[test]
fn reset_settles_after_hold_and_settle_time() {
    let mut pe = pe_in(Col::Normal);
    let done = pe.apply(&EehOp::Reset(ResetKind::Fundamental), T0).unwrap();
    assert_eq!(done.effect, Effect::ResetAsserted(ResetKind::Fundamental));
    assert!(!pe.mmio_allowed() && !pe.dma_allowed());
    // Deasserting early still counts the full hold time.
    let t1 = T0 + Duration::from_millis(100);
    let done = pe.apply(&EehOp::ResetDeactivate, t1).unwrap();
    let usable_at = T0 + Duration::from_millis(250 + 1800);
    assert_eq!(done.effect, Effect::ResetDeasserted { usable_at });
    assert_eq!(done.status.unavailable_for, Some(usable_at - t1));
    let almost = usable_at - Duration::from_nanos(1);
    assert!(!pe.settle(almost));
    assert_eq!(pe.status(almost).unavailable_for, Some(Duration::from_nanos(1)));
    // The next operation completes the settle and says so.
    let done = pe.apply(&EehOp::GetState, usable_at).unwrap();
    assert!(done.settled);
    assert_eq!(done.reply, PeOpReply::State(PeState::Normal));
    assert!(pe.mmio_allowed() && pe.dma_allowed());
}

#[test]
fn deactivate_of_a_frozen_pe_reenables_it() {
    let mut pe = pe_in(Col::Stopped);
    let done = pe.apply(&EehOp::ResetDeactivate, T0).unwrap();
    assert_eq!((done.effect, pe.state()), (Effect::Reenabled, PeState::Normal));
}

#[test]
fn enable_thaws_and_reports_it() {
    let mut pe = pe_in(Col::Stopped);
    assert_eq!(pe.apply(&EehOp::Enable, T0).unwrap().effect, Effect::Enabled { thawed: true });
    assert_eq!(pe.apply(&EehOp::Enable, T0).unwrap().effect, Effect::Enabled { thawed: false });
}

#[test]
fn freezes_widen_and_never_narrow() {
    let mut pe = pe_in(Col::StoppedDma);
    assert_eq!(pe.freeze(FreezeScope::Dma, T0), FreezeOutcome::Unchanged);
    assert_eq!(pe.freeze(FreezeScope::All, T0), FreezeOutcome::Frozen { count: 2 });
    assert_eq!(pe.freeze(FreezeScope::All, T0), FreezeOutcome::Unchanged);
    for col in [Col::Reset, Col::Unavail, Col::Failed] {
        let mut pe = pe_in(col);
        let before = pe.clone();
        assert_eq!(pe.freeze(FreezeScope::All, T0), FreezeOutcome::Unchanged);
        assert_eq!(pe, before);
    }
}

#[test]
fn too_many_freezes_in_the_window_fail_the_pe() {
    let mut pe = PeMachine::default();
    let hour = Duration::from_secs(3600);
    let mut now = T0;
    for n in 1..=5 {
        assert_eq!(pe.freeze(FreezeScope::All, now), FreezeOutcome::Frozen { count: n });
        pe.apply(&EehOp::Enable, now).unwrap();
        now += Duration::from_secs(60);
    }
    // Sixth freeze within the hour.
    assert_eq!(pe.freeze(FreezeScope::All, now), FreezeOutcome::Failed { count: 6 });
    assert_eq!(pe.status(now), PeStatus { state: PeState::Unavailable, unavailable_for: Some(Duration::ZERO) });
    assert_eq!(pe.apply(&EehOp::Enable, now), Err(PeError::PermanentlyFailed));
    assert_eq!(pe.apply(&EehOp::GetState, now).unwrap().reply, PeOpReply::State(PeState::Unavailable));

    // Spread over more than the window, the count restarts.
    let mut pe = PeMachine::default();
    let mut now = T0;
    for _ in 0..20 {
        assert!(matches!(pe.freeze(FreezeScope::All, now), FreezeOutcome::Frozen { .. }));
        pe.apply(&EehOp::Enable, now).unwrap();
        now += hour / 4;
    }
}

#[test]
fn freeze_limit_is_configurable() {
    let policy = FreezePolicy { max_freezes: 0, window: Duration::from_secs(1) };
    let mut pe = PeMachine::new(policy, ResetTiming::default());
    assert_eq!(pe.freeze(FreezeScope::Dma, T0), FreezeOutcome::Failed { count: 1 });
}

#[test]
fn injection_range_is_checked_for_32_bit() {
    let mut pe = pe_in(Col::Normal);
    let narrow = inj(ErrType::Bus32, 0xffff_f000, 0xffff_f000);
    assert_eq!(pe.apply(&EehOp::InjectErr(narrow), T0).unwrap().effect, Effect::ArmInjection(narrow));
    for bad in [inj(ErrType::Bus32, 1 << 32, 0), inj(ErrType::Bus32, 0, 1 << 40)] {
        let err = pe.apply(&EehOp::InjectErr(bad), T0).unwrap_err();
        assert_eq!(err.errno(), errno::ERANGE);
        assert!(matches!(err.into_backend(PeId(1)), BackendError::OutOfRange(_)));
    }
    assert!(pe.apply(&EehOp::InjectErr(inj(ErrType::Bus64, 1 << 32, !0)), T0).is_ok());
}

// ---- Random sequences against a reference model ----------------------------

const POLICY: FreezePolicy = FreezePolicy { max_freezes: 3, window: Duration::from_secs(20) };

/// A second, independent statement of the rules, as plain match arms.
#[derive(Debug, Clone, Copy, PartialEq)]
enum M {
    N,
    Sd,
    S,
    R(Duration),
    Se(Duration),
    F,
}

#[derive(Debug, Clone)]
struct Model {
    m: M,
    enabled: bool,
    count: u32,
    start: Option<Duration>,
}

impl Model {
    fn state(&self) -> u32 {
        match self.m {
            M::N => 0,
            M::R(_) => 1,
            M::S => 2,
            M::Sd => 4,
            M::Se(_) | M::F => 5,
        }
    }

    fn op(&mut self, op: &EehOp, now: Duration) -> Result<u32, i32> {
        const EIO: Result<u32, i32> = Err(errno::EIO);
        if let M::Se(until) = self.m {
            if now >= until {
                self.m = M::N;
            }
        }
        if matches!(op, EehOp::GetState) {
            return Ok(self.state());
        }
        if self.m == M::F {
            return EIO;
        }
        let needs_enable = matches!(op, EehOp::Reset(_) | EehOp::ResetDeactivate);
        if needs_enable && !self.enabled {
            return EIO;
        }
        let (next, result) = match (op, self.m) {
            (EehOp::Enable, M::S | M::Sd) => (M::N, Ok(0)),
            (EehOp::UnfreezeIo, M::S) => (M::Sd, Ok(0)),
            (EehOp::UnfreezeIo, M::R(_) | M::Se(_)) => (self.m, EIO),
            (EehOp::UnfreezeDma, M::Sd) => (M::N, Ok(0)),
            (EehOp::UnfreezeDma, M::S | M::R(_) | M::Se(_)) => (self.m, EIO),
            (EehOp::ResetDeactivate, M::S | M::Sd) => (M::N, Ok(0)),
            (EehOp::ResetDeactivate, M::R(since)) => {
                let until = now.max(since + Duration::from_millis(250)) + Duration::from_millis(1800);
                (M::Se(until), Ok(0))
            }
            (EehOp::ResetDeactivate | EehOp::Reset(_), M::Se(_)) => (self.m, EIO),
            (EehOp::Reset(_), M::N | M::S | M::Sd) => (M::R(now), Ok(0)),
            (EehOp::InjectErr(i), _) if i.kind == ErrType::Bus32 && (i.addr >> 32 != 0 || i.mask >> 32 != 0) => {
                (self.m, Err(errno::ERANGE))
            }
            _ => (self.m, Ok(0)),
        };
        if result.is_ok() {
            self.m = next;
            self.enabled |= matches!(op, EehOp::Enable);
        }
        result
    }

    fn freeze(&mut self, scope: FreezeScope, now: Duration) {
        if let M::Se(until) = self.m {
            if now >= until {
                self.m = M::N;
            }
        }
        let next = match (self.m, scope) {
            (M::N, FreezeScope::Dma) => M::Sd,
            (M::N | M::Sd, FreezeScope::All) => M::S,
            _ => return,
        };
        if !matches!(self.start, Some(s) if now - s <= POLICY.window) {
            self.start = Some(now);
            self.count = 0;
        }
        self.count += 1;
        self.m = if self.count > POLICY.max_freezes { M::F } else { next };
    }
}

#[derive(Debug, Clone)]
enum Step {
    Op(EehOp),
    Freeze(FreezeScope),
    Wait(u64),
}

fn any_step() -> impl Strategy<Value = Step> {
    let injection = (any::<bool>(), prop_oneof![Just(0u64), Just(1 << 32), any::<u64>()], any::<bool>()).prop_map(
        |(wide, addr, masked)| {
            let kind = if wide { ErrType::Bus64 } else { ErrType::Bus32 };
            Step::Op(EehOp::InjectErr(inj(kind, addr, if masked { addr } else { 0 })))
        },
    );
    prop_oneof![
        3 => proptest::sample::select(&EehOp::WITHOUT_ARGUMENTS[..]).prop_map(Step::Op),
        1 => injection,
        2 => prop_oneof![Just(FreezeScope::All), Just(FreezeScope::Dma)].prop_map(Step::Freeze),
        2 => (0u64..3000).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn machine_agrees_with_the_reference_model(steps in proptest::collection::vec(any_step(), 1..80)) {
        let mut pe = PeMachine::new(POLICY, ResetTiming::default());
        let mut model = Model { m: M::N, enabled: false, count: 0, start: None };
        let mut now = Duration::ZERO;
        for step in &steps {
            match step {
                Step::Op(op) => {
                    let before = pe.clone();
                    let got = pe.apply(op, now);
                    let want = model.op(op, now);
                    prop_assert_eq!(got.map(|a| a.reply.ioctl_value()).map_err(PeError::errno), want, "{:?}", op);
                    if want.is_err() {
                        let mut settled = before;
                        settled.settle(now);
                        prop_assert_eq!(&pe, &settled, "a refused {:?} changed the PE", op);
                    }
                }
                Step::Freeze(scope) => {
                    pe.settle(now);
                    pe.freeze(*scope, now);
                    model.freeze(*scope, now);
                }
                Step::Wait(ms) => now += Duration::from_millis(*ms),
            }
            prop_assert_eq!(pe.state().raw(), model.state());
            prop_assert_eq!(pe.enabled(), model.enabled);
            prop_assert_eq!(pe.mmio_allowed(), matches!(model.m, M::N | M::Sd));
            prop_assert_eq!(pe.dma_allowed(), model.m == M::N);
            if let M::Se(until) = model.m {
                prop_assert_eq!(pe.status(now).unavailable_for, Some(until.saturating_sub(now)));
            }
        }
    }
}
