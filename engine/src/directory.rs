//! Read-mostly indexes shared by every shard: subscriber identity → subscription and
//! subscription → account, for O(1) routing of requests to the shard that owns the account.

use dashmap::DashMap;
use smol_str::SmolStr;

use crate::model::{AccountId, Identity, SubscriptionId};

type Hasher = foldhash::fast::RandomState;

#[derive(Debug, Default)]
pub struct Directory {
    /// Keys of up to 23 bytes (every MSISDN and IMSI key) are held inline, so a lookup
    /// compares them without following a pointer.
    identities: DashMap<SmolStr, (SubscriptionId, AccountId), Hasher>,
    subscriptions: DashMap<SubscriptionId, AccountId, Hasher>,
}

impl Directory {
    pub fn new() -> Directory {
        Directory::default()
    }

    pub fn subscriber(&self, identity: &Identity) -> Option<(SubscriptionId, AccountId)> {
        identity.with_key(|key| self.identities.get(key).map(|entry| *entry))
    }

    pub fn account_of(&self, subscription: SubscriptionId) -> Option<AccountId> {
        self.subscriptions.get(&subscription).map(|entry| *entry)
    }

    /// Claims a subscription id and its identities for `account`, all or nothing.
    /// Returns false (and claims nothing) when any of them is taken.
    pub(crate) fn claim(&self, subscription: SubscriptionId, account: AccountId, identities: &[Identity]) -> bool {
        use dashmap::mapref::entry::Entry;
        match self.subscriptions.entry(subscription) {
            Entry::Occupied(_) => return false,
            Entry::Vacant(vacant) => {
                vacant.insert(account);
            }
        }
        let mut claimed = Vec::with_capacity(identities.len());
        for identity in identities {
            let key = SmolStr::from(identity.key());
            match self.identities.entry(key.clone()) {
                Entry::Occupied(_) => {
                    for key in claimed {
                        self.identities.remove(&key);
                    }
                    self.subscriptions.remove(&subscription);
                    return false;
                }
                Entry::Vacant(vacant) => {
                    vacant.insert((subscription, account));
                    claimed.push(key);
                }
            }
        }
        true
    }

    /// Claims one more identity for a subscription; false (and nothing claimed) when it
    /// is taken.
    pub(crate) fn claim_identity(&self, identity: &Identity, subscription: SubscriptionId, account: AccountId) -> bool {
        use dashmap::mapref::entry::Entry;
        match self.identities.entry(SmolStr::from(identity.key())) {
            Entry::Occupied(_) => false,
            Entry::Vacant(vacant) => {
                vacant.insert((subscription, account));
                true
            }
        }
    }

    /// Frees an identity of `subscription` for others.
    pub(crate) fn release_identity(&self, identity: &Identity, subscription: SubscriptionId) {
        identity.with_key(|key| self.identities.remove_if(key, |_, (owner, _)| *owner == subscription));
    }

    /// Frees a terminated subscription's id and identities.
    pub(crate) fn release(&self, subscription: SubscriptionId, identities: &[Identity]) {
        for identity in identities {
            self.release_identity(identity, subscription);
        }
        self.subscriptions.remove(&subscription);
    }

    /// Records a subscription found while recovering a shard.
    pub(crate) fn restore(&self, subscription: SubscriptionId, account: AccountId, identities: &[Identity]) {
        self.subscriptions.insert(subscription, account);
        for identity in identities {
            self.identities.insert(SmolStr::from(identity.key()), (subscription, account));
        }
    }

    /// Forgets every subscription and identity of the accounts `owned` picks (a shard
    /// about to restore them from disk after a journal failure).
    pub(crate) fn forget(&self, owned: impl Fn(AccountId) -> bool) {
        self.subscriptions.retain(|_, account| !owned(*account));
        self.identities.retain(|_, (_, account)| !owned(*account));
    }

    pub fn len(&self) -> usize {
        self.subscriptions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
    }
}
