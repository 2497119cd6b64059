//! A billing account's state (TMF666 `state`): `Active` → `Suspended` → `Active` …, either
//! → `Closed`, and nothing after `Closed` (the engine keeps a closed account's history but
//! takes no further change). [`transition`] is the one transition function; a step it
//! refuses is a 409 naming both states. Each step is an engine operation through the
//! outbox ([`AccountState::operation`]).

use crate::engine::EngineOperation;
use crate::error::{CustomersError, Result};

/// Where a billing account stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountState {
    /// Charging and changes allowed.
    Active,
    /// The engine refuses its subscriptions' usage; top-ups and adjustments still apply.
    Suspended,
    /// For good: nothing changes any more, in the BSS or in the engine.
    Closed,
}

impl AccountState {
    /// Every state.
    pub const ALL: [AccountState; 3] = [AccountState::Active, AccountState::Suspended, AccountState::Closed];

    /// The name in documents and rows.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Active => "Active",
            AccountState::Suspended => "Suspended",
            AccountState::Closed => "Closed",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<AccountState> {
        AccountState::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// The engine operation that moves engine account `account` into this state from
    /// another (`actor` is named in the engine's journal as the reason of a suspension; a
    /// close settles money left only with a `settle_reason`).
    pub fn operation(self, account: u64, actor: &str, settle_reason: Option<&str>) -> EngineOperation {
        match self {
            AccountState::Active => EngineOperation::ResumeAccount { account },
            AccountState::Suspended => {
                EngineOperation::SuspendAccount { account, reason: format!("billing account suspended by {actor}") }
            }
            AccountState::Closed => {
                EngineOperation::CloseAccount { account, settle_reason: settle_reason.map(str::to_owned) }
            }
        }
    }
}

/// Whether a billing account may go from `from` to `to`; a refusal names both states.
pub fn transition(from: AccountState, to: AccountState) -> Result<()> {
    use AccountState::{Active, Closed, Suspended};
    match (from, to) {
        (Active, Suspended) | (Suspended, Active) | (Active | Suspended, Closed) => Ok(()),
        (from, to) if from == to => Ok(()),
        (from, to) => Err(CustomersError::Conflict {
            field: "state".into(),
            reason: format!("a billing account cannot go from {} to {}", from.as_str(), to.as_str()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_table() {
        use AccountState::{Active, Closed, Suspended};
        let allowed = [
            (Active, Active),
            (Active, Suspended),
            (Active, Closed),
            (Suspended, Active),
            (Suspended, Suspended),
            (Suspended, Closed),
            (Closed, Closed),
        ];
        for from in AccountState::ALL {
            for to in AccountState::ALL {
                let result = transition(from, to);
                assert_eq!(result.is_ok(), allowed.contains(&(from, to)), "{from:?} → {to:?}");
                if let Err(CustomersError::Conflict { field, reason }) = result {
                    assert_eq!(field, "state");
                    assert!(reason.contains(from.as_str()) && reason.contains(to.as_str()), "{reason}");
                }
            }
        }
        for state in AccountState::ALL {
            assert_eq!(AccountState::parse(state.as_str()), Some(state));
        }
        assert_eq!(AccountState::parse("active"), None);
    }
}
