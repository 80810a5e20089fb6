//! Validators and watches, shared by [`Atom`](super::Atom) and
//! [`WordAtom`](super::WordAtom).
//!
//! Copy-on-write behind a mutex that only hook edits and hooked changes
//! take: a change clones the `Arc` of the current hooks and calls them with
//! no lock held (a hook may itself edit the hooks or change the atom). A
//! flags byte tells the change path, with one load, that there is nothing
//! to call.

use std::sync::Arc;

use super::AtomError;
use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicU8, Ordering};

type Validator<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;
type Watch<T> = Arc<dyn Fn(&T, &T) + Send + Sync>;

struct Hooks<T> {
    validator: Option<Validator<T>>,
    watches: Vec<(String, Watch<T>)>,
}

const HAS_VALIDATOR: u8 = 1;
const HAS_WATCHES: u8 = 2;

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
        let key = key.into();
        let f: Watch<T> = Arc::new(f);
        self.edit(
            move |h| match h.watches.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = f,
                None => h.watches.push((key, f)),
            },
        );
    }

    pub(crate) fn remove_watch(&self, key: &str) -> bool {
        let mut removed = false;
        self.edit(|h| {
            let before = h.watches.len();
            h.watches.retain(|(k, _)| k != key);
            removed = h.watches.len() != before;
        });
        removed
    }

    fn edit(&self, edit: impl FnOnce(&mut Hooks<T>)) {
        let mut slot = self.hooks.lock();
        let mut hooks = match &*slot {
            Some(h) => Hooks {
                validator: h.validator.clone(),
                watches: h.watches.clone(),
            },
            None => Hooks {
                validator: None,
                watches: Vec::new(),
            },
        };
        edit(&mut hooks);
        let flags = (if hooks.validator.is_some() {
            HAS_VALIDATOR
        } else {
            0
        }) | (if hooks.watches.is_empty() {
            0
        } else {
            HAS_WATCHES
        });
        *slot = Some(Arc::new(hooks));
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
            for (_, w) in &h.watches {
                w(old, new);
            }
        }
    }
}
