//! `Lru`, the bounded per-subscriber map every per-subscriber detector keeps its state in:
//! at most `capacity` entries; inserting into a full map forgets the least recently seen
//! subscriber. A slab of entries on an intrusive doubly linked list (most recent at the
//! head) and a hash map from key to slot: lookup, touch, insert and eviction are O(1) and
//! allocate nothing once the slab has grown to its capacity. The links live in their own
//! array (8 bytes an entry), apart from the keys and values: moving an entry to the head
//! touches its neighbours' links, and a compact array keeps more of those in cache.
//!
//! Memory: `capacity × (size_of::<V>() + 16)` bytes of slab plus the hash map's
//! `capacity × 12 / load factor` bytes, and whatever `V` owns on the heap.

use std::collections::HashMap;

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
}

/// A map from subscriber key to `V` holding at most `capacity` entries.
#[derive(Debug)]
pub(crate) struct Lru<V> {
    slots: HashMap<u64, u32, foldhash::fast::FixedState>,
    links: Vec<Link>,
    keys: Vec<u64>,
    values: Vec<V>,
    head: u32,
    tail: u32,
    capacity: usize,
    evicted: u64,
}

impl<V> Lru<V> {
    /// A map of at most `capacity` entries (at least 1; at most `u32::MAX - 1`).
    pub(crate) fn new(capacity: usize) -> Lru<V> {
        let capacity = capacity.clamp(1, (u32::MAX - 1) as usize);
        Lru {
            slots: HashMap::with_hasher(foldhash::fast::FixedState::default()),
            links: Vec::new(),
            keys: Vec::new(),
            values: Vec::new(),
            head: NONE,
            tail: NONE,
            capacity,
            evicted: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// How many entries were forgotten to make room.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }

    fn unlink(&mut self, slot: u32) {
        let Link { prev, next } = self.links[slot as usize];
        match prev {
            NONE => self.head = next,
            p => self.links[p as usize].next = next,
        }
        match next {
            NONE => self.tail = prev,
            n => self.links[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, slot: u32) {
        let old_head = self.head;
        self.links[slot as usize] = Link { prev: NONE, next: old_head };
        match old_head {
            NONE => self.tail = slot,
            h => self.links[h as usize].prev = slot,
        }
        self.head = slot;
    }

    /// The entry of `key` without marking it seen.
    #[cfg(test)]
    pub(crate) fn peek_mut(&mut self, key: u64) -> Option<&mut V> {
        let slot = *self.slots.get(&key)?;
        Some(&mut self.values[slot as usize])
    }

    /// The entry of `key`, marked most recently seen; `make` builds it if absent (and if
    /// the map is full, the least recently seen entry is forgotten first).
    pub(crate) fn get_or_insert_with(&mut self, key: u64, make: impl FnOnce() -> V) -> &mut V {
        if let Some(&slot) = self.slots.get(&key) {
            if self.head != slot {
                self.unlink(slot);
                self.push_front(slot);
            }
            return &mut self.values[slot as usize];
        }
        let slot = if self.values.len() < self.capacity {
            let slot = self.values.len() as u32;
            self.links.push(Link { prev: NONE, next: NONE });
            self.keys.push(key);
            self.values.push(make());
            slot
        } else {
            let slot = self.tail;
            self.unlink(slot);
            self.slots.remove(&self.keys[slot as usize]);
            self.keys[slot as usize] = key;
            self.values[slot as usize] = make();
            self.evicted += 1;
            slot
        };
        self.slots.insert(key, slot);
        self.push_front(slot);
        &mut self.values[slot as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_forgets_the_least_recently_seen() {
        let mut lru = Lru::new(3);
        for key in [1, 2, 3] {
            *lru.get_or_insert_with(key, || 0) += key;
        }
        *lru.get_or_insert_with(1, || 0) += 10; // 1 is now the most recent; 2 the least
        lru.get_or_insert_with(4, || 40);
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.evicted(), 1);
        assert!(lru.peek_mut(2).is_none(), "2 was the least recently seen");
        assert_eq!(lru.peek_mut(1).copied(), Some(11));
        assert_eq!(lru.peek_mut(3).copied(), Some(3));
        assert_eq!(lru.peek_mut(4).copied(), Some(40));
        lru.get_or_insert_with(5, || 50);
        assert!(lru.peek_mut(3).is_none(), "then 3");
        // 2 comes back as new.
        assert_eq!(*lru.get_or_insert_with(2, || 7), 7);
        assert!(lru.peek_mut(1).is_none(), "then 1");
    }

    #[test]
    fn many_keys_never_grow_it_past_its_capacity() {
        let mut lru = Lru::new(100);
        for key in 0..10_000u64 {
            *lru.get_or_insert_with(key % 1_000, || 0) += 1;
            assert!(lru.len() <= 100);
        }
        assert_eq!(lru.len(), 100);
        // The last 100 keys seen are 900..1000, each seen in its last round only (it was
        // forgotten in between): so 1 each.
        for key in 900..1_000 {
            assert_eq!(lru.peek_mut(key).copied(), Some(1), "key {key}");
        }
        assert_eq!(lru.evicted(), 10_000 - 100);
    }

    #[test]
    fn a_capacity_of_one_keeps_the_last() {
        let mut lru = Lru::new(0);
        lru.get_or_insert_with(1, || 1);
        lru.get_or_insert_with(2, || 2);
        assert!(lru.peek_mut(1).is_none());
        assert_eq!(lru.peek_mut(2).copied(), Some(2));
    }
}
