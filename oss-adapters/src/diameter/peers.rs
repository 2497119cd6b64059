//! Which Diameter peers are connected, for fault management: a peer is known by the
//! Origin-Host of its accepted CER; each connection that ends says whether it ended in
//! order (the peer's Disconnect-Peer-Request answered) or was lost (closed without one,
//! or silent past the watchdog timeout). `tollgate serve` reads [`peers`] once a second
//! and raises an alarm for a peer lost and not back, cleared when it connects again.
//!
//! Updated on a capabilities exchange and on a connection's end, never per request, so
//! one process-wide mutex serves. Bounded: at most [`MAX_TRACKED_PEERS`] Origin-Hosts
//! (anyone may send a CER when `--peer` lists none); a peer that left in order and has no
//! connection is forgotten.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// The most Origin-Hosts tracked at once; a new one past it is not tracked.
pub const MAX_TRACKED_PEERS: usize = 1024;

/// A peer's presence as [`peers`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPresence {
    pub origin_host: String,
    /// Connections open with an accepted capabilities exchange.
    pub connections: u32,
    /// Why its last connection was lost, when it ended out of order.
    pub lost: Option<&'static str>,
}

#[derive(Debug, Default)]
struct Presence {
    connections: u32,
    lost: Option<&'static str>,
}

static PEERS: Mutex<BTreeMap<String, Presence>> = Mutex::new(BTreeMap::new());

/// A connection of `origin_host` passed its capabilities exchange. Returns whether the
/// peer is tracked (false past [`MAX_TRACKED_PEERS`]).
pub(crate) fn connected(origin_host: &str) -> bool {
    let mut peers = PEERS.lock().unwrap_or_else(PoisonError::into_inner);
    if !peers.contains_key(origin_host) && peers.len() >= MAX_TRACKED_PEERS {
        return false;
    }
    let presence = peers.entry(origin_host.to_owned()).or_default();
    presence.connections += 1;
    presence.lost = None;
    true
}

/// A tracked connection of `origin_host` ended: in order (`lost` is `None`) or lost, and
/// why.
pub(crate) fn disconnected(origin_host: &str, lost: Option<&'static str>) {
    let mut peers = PEERS.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(presence) = peers.get_mut(origin_host) else { return };
    presence.connections = presence.connections.saturating_sub(1);
    if lost.is_some() {
        presence.lost = lost;
    }
    if presence.connections == 0 && presence.lost.is_none() {
        peers.remove(origin_host);
    }
}

/// Every tracked peer, by Origin-Host.
pub fn peers() -> Vec<PeerPresence> {
    let peers = PEERS.lock().unwrap_or_else(PoisonError::into_inner);
    peers
        .iter()
        .map(|(origin_host, presence)| PeerPresence {
            origin_host: origin_host.clone(),
            connections: presence.connections,
            lost: presence.lost,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(origin: &str) -> Option<PeerPresence> {
        peers().into_iter().find(|peer| peer.origin_host == origin)
    }

    #[test]
    fn a_lost_peer_stays_known_until_it_connects_again_and_one_that_parts_in_order_is_forgotten() {
        assert!(connected("a.peers.test"));
        assert!(connected("a.peers.test"));
        disconnected("a.peers.test", Some("closed without a Disconnect-Peer-Request"));
        let one_left = presence("a.peers.test").expect("tracked");
        assert_eq!((one_left.connections, one_left.lost), (1, Some("closed without a Disconnect-Peer-Request")));
        disconnected("a.peers.test", None);
        assert_eq!(presence("a.peers.test").map(|p| (p.connections, p.lost.is_some())), Some((0, true)));
        assert!(connected("a.peers.test"));
        assert_eq!(presence("a.peers.test").map(|p| (p.connections, p.lost)), Some((1, None)));
        disconnected("a.peers.test", None);
        assert_eq!(presence("a.peers.test"), None, "parted in order: forgotten");
        disconnected("never.peers.test", Some("lost"));
        assert_eq!(presence("never.peers.test"), None, "only peers that exchanged capabilities");
    }
}
