//! The allocation-free representation of word-sized primitive values.
//!
//! A `TVar` of one of the primitive integer types, `bool`, `char` or a float
//! keeps its value in an `AtomicU64` next to its lock word: a read is two
//! loads of one cache line and a commit is one store, with no box to
//! allocate and no epoch to defer a free to. Every other `T` lives in a heap
//! box per version. The choice is made by `TypeId`, which the compiler folds
//! away after monomorphization, and the conversions are safe downcasts.

use std::any::{Any, TypeId};

macro_rules! word_types {
    ($($t:ty => $to:expr, $from:expr;)*) => {
        /// Whether `T` is stored as a word.
        #[inline(always)]
        pub(crate) fn is_word<T: 'static>() -> bool {
            let id = TypeId::of::<T>();
            false $(|| id == TypeId::of::<$t>())*
        }

        /// The word of `v`; only meaningful when `is_word::<T>()`.
        #[inline(always)]
        pub(crate) fn to_word<T: 'static>(v: &T) -> u64 {
            let any = v as &dyn Any;
            $(
                if let Some(x) = any.downcast_ref::<$t>() {
                    let f: fn(&$t) -> u64 = $to;
                    return f(x);
                }
            )*
            0
        }

        /// The value of word `w`; only called when `is_word::<T>()` and `w`
        /// came from `to_word::<T>`.
        #[inline(always)]
        pub(crate) fn from_word<T: 'static>(w: u64) -> T {
            let mut out: Option<T> = None;
            let any = &mut out as &mut dyn Any;
            $(
                if let Some(slot) = any.downcast_mut::<Option<$t>>() {
                    let f: fn(u64) -> $t = $from;
                    *slot = Some(f(w));
                }
            )*
            match out {
                Some(v) => v,
                None => unreachable!("from_word called for a non-word type"),
            }
        }
    };
}

word_types! {
    u64 => |x| *x, |w| w;
    i64 => |x| *x as u64, |w| w as i64;
    usize => |x| *x as u64, |w| w as usize;
    isize => |x| *x as u64, |w| w as isize;
    u32 => |x| u64::from(*x), |w| w as u32;
    i32 => |x| *x as u64, |w| w as i32;
    u16 => |x| u64::from(*x), |w| w as u16;
    i16 => |x| *x as u64, |w| w as i16;
    u8 => |x| u64::from(*x), |w| w as u8;
    i8 => |x| *x as u64, |w| w as i8;
    bool => |x| u64::from(*x), |w| w != 0;
    char => |x| u64::from(u32::from(*x)), |w| char::from_u32(w as u32).unwrap_or('\0');
    f64 => |x| x.to_bits(), f64::from_bits;
    f32 => |x| u64::from(x.to_bits()), |w| f32::from_bits(w as u32);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn round<T: 'static + PartialEq + std::fmt::Debug + Copy>(v: T) {
        assert!(is_word::<T>());
        assert_eq!(from_word::<T>(to_word(&v)), v);
    }

    #[test]
    fn words_round_trip() {
        round(u64::MAX);
        round(-5i64);
        round(-1i8);
        round(i32::MIN);
        round(true);
        round('é');
        round(-0.5f64);
        round(1.25f32);
        round(usize::MAX);
        assert!(!is_word::<String>());
        assert!(!is_word::<(u32, u32)>());
    }
}
