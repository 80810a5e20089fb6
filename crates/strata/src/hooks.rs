//! Validators and watches: the copy-on-write hook list shared by
//! [`Atom`](crate::atom::Atom), [`WordAtom`](crate::atom::WordAtom) and
//! [`TVar`](crate::stm::TVar).
//!
//! Each owner keeps the current list as `Option<Arc<Hooks<T>>>` behind a
//! mutex that only hook edits and hooked changes take, plus a flags byte
//! ([`HAS_VALIDATOR`], [`HAS_WATCHES`]) that its change path reads with one
//! load to learn that there is nothing to call. A change clones the `Arc` and
//! calls the hooks with no lock held, so a hook may itself edit the hooks or
//! change the value.

// Hooks are not part of any modelled protocol: std's `Arc` (loom's cannot
// hold a `dyn`).
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;

/// A validator: `false` rejects the value.
pub(crate) type Validator<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;
/// A watch, called with the old and the new value after a change.
pub(crate) type Watch<T> = Arc<dyn Fn(&T, &T) + Send + Sync>;

/// Flags bit: a validator is set.
pub(crate) const HAS_VALIDATOR: u8 = 1;
/// Flags bit: at least one watch is set.
pub(crate) const HAS_WATCHES: u8 = 2;

/// One version of an owner's hooks; replaced whole on every edit.
pub(crate) struct Hooks<T> {
    pub(crate) validator: Option<Validator<T>>,
    pub(crate) watches: Vec<(String, Watch<T>)>,
}

impl<T> Clone for Hooks<T> {
    fn clone(&self) -> Self {
        Self {
            validator: self.validator.clone(),
            watches: self.watches.clone(),
        }
    }
}

impl<T> Hooks<T> {
    /// Applies `edit` to a copy of the hooks in `slot`, installs the copy,
    /// and returns the flags the owner should publish for it.
    pub(crate) fn edit(slot: &mut Option<Arc<Hooks<T>>>, edit: impl FnOnce(&mut Hooks<T>)) -> u8 {
        let mut hooks = match slot {
            Some(h) => Hooks::clone(h),
            None => Hooks {
                validator: None,
                watches: Vec::new(),
            },
        };
        edit(&mut hooks);
        let flags = if hooks.validator.is_some() {
            HAS_VALIDATOR
        } else {
            0
        } | if hooks.watches.is_empty() {
            0
        } else {
            HAS_WATCHES
        };
        *slot = Some(Arc::new(hooks));
        flags
    }

    /// Adds the watch `key`, or replaces the one of that name.
    pub(crate) fn set_watch(&mut self, key: String, f: Watch<T>) {
        match self.watches.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = f,
            None => self.watches.push((key, f)),
        }
    }

    /// Removes the watch `key`; whether there was one.
    pub(crate) fn remove_watch(&mut self, key: &str) -> bool {
        let before = self.watches.len();
        self.watches.retain(|(k, _)| k != key);
        self.watches.len() != before
    }
}

/// The first panic of a run of watches, kept to be re-raised once every
/// watch has run.
#[derive(Default)]
pub(crate) struct FirstPanic(Option<Box<dyn Any + Send>>);

impl FirstPanic {
    /// Runs `f`, keeping its panic if it is the first.
    pub(crate) fn run(&mut self, f: impl FnOnce()) {
        // The watches see only `&T` values already installed, so a panic
        // cannot leave anything half-changed for the next one.
        if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
            self.0.get_or_insert(p);
        }
    }

    /// Re-raises the first panic, if any.
    pub(crate) fn resume(self) {
        if let Some(p) = self.0 {
            resume_unwind(p);
        }
    }
}

/// Calls every watch with `(old, new)`: a panicking watch does not skip the
/// later ones; the first panic is re-raised after all of them ran.
pub(crate) fn call_watches<T>(watches: &[(String, Watch<T>)], old: &T, new: &T) {
    let mut first = FirstPanic::default();
    for (_, w) in watches {
        first.run(|| w(old, new));
    }
    first.resume();
}
