//! The lifecycle every catalogue item goes through, one explicit state machine:
//! In study → In design → Active → Retired → Obsolete, forward only, one step at a time
//! (staying put is not a transition). A new item starts In study or In design; only
//! activation makes an offering sellable, and it is where its plans are compiled.

use crate::error::{CatalogueError, Result};

/// The lifecycle status of a catalogue item (TMF620's `lifecycleStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LifecycleStatus {
    InStudy,
    InDesign,
    Active,
    Retired,
    Obsolete,
}

impl LifecycleStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [LifecycleStatus; 5] = [
        LifecycleStatus::InStudy,
        LifecycleStatus::InDesign,
        LifecycleStatus::Active,
        LifecycleStatus::Retired,
        LifecycleStatus::Obsolete,
    ];

    /// The name as TMF620 writes it: `In study`, `In design`, `Active`, `Retired`, `Obsolete`.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleStatus::InStudy => "In study",
            LifecycleStatus::InDesign => "In design",
            LifecycleStatus::Active => "Active",
            LifecycleStatus::Retired => "Retired",
            LifecycleStatus::Obsolete => "Obsolete",
        }
    }

    /// The status named `name` (exactly as [`as_str`](Self::as_str) writes it).
    pub fn parse(name: &str) -> Option<LifecycleStatus> {
        LifecycleStatus::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Whether an item may be created in this status.
    pub fn is_initial(self) -> bool {
        matches!(self, LifecycleStatus::InStudy | LifecycleStatus::InDesign)
    }

    /// Whether the item is past design: its definition is fixed (only its status,
    /// validity, description and status reason still change) and it cannot be deleted
    /// until it is Obsolete.
    pub fn is_released(self) -> bool {
        matches!(self, LifecycleStatus::Active | LifecycleStatus::Retired | LifecycleStatus::Obsolete)
    }

    /// The one transition function: `Ok` if an item may go from `self` to `to` (or stay),
    /// `InvalidTransition` naming both otherwise.
    pub fn transition(self, to: LifecycleStatus) -> Result<()> {
        use LifecycleStatus::*;
        match (self, to) {
            (from, to) if from == to => Ok(()),
            (InStudy, InDesign) | (InDesign, Active) | (Active, Retired) | (Retired, Obsolete) => Ok(()),
            (from, to) => {
                Err(CatalogueError::InvalidTransition { from: from.as_str().to_owned(), to: to.as_str().to_owned() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LifecycleStatus::{self, *};

    #[test]
    fn only_the_next_step_or_staying_put_is_allowed() {
        let allowed = [(InStudy, InDesign), (InDesign, Active), (Active, Retired), (Retired, Obsolete)];
        for from in LifecycleStatus::ALL {
            for to in LifecycleStatus::ALL {
                let ok = from == to || allowed.contains(&(from, to));
                assert_eq!(from.transition(to).is_ok(), ok, "{from:?} → {to:?}");
            }
        }
    }

    #[test]
    fn names_read_back() {
        for status in LifecycleStatus::ALL {
            assert_eq!(LifecycleStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(LifecycleStatus::parse("active"), None);
    }
}
