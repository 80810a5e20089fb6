//! The one place that chooses between std (plus parking_lot) and loom.
//!
//! Every atomic, mutex, condvar, cell and thread used by a strata algorithm comes
//! from here, so `RUSTFLAGS="--cfg loom"` swaps the whole crate onto loom's
//! model checker without touching the algorithms (the tokio and crossbeam
//! layout). The wrappers give both worlds one API: `lock()` returns the guard
//! directly (no poisoning), `Condvar::wait` takes and returns the guard, and
//! `UnsafeCell` exposes loom's `with`/`with_mut` closures.

#![allow(dead_code, unused_imports)]

#[cfg(not(loom))]
mod imp {
    pub(crate) mod sync {
        pub(crate) use std::sync::Arc;

        pub(crate) mod atomic {
            pub(crate) use std::sync::atomic::{
                AtomicBool, AtomicI64, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize,
                Ordering, fence,
            };
        }

        /// A non-poisoning mutex whose `lock` returns the guard directly.
        #[derive(Debug, Default)]
        pub(crate) struct Mutex<T: ?Sized>(parking_lot::Mutex<T>);

        /// Guard of the shim [`Mutex`].
        pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

        impl<T> Mutex<T> {
            pub(crate) const fn new(value: T) -> Self {
                Self(parking_lot::Mutex::new(value))
            }
            pub(crate) fn into_inner(self) -> T {
                self.0.into_inner()
            }
        }

        impl<T: ?Sized> Mutex<T> {
            #[inline]
            pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
                self.0.lock()
            }
            #[inline]
            pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
                self.0.try_lock()
            }
        }

        /// A condvar for the shim [`Mutex`]; waits take and return the guard.
        #[derive(Debug, Default)]
        pub(crate) struct Condvar(parking_lot::Condvar);

        impl Condvar {
            pub(crate) const fn new() -> Self {
                Self(parking_lot::Condvar::new())
            }
            pub(crate) fn wait<'a, T>(&self, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
                self.0.wait(&mut guard);
                guard
            }
            /// Waits until notified or `deadline`; the flag says whether it timed out.
            pub(crate) fn wait_until<'a, T>(
                &self,
                mut guard: MutexGuard<'a, T>,
                deadline: std::time::Instant,
            ) -> (MutexGuard<'a, T>, bool) {
                let timed_out = self.0.wait_until(&mut guard, deadline).timed_out();
                (guard, timed_out)
            }
            pub(crate) fn notify_one(&self) -> bool {
                self.0.notify_one()
            }
            pub(crate) fn notify_all(&self) -> usize {
                self.0.notify_all()
            }
        }

        /// A non-poisoning reader-writer lock whose `read`/`write` return the
        /// guards directly.
        #[derive(Debug, Default)]
        pub(crate) struct RwLock<T: ?Sized>(parking_lot::RwLock<T>);

        /// Shared guard of the shim [`RwLock`].
        pub(crate) type RwLockReadGuard<'a, T> = parking_lot::RwLockReadGuard<'a, T>;
        /// Exclusive guard of the shim [`RwLock`].
        pub(crate) type RwLockWriteGuard<'a, T> = parking_lot::RwLockWriteGuard<'a, T>;

        impl<T> RwLock<T> {
            pub(crate) const fn new(value: T) -> Self {
                Self(parking_lot::RwLock::new(value))
            }
            pub(crate) fn into_inner(self) -> T {
                self.0.into_inner()
            }
        }

        impl<T: ?Sized> RwLock<T> {
            #[inline]
            pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
                self.0.read()
            }
            #[inline]
            pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
                self.0.write()
            }
        }
    }

    pub(crate) mod thread {
        pub(crate) use std::thread::{
            JoinHandle, Thread, current, park, park_timeout, spawn, yield_now,
        };
    }

    pub(crate) mod hint {
        /// A spin-wait hint; under loom it yields so the model can progress.
        #[inline]
        pub(crate) fn spin_loop() {
            std::hint::spin_loop();
        }
    }

    pub(crate) mod cell {
        /// `UnsafeCell` with loom's closure API, so code is written once.
        #[derive(Debug, Default)]
        #[repr(transparent)]
        pub(crate) struct UnsafeCell<T: ?Sized>(std::cell::UnsafeCell<T>);

        impl<T> UnsafeCell<T> {
            pub(crate) const fn new(value: T) -> Self {
                Self(std::cell::UnsafeCell::new(value))
            }
            pub(crate) fn into_inner(self) -> T {
                self.0.into_inner()
            }
        }

        impl<T: ?Sized> UnsafeCell<T> {
            #[inline]
            pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
                f(self.0.get())
            }
            #[inline]
            pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
                f(self.0.get())
            }
            #[inline]
            pub(crate) fn get_mut(&mut self) -> &mut T {
                self.0.get_mut()
            }
        }
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) mod sync {
        pub(crate) use loom::sync::Arc;

        pub(crate) mod atomic {
            pub(crate) use loom::sync::atomic::{
                AtomicBool, AtomicI64, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize,
                Ordering, fence,
            };
        }

        /// A loom mutex with the shim's non-poisoning API.
        #[derive(Debug, Default)]
        pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

        /// Guard of the shim [`Mutex`].
        pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

        impl<T> Mutex<T> {
            pub(crate) fn new(value: T) -> Self {
                Self(loom::sync::Mutex::new(value))
            }
            pub(crate) fn into_inner(self) -> T {
                self.0.into_inner().unwrap()
            }
            pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
                self.0.lock().unwrap()
            }
            pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
                self.0.try_lock().ok()
            }
        }

        /// A loom condvar with the shim's API (timeouts are not modelled).
        #[derive(Debug, Default)]
        pub(crate) struct Condvar(loom::sync::Condvar);

        impl Condvar {
            pub(crate) fn new() -> Self {
                Self(loom::sync::Condvar::new())
            }
            pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
                self.0.wait(guard).unwrap()
            }
            /// loom has no clock: a timed wait is an untimed wait that never times out.
            pub(crate) fn wait_until<'a, T>(
                &self,
                guard: MutexGuard<'a, T>,
                _deadline: std::time::Instant,
            ) -> (MutexGuard<'a, T>, bool) {
                (self.0.wait(guard).unwrap(), false)
            }
            pub(crate) fn notify_one(&self) -> bool {
                self.0.notify_one();
                true
            }
            pub(crate) fn notify_all(&self) -> usize {
                self.0.notify_all();
                0
            }
        }

        /// A loom reader-writer lock with the shim's non-poisoning API.
        #[derive(Debug, Default)]
        pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

        /// Shared guard of the shim [`RwLock`].
        pub(crate) type RwLockReadGuard<'a, T> = loom::sync::RwLockReadGuard<'a, T>;
        /// Exclusive guard of the shim [`RwLock`].
        pub(crate) type RwLockWriteGuard<'a, T> = loom::sync::RwLockWriteGuard<'a, T>;

        impl<T> RwLock<T> {
            pub(crate) fn new(value: T) -> Self {
                Self(loom::sync::RwLock::new(value))
            }
            pub(crate) fn into_inner(self) -> T {
                self.0.into_inner().unwrap()
            }
            pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
                self.0.read().unwrap()
            }
            pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
                self.0.write().unwrap()
            }
        }
    }

    pub(crate) mod thread {
        pub(crate) use loom::thread::{JoinHandle, Thread, current, park, spawn, yield_now};

        /// loom has no clock: a timed park is a plain park.
        pub(crate) fn park_timeout(_d: std::time::Duration) {
            loom::thread::park();
        }
    }

    pub(crate) mod hint {
        /// Under loom a spin must yield, or the model never schedules the other thread.
        #[inline]
        pub(crate) fn spin_loop() {
            loom::thread::yield_now();
        }
    }

    pub(crate) mod cell {
        pub(crate) use loom::cell::UnsafeCell;
    }
}

pub(crate) use imp::*;
