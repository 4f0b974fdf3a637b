//! Helpers shared by the UAPI tests.

/// `(offset, size)` of a field: `field!(Type, name)`. Given two names, the
/// first wins (`field!(Type, rename name)`), so a macro can pass an optional
/// rename followed by the default.
macro_rules! field {
    ($t:ty, $f:ident $($default:ident)?) => {
        (std::mem::offset_of!($t, $f), $crate::common::size_of_referent(|s: &$t| &s.$f))
    };
}

/// The size of what `get` returns a reference to: a field's size without a
/// value of the struct.
pub fn size_of_referent<T, F>(_get: fn(&T) -> &F) -> usize {
    std::mem::size_of::<F>()
}
