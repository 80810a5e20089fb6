//! The hooks of [`Atom`](super::Atom) and [`WordAtom`](super::WordAtom):
//! the shared [`Hooks`] list with its flags byte, and the validator and
//! watch calls of a change.

use std::sync::Arc;

use super::AtomError;
use crate::hooks::{HAS_VALIDATOR, HAS_WATCHES, Hooks, Watch};
use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicU8, Ordering};

pub(crate) struct HookSet<T> {
    flags: AtomicU8,
    hooks: Mutex<Option<Arc<Hooks<T>>>>,
}

impl<T> HookSet<T> {
    pub(crate) fn new() -> Self {
        Self {
            flags: AtomicU8::new(0),
            hooks: Mutex::new(None),
        }
    }

    pub(crate) fn set_validator(&self, f: impl Fn(&T) -> bool + Send + Sync + 'static) {
        self.edit(|h| h.validator = Some(Arc::new(f)));
    }

    pub(crate) fn clear_validator(&self) {
        self.edit(|h| h.validator = None);
    }

    pub(crate) fn add_watch(
        &self,
        key: impl Into<String>,
        f: impl Fn(&T, &T) + Send + Sync + 'static,
    ) {
        let (key, f): (String, Watch<T>) = (key.into(), Arc::new(f));
        self.edit(move |h| h.set_watch(key, f));
    }

    pub(crate) fn remove_watch(&self, key: &str) -> bool {
        let mut removed = false;
        self.edit(|h| removed = h.remove_watch(key));
        removed
    }

    fn edit(&self, edit: impl FnOnce(&mut Hooks<T>)) {
        let mut slot = self.hooks.lock();
        let flags = Hooks::edit(&mut slot, edit);
        self.flags.store(flags, Ordering::Release);
    }

    fn current(&self) -> Option<Arc<Hooks<T>>> {
        self.hooks.lock().clone()
    }

    /// Passes `v` through the validator; a rejected value comes back in
    /// the error.
    #[inline]
    pub(crate) fn check(&self, v: T) -> Result<T, AtomError<T>> {
        if self.flags.load(Ordering::Acquire) & HAS_VALIDATOR == 0 {
            return Ok(v);
        }
        self.validate(v)
    }

    #[cold]
    fn validate(&self, v: T) -> Result<T, AtomError<T>> {
        match self.current().and_then(|h| h.validator.clone()) {
            Some(valid) if !valid(&v) => Err(AtomError::Invalid(v)),
            _ => Ok(v),
        }
    }

    /// Calls the watches with the value replaced and the value installed.
    #[inline]
    pub(crate) fn notify(&self, old: &T, new: &T) {
        if self.flags.load(Ordering::Acquire) & HAS_WATCHES == 0 {
            return;
        }
        self.call_watches(old, new);
    }

    #[cold]
    fn call_watches(&self, old: &T, new: &T) {
        if let Some(h) = self.current() {
            crate::hooks::call_watches(&h.watches, old, new);
        }
    }
}
