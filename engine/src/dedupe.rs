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
    /// Ids of the current and previous generations. A generation keeps its id from when
    /// it starts filling until it is forgotten, and its entries never move, so a snapshot
    /// writes each full stretch of it once and refers to it afterwards.
    current_id: u64,
    previous_id: u64,
    /// Keys whose value was replaced ([`Window::replace`]) while their generation lives:
    /// a snapshot carries their values beside the stretches written before.
    edited: Vec<K>,
}

impl<K: Hash + Eq + Send + 'static, V: Send + 'static> Window<K, V> {
    /// A window of `window` keys (at least 1, at most [`MAX_WINDOW`]).
    pub fn new(window: usize) -> Window<K, V> {
        Window {
            window: window.clamp(1, MAX_WINDOW),
            current: Table::default(),
            previous: Table::default(),
            current_id: 1,
            previous_id: 0,
            edited: Vec::new(),
        }
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
        self.previous_id = self.current_id;
        self.current_id += 1;
        // Edited keys of the generation about to be forgotten go with it.
        self.edited.retain(|key| self.current.contains_key(key));
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
    pub fn replace<Q: Hash + Eq + ?Sized + ToOwned<Owned = K>>(&mut self, key: &Q, value: V) -> bool
    where
        K: Borrow<Q>,
    {
        match self.current.get_mut(key).or_else(|| self.previous.get_mut(key)) {
            Some(slot) => {
                *slot = value;
                if !self.edited.iter().any(|edited| edited.borrow() == key) {
                    self.edited.push(key.to_owned());
                }
                true
            }
            None => false,
        }
    }

    /// The generations, the previous one first: each id with its entries in the order
    /// they were added.
    pub fn by_generation(&self) -> [(u64, &[(K, V)]); 2] {
        [(self.previous_id, self.previous.entries()), (self.current_id, self.current.entries())]
    }

    /// The keys replaced while their generation lives, with their values now.
    pub fn edited(&self) -> impl Iterator<Item = (&K, &V)> {
        self.edited.iter().filter_map(|key| self.get(key).map(|value| (key, value)))
    }

    /// Rebuilds a window from `generations` (id and entries in the order they were
    /// added, the previous one first) and the values of edited keys. A single generation
    /// of id 0 is a flat list from a snapshot before generations had ids: its entries are
    /// inserted one by one, rotating as they fill.
    pub fn restore(window: usize, generations: Vec<Generation<K, V>>, edited: Vec<(K, V)>) -> Window<K, V>
    where
        K: Clone,
    {
        let mut restored = Window::new(window);
        match generations.as_slice() {
            [(0, _)] => {
                for (key, value) in generations.into_iter().flat_map(|(_, entries)| entries) {
                    restored.insert(key, value);
                }
            }
            _ => {
                let mut tables = generations.into_iter().map(|(id, entries)| {
                    let mut table = Table::with_capacity(restored.window.max(entries.len()));
                    for (key, value) in entries {
                        table.insert_absent(key, value);
                    }
                    (id, table)
                });
                let (first, second) = (tables.next(), tables.next());
                let (previous, current) = match (first, second) {
                    (Some(previous), Some(current)) => (Some(previous), Some(current)),
                    (Some(only), None) => (None, Some(only)),
                    _ => (None, None),
                };
                if let Some((id, table)) = current {
                    restored.current_id = id;
                    restored.previous_id = id.saturating_sub(1);
                    restored.current = table;
                }
                if let Some((id, table)) = previous {
                    restored.previous_id = id;
                    restored.previous = table;
                }
            }
        }
        for (key, value) in edited {
            if let Some(slot) = restored.current.get_mut(&key).or_else(|| restored.previous.get_mut(&key)) {
                *slot = value;
                restored.edited.push(key);
            }
        }
        restored
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

/// A generation's id and its entries in the order they were added.
pub(crate) type Generation<K, V> = (u64, Vec<(K, V)>);

/// A window's entries, the older generation's first, and how many are the older's.
pub(crate) type Generations<'w, K, V> = (Vec<(&'w K, &'w V)>, usize);

/// Sorts the two generations of [`Window::generations`] each by `key`.
pub(crate) fn sort_generations<T, K: Ord>(entries: &mut [T], previous: usize, key: impl Fn(&T) -> &K) {
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

    /// The window itself.
    pub fn window_of_keys(&self) -> &Window<Arc<str>, Arc<Answer>> {
        &self.0
    }

    /// Rebuilds the window (see [`Window::restore`]).
    pub fn restore(window: usize, generations: Vec<Generation<Arc<str>, Arc<Answer>>>) -> RecentAnswers {
        RecentAnswers(Window::restore(window, generations, Vec::new()))
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
    fn restoring_its_generations_and_edits_rebuilds_the_same_window() {
        let mut recent: Window<u32, u32> = Window::new(4);
        for key in 0..11u32 {
            recent.insert(key, key);
            if key % 3 == 0 {
                assert!(recent.replace(&key, key + 100));
            }
            let generations = recent.by_generation().map(|(id, entries)| (id, entries.to_vec())).to_vec();
            let edited: Vec<(u32, u32)> = recent.edited().map(|(k, v)| (*k, *v)).collect();
            let rebuilt = Window::restore(4, generations, edited);
            assert_eq!(rebuilt, recent, "after {key}");
            let mut changed = rebuilt.clone();
            assert!(changed.replace(&key, 99));
            assert_ne!(changed, recent, "a replaced value is a difference");
        }
        // Edited keys leave with their generation.
        assert!(recent.edited().all(|(key, _)| recent.contains(key)));
        assert!(recent.edited().count() <= 3);
    }

    #[test]
    fn a_flat_list_restores_by_inserting_in_order() {
        let mut inserted: Window<u32, u32> = Window::new(4);
        for key in 0..11u32 {
            inserted.insert(key, key);
        }
        let flat: Vec<(u32, u32)> = (0..11u32).map(|k| (k, k)).collect();
        let restored = Window::restore(4, vec![(0, flat)], Vec::new());
        assert_eq!(restored.ordered(), inserted.ordered());
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
