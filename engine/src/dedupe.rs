//! The exactly-once window: the values of recent idempotency keys, in two generations.
//!
//! Keys go into the current generation until it holds `window` keys; then it becomes the
//! previous generation and the one before is forgotten whole: dropped on a thread of its
//! own so the shard does not stop to free a million answers, or, when its entries need
//! no dropping, cleared and reused as the next generation. So the last `window` keys
//! are always remembered (and at most `2 × window`). An earlier version kept an exact
//! ring of the last `window` keys and forgot the oldest key with every new one: a second
//! random probe into a table of a million keys for every record, the largest single cost
//! of the bulk path.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;

use crate::api::Answer;
use crate::table::{Table, MAX_ENTRIES};

/// Below this many keys a forgotten generation is dropped in place.
const DROP_ELSEWHERE: usize = 1 << 14;

/// Most keys a window remembers per generation.
pub const MAX_WINDOW: usize = MAX_ENTRIES;

/// Recent keys with their values; a key keeps its first value. At least the last
/// `window` keys are remembered, at most `2 × window`. Both exactly-once windows
/// (request keys here, record keys in [`crate::records`]) are one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window<K: Hash + Eq, V> {
    window: usize,
    current: Table<K, V>,
    previous: Table<K, V>,
}

impl<K: Hash + Eq + Send + 'static, V: Send + 'static> Window<K, V> {
    /// A window of `window` keys (at least 1, at most [`MAX_WINDOW`]).
    pub fn new(window: usize) -> Window<K, V> {
        Window { window: window.clamp(1, MAX_WINDOW), current: Table::default(), previous: Table::default() }
    }

    pub fn window(&self) -> usize {
        self.window
    }

    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.current.get(key).or_else(|| self.previous.get(key))
    }

    pub fn contains<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.current.contains_key(key) || self.previous.contains_key(key)
    }

    /// Remembers `value` for `key` (a key already present keeps its first value).
    pub fn insert(&mut self, key: K, value: V) {
        if self.previous.contains_key(&key) {
            return;
        }
        if self.current.contains_key(&key) {
            return;
        }
        self.insert_absent(key, value);
    }

    /// Remembers `value` for a `key` the caller found in neither generation (by
    /// [`Window::get`] just before): the same as [`Window::insert`], without looking for
    /// it again.
    pub fn insert_absent(&mut self, key: K, value: V) {
        debug_assert!(!self.contains(&key));
        if self.current.len() == self.window {
            self.rotate();
        }
        // The window is at most MAX_WINDOW keys, so the table always takes it.
        self.current.insert_absent(key, value);
    }

    /// Starts loading what looking `key` up (and then adding it) reads first, in both
    /// generations.
    pub fn prefetch<Q: Hash + Eq + ?Sized>(&self, key: &Q)
    where
        K: Borrow<Q>,
    {
        self.current.prefetch(key);
        self.previous.prefetch(key);
    }

    /// The full current generation becomes the previous one, and the one before it is
    /// forgotten. The next fills as far, so it starts at that size.
    fn rotate(&mut self) {
        let full = std::mem::take(&mut self.current);
        let mut forgotten = std::mem::replace(&mut self.previous, full);
        if !std::mem::needs_drop::<(K, V)>() && forgotten.capacity() >= self.window {
            // Nothing to drop (the record window's digests and memos): forgetting is
            // resetting the table's control bytes, and the next generation fills the
            // same memory, already mapped, instead of faulting in a fresh table.
            forgotten.clear();
            self.current = forgotten;
        } else {
            self.current = Table::with_capacity(self.window);
            forget(forgotten);
        }
    }

    /// Replaces the value of a key present (its age is unchanged); false if absent.
    pub fn replace<Q: Hash + Eq + ?Sized>(&mut self, key: &Q, value: V) -> bool
    where
        K: Borrow<Q>,
    {
        match self.current.get_mut(key).or_else(|| self.previous.get_mut(key)) {
            Some(slot) => {
                *slot = value;
                true
            }
            None => false,
        }
    }

    /// Keys and values, the previous generation's before the current one's, each sorted
    /// by key. Inserting them in this order into a new window of the same size rebuilds
    /// the same generations, and the same window always gives the same sequence
    /// (snapshots of the same state are the same bytes).
    pub fn ordered(&self) -> Vec<(&K, &V)>
    where
        K: Ord,
    {
        let (mut entries, previous) = self.generations();
        sort_generations(&mut entries, previous, |entry| entry.0);
        entries
    }

    /// Keys and values, the previous generation's before the current one's, unsorted, and
    /// how many are the previous generation's: what [`Window::ordered`] gives once
    /// [`sort_generations`] has run (a snapshot sorts on another thread).
    pub fn generations(&self) -> Generations<'_, K, V> {
        let mut entries: Vec<(&K, &V)> = Vec::with_capacity(self.len());
        entries.extend(self.previous.iter());
        let previous = entries.len();
        entries.extend(self.current.iter());
        (entries, previous)
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A window's entries, the older generation's first, and how many are the older's.
pub type Generations<'w, K, V> = (Vec<(&'w K, &'w V)>, usize);

/// Sorts the two generations of [`Window::generations`] each by `key`.
pub fn sort_generations<T, K: Ord>(entries: &mut [T], previous: usize, key: impl Fn(&T) -> &K) {
    let (older, newer) = entries.split_at_mut(previous.min(entries.len()));
    older.sort_unstable_by(|a, b| key(a).cmp(key(b)));
    newer.sort_unstable_by(|a, b| key(a).cmp(key(b)));
}

impl<K: Hash + Eq + Send + 'static, V: Send + 'static> Default for Window<K, V> {
    fn default() -> Window<K, V> {
        Window::new(1)
    }
}

/// Drops a forgotten generation; a large one on a short-lived thread of its own.
fn forget<K: Send + 'static, V: Send + 'static>(generation: Table<K, V>) {
    if generation.len() < DROP_ELSEWHERE {
        return;
    }
    let spawned = std::thread::Builder::new().name("tollgate-forget".into()).spawn(move || drop(generation));
    // If no thread can be started, `spawn` drops the closure, and the generation with
    // it, on this thread.
    drop(spawned);
}

/// The exactly-once window of requests: answers by idempotency key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentAnswers(Window<Arc<str>, Arc<Answer>>);

impl RecentAnswers {
    pub fn new(window: usize) -> RecentAnswers {
        RecentAnswers(Window::new(window))
    }

    pub fn window(&self) -> usize {
        self.0.window()
    }

    pub fn get(&self, key: &str) -> Option<&Answer> {
        self.0.get(key).map(|answer| &**answer)
    }

    /// Remembers `answer` for `key` (a key already present keeps its first answer), and
    /// forgets old keys past the window.
    pub fn insert(&mut self, key: &str, answer: Arc<Answer>) {
        if !self.0.contains(key) {
            self.0.insert(Arc::from(key), answer);
        }
    }

    /// Keys and answers, the older generation first, each sorted (see [`Window::ordered`]).
    pub fn ordered(&self) -> impl Iterator<Item = (&str, &Answer)> {
        self.0.ordered().into_iter().map(|(key, answer)| (&**key, &**answer))
    }

    /// Keys and answers unsorted, and how many are the older generation's (see
    /// [`Window::generations`]).
    pub fn generations(&self) -> Generations<'_, Arc<str>, Arc<Answer>> {
        self.0.generations()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Outcome;

    #[test]
    fn keeps_the_first_answer() {
        let mut recent = RecentAnswers::new(2);
        recent.insert("a", Arc::new(Answer::outcome(Outcome::Success)));
        recent.insert("a", Arc::new(Answer::outcome(Outcome::UnknownAccount)));
        assert_eq!(recent.get("a"), Some(&Answer::outcome(Outcome::Success)));
        assert_eq!(recent.len(), 1);
    }

    #[test]
    fn remembers_the_last_window_keys_and_at_most_twice_as_many() {
        for window in [1usize, 2, 3, 7] {
            let mut recent: Window<u32, u32> = Window::new(window);
            for key in 0..50u32 {
                recent.insert(key, key * 10);
                recent.insert(key, 0);
                let first_kept = (key + 1).saturating_sub(window as u32);
                for past in first_kept..=key {
                    assert_eq!(recent.get(&past), Some(&(past * 10)), "window {window}: key {past} after {key}");
                }
                assert!(recent.len() <= 2 * window, "window {window}: {} keys after {key}", recent.len());
                // Forgotten keys are the oldest ones.
                let kept: Vec<u32> = (0..=key).filter(|k| recent.contains(k)).collect();
                assert_eq!(kept, (key + 1 - kept.len() as u32..=key).collect::<Vec<_>>(), "window {window}");
            }
        }
    }

    #[test]
    fn reinserting_in_iteration_order_rebuilds_the_same_window() {
        let mut recent: Window<u32, u32> = Window::new(4);
        for key in 0..11u32 {
            recent.insert(key, key);
            let mut rebuilt = Window::new(4);
            assert_eq!(recent.ordered().len(), recent.len());
            for (key, value) in recent.ordered() {
                rebuilt.insert(*key, *value);
            }
            assert_eq!(rebuilt, recent, "after {key}");
            assert!(rebuilt.replace(&key, 99));
            assert_ne!(rebuilt, recent, "a replaced value is a difference");
        }
    }

    #[test]
    fn inserting_a_new_key_without_looking_matches_insert() {
        for window in [1usize, 2, 5] {
            let (mut looked, mut blind): (Window<u32, u32>, Window<u32, u32>) =
                (Window::new(window), Window::new(window));
            for key in 0..30u32 {
                looked.insert(key, key + 1);
                blind.insert_absent(key, key + 1);
                assert_eq!(blind, looked, "window {window}, after {key}");
            }
        }
    }
}
