//! A shard's accounts, stored densely: a vector of accounts and an id → slot index.
//! Accounts are never removed (a closed account keeps its history), so slots never move.

use std::ops::Index;

use crate::model::{Account, AccountId};
use crate::state::Map;

#[derive(Debug, Clone, Default)]
pub struct AccountTable {
    slots: Vec<Account>,
    index: Map<AccountId, u32>,
}

impl AccountTable {
    pub fn get(&self, id: &AccountId) -> Option<&Account> {
        self.index.get(id).map(|slot| &self.slots[*slot as usize])
    }

    pub fn get_mut(&mut self, id: &AccountId) -> Option<&mut Account> {
        self.index.get(id).map(|slot| &mut self.slots[*slot as usize])
    }

    /// Where the account `id` is kept, for [`AccountTable::at`]: one lookup for several
    /// reads of the same account.
    pub fn slot(&self, id: &AccountId) -> Option<usize> {
        self.index.get(id).map(|slot| *slot as usize)
    }

    /// The account at `slot` (from [`AccountTable::slot`]; slots never move).
    pub fn at(&self, slot: usize) -> &Account {
        &self.slots[slot]
    }

    pub fn at_mut(&mut self, slot: usize) -> &mut Account {
        &mut self.slots[slot]
    }

    pub fn contains_key(&self, id: &AccountId) -> bool {
        self.index.contains_key(id)
    }

    /// Inserts or replaces the account with `account.id`.
    pub fn insert(&mut self, account: Account) {
        match self.index.get(&account.id) {
            Some(slot) => self.slots[*slot as usize] = account,
            None => {
                self.index.insert(account.id, self.slots.len() as u32);
                self.slots.push(account);
            }
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &Account> {
        self.slots.iter()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        self.index.reserve(additional);
    }
}

impl Index<&AccountId> for AccountTable {
    type Output = Account;

    fn index(&self, id: &AccountId) -> &Account {
        match self.get(id) {
            Some(account) => account,
            None => panic!("account {id} is not in this shard"),
        }
    }
}

impl PartialEq for AccountTable {
    fn eq(&self, other: &AccountTable) -> bool {
        self.len() == other.len() && self.values().all(|a| other.get(&a.id) == Some(a))
    }
}

impl Eq for AccountTable {}

impl FromIterator<(AccountId, Account)> for AccountTable {
    fn from_iter<I: IntoIterator<Item = (AccountId, Account)>>(iter: I) -> AccountTable {
        let mut table = AccountTable::default();
        for (_, account) in iter {
            table.insert(account);
        }
        table
    }
}
