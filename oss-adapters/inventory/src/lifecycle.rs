//! The lifecycle of an MSISDN or a SIM card: one state enum and one transition function.
//!
//! ```text
//! MSISDN:  available ─reserve→ reserved ─assign→ assigned ─unassign→ quarantine ─(cool-off ends)→ available
//!                    ←release─          ←(reservation expires)─
//! SIM:     available ─reserve→ reserved ─assign→ assigned ─unassign (swap out)→ retired
//!                    ←release─          ←(reservation expires)─
//! ```
//!
//! The two timed steps happen by themselves: a reservation past its end and a quarantine
//! past its cool-off count as available ([`effective`]) and the next reservation may take
//! the row; nothing sweeps. Every other step goes through [`next`], which refuses what the
//! state does not allow ([`Illegal`], answered 409 naming the state).

use std::fmt;

use jiff::Timestamp;
use tollgate_store::PoolKind;

/// Where an MSISDN or a SIM card is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceState {
    /// Free to reserve.
    Available,
    /// Held for an owner (an order) until its reservation ends.
    Reserved,
    /// In use by a subscription.
    Assigned,
    /// An MSISDN cooling off after its subscription let it go.
    Quarantine,
    /// A SIM card swapped out or otherwise taken out of use: never handed out again.
    Retired,
}

/// A step of the lifecycle that someone asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Hold it for an owner.
    Reserve,
    /// Give the owner's reservation to a subscription.
    Assign,
    /// Give a reservation back.
    Release,
    /// Take it from its subscription (termination, number change, SIM swap).
    Unassign,
}

impl Action {
    /// As in "it cannot be …".
    pub fn past(self) -> &'static str {
        match self {
            Action::Reserve => "reserved",
            Action::Assign => "assigned",
            Action::Release => "released",
            Action::Unassign => "unassigned",
        }
    }
}

impl ResourceState {
    /// Every state.
    pub const ALL: [ResourceState; 5] = [
        ResourceState::Available,
        ResourceState::Reserved,
        ResourceState::Assigned,
        ResourceState::Quarantine,
        ResourceState::Retired,
    ];

    /// The name stored and shown (`state`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceState::Available => "available",
            ResourceState::Reserved => "reserved",
            ResourceState::Assigned => "assigned",
            ResourceState::Quarantine => "quarantine",
            ResourceState::Retired => "retired",
        }
    }

    /// The state of this name.
    pub fn parse(name: &str) -> Option<ResourceState> {
        ResourceState::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// Whether a resource of `kind` can be in this state.
    pub fn applies_to(self, kind: PoolKind) -> bool {
        match self {
            ResourceState::Quarantine => kind == PoolKind::Msisdn,
            ResourceState::Retired => kind == PoolKind::Sim,
            _ => true,
        }
    }

    /// TMF639's `resourceStatus` and `usageState` for this state (TMF639 has no assigned,
    /// quarantine or retired; `state` carries the exact one).
    pub fn tmf_status(self) -> (&'static str, &'static str) {
        match self {
            ResourceState::Available => ("available", "idle"),
            ResourceState::Reserved => ("reserved", "idle"),
            ResourceState::Assigned => ("reserved", "active"),
            ResourceState::Quarantine => ("standby", "idle"),
            ResourceState::Retired => ("suspended", "idle"),
        }
    }
}

impl fmt::Display for ResourceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step the state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Illegal {
    pub state: ResourceState,
    pub action: Action,
}

/// The state after `action` on a resource of `kind` in state `from` (its [`effective`]
/// state), or why not.
pub fn next(kind: PoolKind, from: ResourceState, action: Action) -> Result<ResourceState, Illegal> {
    use ResourceState::*;
    match (from, action) {
        (Available, Action::Reserve) => Ok(Reserved),
        (Reserved, Action::Assign) => Ok(Assigned),
        (Reserved, Action::Release) => Ok(Available),
        (Assigned, Action::Unassign) => Ok(match kind {
            PoolKind::Msisdn => Quarantine,
            PoolKind::Sim => Retired,
        }),
        _ => Err(Illegal { state: from, action }),
    }
}

/// The state a row is in at `now`: a reservation or quarantine past its end (`free_at`)
/// is available. `stored` is what was last written.
pub fn effective(stored: ResourceState, free_at: Option<Timestamp>, now: Timestamp) -> ResourceState {
    match (stored, free_at) {
        (ResourceState::Reserved | ResourceState::Quarantine, Some(free_at)) if free_at <= now => {
            ResourceState::Available
        }
        _ => stored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (state, action) pair against the diagram in the module documentation.
    #[test]
    fn the_transition_table() {
        use ResourceState::*;
        let allowed = [
            (PoolKind::Msisdn, Available, Action::Reserve, Reserved),
            (PoolKind::Msisdn, Reserved, Action::Assign, Assigned),
            (PoolKind::Msisdn, Reserved, Action::Release, Available),
            (PoolKind::Msisdn, Assigned, Action::Unassign, Quarantine),
            (PoolKind::Sim, Available, Action::Reserve, Reserved),
            (PoolKind::Sim, Reserved, Action::Assign, Assigned),
            (PoolKind::Sim, Reserved, Action::Release, Available),
            (PoolKind::Sim, Assigned, Action::Unassign, Retired),
        ];
        for kind in [PoolKind::Msisdn, PoolKind::Sim] {
            for state in ResourceState::ALL.into_iter().filter(|state| state.applies_to(kind)) {
                for action in [Action::Reserve, Action::Assign, Action::Release, Action::Unassign] {
                    let expected = allowed
                        .iter()
                        .find(|(k, s, a, _)| *k == kind && *s == state && *a == action)
                        .map(|(_, _, _, to)| *to);
                    assert_eq!(next(kind, state, action).ok(), expected, "{kind:?} {state} {action:?}");
                    if expected.is_none() {
                        assert_eq!(next(kind, state, action), Err(Illegal { state, action }));
                    }
                }
            }
        }
    }

    #[test]
    fn an_ended_reservation_or_quarantine_is_available() {
        let now = Timestamp::from_second(1_000).expect("instant");
        let before = Timestamp::from_second(999).expect("instant");
        let after = Timestamp::from_second(1_001).expect("instant");
        for stored in [ResourceState::Reserved, ResourceState::Quarantine] {
            assert_eq!(effective(stored, Some(before), now), ResourceState::Available);
            assert_eq!(effective(stored, Some(now), now), ResourceState::Available);
            assert_eq!(effective(stored, Some(after), now), stored);
        }
        assert_eq!(effective(ResourceState::Assigned, None, now), ResourceState::Assigned);
        assert_eq!(effective(ResourceState::Retired, None, now), ResourceState::Retired);
        for state in ResourceState::ALL {
            assert_eq!(ResourceState::parse(state.as_str()), Some(state));
        }
    }
}
