//! The exactly-once window: the answers of the last `window` idempotency keys, in the
//! order they were first seen. The answers live in a ring; the hash index maps a key to
//! its position, so the index stays small (a key and a sequence number per entry).

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::hash::Hash;
use std::sync::Arc;

use crate::api::Answer;
use crate::shard::Map;

/// The last `window` keys with their values, in the order first seen; a key keeps its
/// first value, and the oldest are forgotten past the window. Both exactly-once windows
/// (request keys here, record keys in [`crate::records`]) are one of these.
#[derive(Debug, Clone)]
pub struct Window<K, V> {
    window: usize,
    /// Sequence number of `ring[0]`.
    first: u64,
    ring: VecDeque<(K, V)>,
    index: Map<K, u64>,
}

impl<K: Hash + Eq + Clone, V> Window<K, V> {
    pub fn new(window: usize) -> Window<K, V> {
        Window { window: window.max(1), first: 0, ring: VecDeque::new(), index: Map::default() }
    }

    pub fn window(&self) -> usize {
        self.window
    }

    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        let sequence = *self.index.get(key)?;
        self.ring.get((sequence - self.first) as usize).map(|(_, value)| value)
    }

    pub fn contains<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.index.contains_key(key)
    }

    /// Remembers `value` for `key` (a key already present keeps its first value).
    pub fn insert(&mut self, key: K, value: V) {
        if self.index.contains_key(&key) {
            return;
        }
        self.index.insert(key.clone(), self.first + self.ring.len() as u64);
        self.ring.push_back((key, value));
        while self.ring.len() > self.window {
            if let Some((oldest, _)) = self.ring.pop_front() {
                self.index.remove(&oldest);
                self.first += 1;
            }
        }
    }

    /// Replaces the value of a key present (its age is unchanged); false if absent.
    pub fn replace<Q: Hash + Eq + ?Sized>(&mut self, key: &Q, value: V) -> bool
    where
        K: Borrow<Q>,
    {
        let Some(sequence) = self.index.get(key) else { return false };
        match self.ring.get_mut((sequence - self.first) as usize) {
            Some(slot) => {
                slot.1 = value;
                true
            }
            None => false,
        }
    }

    /// Keys and values, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.ring.iter().map(|(key, value)| (key, value))
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

impl<K: Hash + Eq + Clone, V> Default for Window<K, V> {
    fn default() -> Window<K, V> {
        Window::new(1)
    }
}

impl<K: Hash + Eq + Clone, V: PartialEq> PartialEq for Window<K, V> {
    fn eq(&self, other: &Window<K, V>) -> bool {
        self.window == other.window && self.ring.len() == other.ring.len() && self.iter().eq(other.iter())
    }
}

impl<K: Hash + Eq + Clone, V: Eq> Eq for Window<K, V> {}

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
    /// forgets the oldest keys past the window.
    pub fn insert(&mut self, key: &str, answer: Arc<Answer>) {
        if !self.0.contains(key) {
            self.0.insert(Arc::from(key), answer);
        }
    }

    /// Keys and answers, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Answer)> {
        self.0.iter().map(|(key, answer)| (&**key, &**answer))
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
    fn keeps_the_first_answer_and_forgets_the_oldest_past_the_window() {
        let mut recent = RecentAnswers::new(2);
        recent.insert("a", Arc::new(Answer::outcome(Outcome::Success)));
        recent.insert("a", Arc::new(Answer::outcome(Outcome::UnknownAccount)));
        assert_eq!(recent.get("a"), Some(&Answer::outcome(Outcome::Success)));
        recent.insert("b", Arc::new(Answer::outcome(Outcome::AlreadyExists)));
        recent.insert("c", Arc::new(Answer::outcome(Outcome::UnknownSession)));
        assert_eq!(recent.get("a"), None);
        assert_eq!(recent.get("c"), Some(&Answer::outcome(Outcome::UnknownSession)));
        assert_eq!(recent.iter().map(|(k, _)| k).collect::<Vec<_>>(), vec!["b", "c"]);
    }
}
