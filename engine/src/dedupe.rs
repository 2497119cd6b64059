//! The exactly-once window: the answers of the last `window` idempotency keys, in the
//! order they were first seen. The answers live in a ring; the hash index maps a key to
//! its position, so the index stays small (a key and a sequence number per entry).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::api::Answer;
use crate::shard::Map;

#[derive(Debug, Clone)]
pub struct RecentAnswers {
    window: usize,
    /// Sequence number of `ring[0]`.
    first: u64,
    ring: VecDeque<(Arc<str>, Arc<Answer>)>,
    index: Map<Arc<str>, u64>,
}

impl Default for RecentAnswers {
    fn default() -> RecentAnswers {
        RecentAnswers::new(1)
    }
}

impl RecentAnswers {
    pub fn new(window: usize) -> RecentAnswers {
        RecentAnswers { window: window.max(1), first: 0, ring: VecDeque::new(), index: Map::default() }
    }

    pub fn window(&self) -> usize {
        self.window
    }

    pub fn get(&self, key: &str) -> Option<&Answer> {
        let sequence = *self.index.get(key)?;
        self.ring.get((sequence - self.first) as usize).map(|(_, answer)| &**answer)
    }

    /// Remembers `answer` for `key` (a key already present keeps its first answer), and
    /// forgets the oldest keys past the window.
    pub fn insert(&mut self, key: &str, answer: Arc<Answer>) {
        if self.index.contains_key(key) {
            return;
        }
        let key: Arc<str> = Arc::from(key);
        self.index.insert(Arc::clone(&key), self.first + self.ring.len() as u64);
        self.ring.push_back((key, answer));
        while self.ring.len() > self.window {
            if let Some((oldest, _)) = self.ring.pop_front() {
                self.index.remove(&oldest);
                self.first += 1;
            }
        }
    }

    /// Keys and answers, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Answer)> {
        self.ring.iter().map(|(key, answer)| (&**key, &**answer))
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

impl PartialEq for RecentAnswers {
    fn eq(&self, other: &RecentAnswers) -> bool {
        self.window == other.window && self.ring.len() == other.ring.len() && self.iter().eq(other.iter())
    }
}

impl Eq for RecentAnswers {}

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
