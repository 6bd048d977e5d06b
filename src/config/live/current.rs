//! The value a live config serves, and the per-thread cache behind [`Live::read`].
//!
//! A service reads its config on every request, often from every core. `Live::get` clones an
//! `Arc`, which writes the reference count every reader of the config shares; an `arc-swap`
//! guard writes nothing shared but costs about 70 instructions. [`Current::read`] does less:
//! each thread keeps, for the last live configs it read, the value and the generation it was
//! read at. A read loads the config's generation (a cache line written only when the value
//! changes), and while it equals the cached one the cached value is lent out. No shared write,
//! no allocation, no lock; a miss costs one `Arc` clone and fills the entry.
//!
//! What it costs: a thread's entry keeps the value it last read alive until the thread reads
//! that config again, reads another config that takes the entry, or exits (eight entries per
//! thread). An old value of a large config can thus outlive an update by a while.
//!
//! Soundness rests on four rules, all kept in this file:
//! - an entry is filled again only while this thread lends nothing (`lent == 0`); a [`Lent`]
//!   is `!Send`, so it ends on the thread that counted it;
//! - an entry owns one strong count of its value's `Arc`, released by [`Release`] when the
//!   thread exits, unless something is still lent then (the values then leak);
//! - nothing is filled once [`Release`] is gone, so nothing filled later leaks;
//! - ids are never reused and one id belongs to one live config, hence to one `T`.
//!
//! [`Live::read`]: super::Live::read

use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Live, Snapshot};

/// Entries per thread: a thread that reads more live configs than this in turn shares them,
/// and reads of configs that collide cost an `Arc` clone each.
const ENTRIES: usize = 8;

/// Ids of live configs, from 1 (0 marks an empty entry).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A live config's current value, as its follower stores it and its handles read it.
pub(super) struct Current<T> {
    snapshot: ArcSwap<Snapshot<T>>,
    /// Raised after each store: a value cached at this generation is still the current one.
    generation: AtomicU64,
    /// Which entry of a thread's cache may hold this config (`id % ENTRIES`), and the check.
    id: u64,
}

impl<T: Send + Sync + 'static> Current<T> {
    pub(super) fn new(initial: Snapshot<T>) -> Self {
        Current {
            snapshot: ArcSwap::from_pointee(initial),
            generation: AtomicU64::new(1),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The snapshot itself: its revision, staleness and age with the value.
    pub(super) fn load(&self) -> arc_swap::Guard<Arc<Snapshot<T>>> {
        self.snapshot.load()
    }

    /// Raised by each store: what a handle compares to learn that the value changed.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Puts a new snapshot in place. Readers see it from their next read on.
    pub(super) fn store(&self, snapshot: Snapshot<T>) {
        self.snapshot.store(Arc::new(snapshot));
        // After the store: a reader that sees this generation then loads this snapshot or a
        // newer one, so it never caches an old value under a new generation.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Gives the value in place a new revision (the follower is the one writer). The value is
    /// the same `Arc`, so the generation stays: what threads cached is still the current value,
    /// and handles waiting for a change are not woken.
    pub(super) fn rebase(&self, revision: i64) {
        let current = self.snapshot.load_full();
        self.snapshot.store(Arc::new(Snapshot {
            value: current.value.clone(),
            revision,
            stale: current.stale,
            applied_at: current.applied_at,
        }));
    }

    /// The current value, lent from this thread's cache when it holds it at the current
    /// generation, or else through [`read_missed`](Self::read_missed).
    #[inline]
    pub(super) fn read(&self) -> Lent<T> {
        let generation = self.generation.load(Ordering::Acquire);
        let hit = CACHE.with(|cache| {
            let entry = &cache.entries[self.id as usize % ENTRIES];
            let hit = entry.id.get() == self.id && entry.generation.get() == generation;
            if hit {
                cache.lent.set(cache.lent.get() + 1);
            }
            hit.then(|| entry.value.get())
        });
        match hit {
            Some(value) => Lent {
                value: value.cast(),
                owned: None,
                local: PhantomData,
            },
            None => self.read_missed(generation),
        }
    }

    /// A read the cache cannot answer: fills the entry, unless this thread lends a value now
    /// or is exiting; then through an `Arc` of its own.
    #[cold]
    #[inline(never)]
    fn read_missed(&self, generation: u64) -> Lent<T> {
        let value = self.snapshot.load().value.clone();
        let pointer = NonNull::from(&*value);
        let kept = RELEASE.try_with(|_| ()).is_ok()
            && CACHE.with(|cache| {
                if cache.lent.get() != 0 {
                    return false;
                }
                cache.lent.set(1);
                let entry = &cache.entries[self.id as usize % ENTRIES];
                let old = entry.replace(self.id, generation, value);
                // Last, with the lend counted: the old value's own drop may read a config.
                if let Some((old, release)) = old {
                    // SAFETY: the entry owned this count, and nothing lent it (`lent` was 0).
                    unsafe { release(old) }
                }
                true
            });
        if kept {
            Lent {
                value: pointer,
                owned: None,
                local: PhantomData,
            }
        } else {
            let value = self.snapshot.load().value.clone();
            Lent {
                value: NonNull::from(&*value),
                owned: Some(value),
                local: PhantomData,
            }
        }
    }
}

/// A read of a [`Live`] config's current value, from [`Live::read`]: derefs to the value.
///
/// It is `!Send`: it lends from the reading thread's cache, so it cannot be held across an
/// `.await` in a task that may move between threads (copy out what you need instead).
pub struct LiveRef<'a, T> {
    lent: Lent<T>,
    live: PhantomData<&'a Live<T>>,
}

impl<T> LiveRef<'_, T> {
    pub(super) fn new(lent: Lent<T>) -> Self {
        LiveRef {
            lent,
            live: PhantomData,
        }
    }
}

impl<T> std::ops::Deref for LiveRef<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.lent
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for LiveRef<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// A value lent by [`Current::read`]. `!Send`: it ends on the thread that counted it.
pub(super) struct Lent<T> {
    value: NonNull<T>,
    /// The value's own `Arc` when the cache could not lend it; else this thread's cache keeps
    /// it, and counts this in its `lent`.
    owned: Option<Arc<T>>,
    local: PhantomData<*const ()>,
}

impl<T> Lent<T> {
    /// The value's `Arc`, to keep: one more strong count.
    pub(super) fn to_arc(&self) -> Arc<T> {
        match &self.owned {
            Some(value) => value.clone(),
            // SAFETY: the cache entry lending the value owns a strong count of this `Arc`, and
            // keeps it while `self` lives.
            None => unsafe {
                Arc::increment_strong_count(self.value.as_ptr());
                Arc::from_raw(self.value.as_ptr())
            },
        }
    }
}

impl<T> std::ops::Deref for Lent<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the pointer comes from an `Arc<T>` that `owned` or this thread's cache keeps
        // alive for as long as `self` lives: the cache fills no entry while `lent` counts it.
        unsafe { self.value.as_ref() }
    }
}

impl<T> Drop for Lent<T> {
    // Inlined into every read: left to itself, the compiler may call the thread-local's
    // accessor out of line (six instructions more per read).
    #[inline(always)]
    fn drop(&mut self) {
        if self.owned.is_none() {
            CACHE.with(|cache| cache.lent.set(cache.lent.get() - 1));
        }
    }
}

thread_local! {
    /// Needs no destructor, so a read reaches it without checking whether it is alive;
    /// [`RELEASE`] frees what it holds when the thread exits.
    static CACHE: Cache = const {
        Cache { lent: Cell::new(0), entries: [const { Entry::empty() }; ENTRIES] }
    };
    static RELEASE: Release = const { Release };
}

/// One thread's cache: direct-mapped by id.
struct Cache {
    /// Values this thread lends now.
    lent: Cell<usize>,
    entries: [Entry; ENTRIES],
}

/// Gives the cache's strong counts back when the thread exits.
struct Release;

/// Drops one strong count of an `Arc<T>`, given its pointer.
type ReleaseFn = unsafe fn(NonNull<()>);

struct Entry {
    id: Cell<u64>,
    generation: Cell<u64>,
    /// The value: one strong count of its `Arc` is this entry's (dangling while empty).
    value: Cell<NonNull<()>>,
    /// How to give that count back: [`release::<T>`] for the `T` that `id` names.
    release: Cell<Option<ReleaseFn>>,
}

impl Entry {
    const fn empty() -> Entry {
        Entry {
            id: Cell::new(0),
            generation: Cell::new(0),
            value: Cell::new(NonNull::dangling()),
            release: Cell::new(None),
        }
    }

    /// Takes `value`'s count, and returns the count it held before (to release, last).
    fn replace<T: Send + Sync + 'static>(
        &self,
        id: u64,
        generation: u64,
        value: Arc<T>,
    ) -> Option<(NonNull<()>, ReleaseFn)> {
        let pointer = NonNull::new(Arc::into_raw(value).cast_mut()).expect("an Arc's pointer");
        let old = self
            .release
            .get()
            .map(|release| (self.value.get(), release));
        self.id.set(id);
        self.generation.set(generation);
        self.value.set(pointer.cast());
        self.release.set(Some(release::<T>));
        old
    }
}

/// # Safety
/// `pointer` is from `Arc::<T>::into_raw`, and its count is the caller's to give back.
unsafe fn release<T>(pointer: NonNull<()>) {
    // SAFETY: as the caller promises.
    drop(unsafe { Arc::from_raw(pointer.cast::<T>().as_ptr()) });
}

impl Drop for Release {
    fn drop(&mut self) {
        CACHE.with(|cache| {
            if cache.lent.get() != 0 {
                // A lent value outlives the thread's cache (it lives in another thread-local
                // being destroyed): every value stays where it is.
                return;
            }
            for entry in &cache.entries {
                entry.id.set(0);
                if let Some(release) = entry.release.take() {
                    // SAFETY: the entry owned this count, and nothing lends it.
                    unsafe { release(entry.value.get()) }
                }
            }
        });
    }
}
