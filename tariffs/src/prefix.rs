//! Longest-prefix match over E.164 digit strings.
//!
//! A bitmap trie: each node keeps a 10-bit mask of the digits that have a child and the
//! index of its first child; the children of a node are contiguous, so the child for
//! digit `d` is `first_child + popcount(mask & ((1 << d) - 1))`. A node packs into one
//! `u64` (mask: 10 bits, value: 22 bits, first child: 32 bits) and a lookup is at most
//! 15 dependent loads. The trie is built breadth-first from a sorted
//! prefix list, which keeps the build O(total digits) and its memory at the final size.

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};

/// Longest prefix (E.164 allows 15 digits in all).
pub const MAX_PREFIX_DIGITS: usize = 15;

/// The value stored for "no destination ends here"; values must be below it.
const NO_VALUE: u32 = (1 << 22) - 1;
/// Largest value a prefix may map to.
pub const MAX_VALUE: u32 = NO_VALUE - 1;

/// `first_child << 32 | value << 10 | mask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
struct Node(u64);

impl Node {
    const EMPTY: Node = Node((NO_VALUE as u64) << 10);

    fn mask(self) -> u16 {
        (self.0 & 0x3ff) as u16
    }
    fn value(self) -> u32 {
        ((self.0 >> 10) & u64::from(NO_VALUE)) as u32
    }
    fn first_child(self) -> u32 {
        (self.0 >> 32) as u32
    }
    fn set_value(&mut self, value: u32) {
        self.0 = (self.0 & !(u64::from(NO_VALUE) << 10)) | (u64::from(value) << 10);
    }
    fn set_first_child(&mut self, first_child: u32) {
        self.0 = (self.0 & 0xffff_ffff) | (u64::from(first_child) << 32);
    }
    fn add_digit(&mut self, digit: u8) {
        self.0 |= 1 << digit;
    }
}

/// An immutable prefix → value map answering longest-prefix queries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct PrefixTrie {
    nodes: Vec<Node>,
    prefixes: u32,
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixMatch {
    /// The value of the longest matching prefix, and that prefix's length.
    Found { value: u32, prefix_len: u8 },
    /// No prefix matches the number.
    NotFound,
    /// The number holds something other than digits (after an optional leading `+`).
    Malformed { offset: usize },
}

impl PrefixTrie {
    /// Builds the trie from `(digits, value)` pairs sorted by digits with no duplicates,
    /// each value at most [`MAX_VALUE`].
    ///
    /// The caller validates digits, values and uniqueness (so it can name the line of a
    /// bad one); here a violation is a programming error.
    pub fn from_sorted(entries: &[(&[u8], u32)]) -> PrefixTrie {
        debug_assert!(entries.windows(2).all(|pair| pair[0].0 < pair[1].0));
        debug_assert!(entries.iter().all(|(_, value)| *value <= MAX_VALUE));
        let mut nodes = vec![Node::EMPTY];
        // Work queue of (node index, depth, range of entries sharing the node's prefix).
        let mut queue = std::collections::VecDeque::new();
        queue.push_back((0usize, 0usize, 0usize, entries.len()));
        while let Some((node, depth, mut start, end)) = queue.pop_front() {
            if start < end && entries[start].0.len() == depth {
                nodes[node].set_value(entries[start].1);
                start += 1;
            }
            if start == end {
                continue;
            }
            let first_child = nodes.len();
            nodes[node].set_first_child(first_child as u32);
            let mut at = start;
            while at < end {
                let digit = entries[at].0[depth];
                let mut group_end = at + 1;
                while group_end < end && entries[group_end].0[depth] == digit {
                    group_end += 1;
                }
                nodes[node].add_digit(digit - b'0');
                let child = nodes.len();
                nodes.push(Node::EMPTY);
                queue.push_back((child, depth + 1, at, group_end));
                at = group_end;
            }
        }
        PrefixTrie { nodes, prefixes: entries.len() as u32 }
    }

    /// A trie read from a compiled plan, once its nodes are checked: every child lies
    /// after its parent and inside the trie, so a walk always ends and never reads out of
    /// bounds, whatever the bytes were. `Err` names the first bad node.
    pub fn checked(self) -> Result<PrefixTrie, String> {
        for (index, node) in self.nodes.iter().enumerate() {
            let children = node.mask().count_ones() as usize;
            let first = node.first_child() as usize;
            if children > 0 && (first <= index || first + children > self.nodes.len()) {
                return Err(format!(
                    "destination trie node {index} has children at {first}..{} of {} nodes",
                    first + children,
                    self.nodes.len()
                ));
            }
        }
        Ok(self)
    }

    /// The number of prefixes stored.
    pub fn len(&self) -> usize {
        self.prefixes as usize
    }

    /// True when no prefix is stored.
    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }

    /// Memory held by the trie, in bytes.
    pub fn size_bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>()
    }

    /// Finds the longest stored prefix of `number` (digits, optionally after one `+`).
    pub fn longest_match(&self, number: &str) -> PrefixMatch {
        let bytes = number.as_bytes();
        let skip = usize::from(bytes.first() == Some(&b'+'));
        let mut best = PrefixMatch::NotFound;
        let Some(&(mut node)) = self.nodes.first() else {
            return best;
        };
        for (index, &byte) in bytes.iter().enumerate().skip(skip) {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                return PrefixMatch::Malformed { offset: index };
            }
            let bit = 1u16 << digit;
            let mask = node.mask();
            if mask & bit == 0 {
                break;
            }
            let child = node.first_child() + (mask & (bit - 1)).count_ones();
            node = self.nodes[child as usize];
            let value = node.value();
            if value != NO_VALUE {
                best = PrefixMatch::Found { value, prefix_len: (index + 1 - skip) as u8 };
            }
        }
        // A number with non-digits past the matched part is still malformed.
        if let Some(offset) = bytes.iter().skip(skip).position(|byte| !byte.is_ascii_digit()) {
            return PrefixMatch::Malformed { offset: offset + skip };
        }
        if bytes.len() == skip {
            return PrefixMatch::Malformed { offset: skip };
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn build(map: &BTreeMap<String, u32>) -> PrefixTrie {
        let entries: Vec<(&[u8], u32)> = map.iter().map(|(key, value)| (key.as_bytes(), *value)).collect();
        PrefixTrie::from_sorted(&entries)
    }

    fn naive(map: &BTreeMap<String, u32>, number: &str) -> PrefixMatch {
        (1..=number.len())
            .rev()
            .find_map(|len| {
                map.get(&number[..len]).map(|value| PrefixMatch::Found { value: *value, prefix_len: len as u8 })
            })
            .unwrap_or(PrefixMatch::NotFound)
    }

    #[test]
    fn longest_prefix_wins() {
        let map = BTreeMap::from([("49".to_owned(), 1), ("4917".to_owned(), 2), ("491".to_owned(), 3)]);
        let trie = build(&map);
        assert_eq!(trie.longest_match("+491701234"), PrefixMatch::Found { value: 2, prefix_len: 4 });
        assert_eq!(trie.longest_match("4916"), PrefixMatch::Found { value: 3, prefix_len: 3 });
        assert_eq!(trie.longest_match("4930"), PrefixMatch::Found { value: 1, prefix_len: 2 });
        assert_eq!(trie.longest_match("33"), PrefixMatch::NotFound);
        assert_eq!(trie.longest_match("49x1"), PrefixMatch::Malformed { offset: 2 });
        assert_eq!(trie.longest_match("+"), PrefixMatch::Malformed { offset: 1 });
    }

    fn node(mask: u16, value: u32, first_child: u32) -> Node {
        let mut node = Node::EMPTY;
        node.0 |= u64::from(mask);
        node.set_value(value);
        node.set_first_child(first_child);
        node
    }

    #[test]
    fn a_trie_read_back_is_checked() {
        let trie = build(&BTreeMap::from([("49".to_owned(), 1), ("4917".to_owned(), 2)]));
        assert_eq!(trie.clone().checked(), Ok(trie));
        // A child before its parent could make a walk go round for ever; one past the end
        // would be read out of bounds.
        let backwards = PrefixTrie { nodes: vec![node(0b10, NO_VALUE, 1), node(0b1, 3, 0)], prefixes: 1 };
        let error = backwards.checked().expect_err("a cycle");
        assert!(error.contains("node 1 has children at 0..1"), "{error}");
        let outside = PrefixTrie { nodes: vec![node(0b11, NO_VALUE, 1), node(0, 3, 0)], prefixes: 1 };
        let error = outside.checked().expect_err("out of bounds");
        assert!(error.contains("node 0 has children at 1..3 of 2 nodes"), "{error}");
    }

    proptest! {
        #[test]
        fn matches_a_naive_scan(
            prefixes in proptest::collection::btree_map("[0-9]{1,6}", 0u32..1000, 0..200),
            numbers in proptest::collection::vec("[0-9]{1,9}", 1..50),
        ) {
            let trie = build(&prefixes);
            prop_assert_eq!(trie.len(), prefixes.len());
            for number in &numbers {
                prop_assert_eq!(trie.longest_match(number), naive(&prefixes, number));
            }
        }
    }
}
