//! The states of a product order and of its items, as TMF622 names them, with one
//! transition function each. An order is `acknowledged` when accepted, `pending` while it
//! waits for its requested start date, `held` while its items wait for an earlier order on
//! the same product, `inProgress` while the workflow runs, and ends `completed`, `failed`,
//! `partial` (some items completed, some failed) or `cancelled`. A cancellation request
//! passes through `assessingCancellation` (decided in the request's own transaction) to
//! `pendingCancellation` while the done steps are compensated. `rejected` is not stored:
//! an order that does not validate is refused before it exists.
//!
//! The order's state follows from its items' ([`OrderState::of_items`]); every change of
//! either goes through its `transition`, which refuses anything else naming both states.

use crate::error::{OrdersError, Result};

/// A product order's state (TMF622 `ProductOrderStateType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderState {
    Acknowledged,
    Pending,
    Held,
    InProgress,
    Completed,
    Failed,
    Partial,
    AssessingCancellation,
    PendingCancellation,
    Cancelled,
}

/// A product order item's state (TMF622 `ProductOrderItemStateType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemState {
    Acknowledged,
    Pending,
    Held,
    InProgress,
    Completed,
    Failed,
    /// Its done steps are being compensated after a cancellation request.
    PendingCancellation,
    Cancelled,
}

macro_rules! names {
    ($type:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $type {
            /// Every state.
            pub const ALL: &'static [$type] = &[$($type::$variant),*];

            /// The name TMF622 gives it (`inProgress`, …).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($type::$variant => $name),*
                }
            }

            /// The state named `name`.
            pub fn parse(name: &str) -> Option<$type> {
                $type::ALL.iter().copied().find(|state| state.as_str() == name)
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(OrderState {
    Acknowledged => "acknowledged",
    Pending => "pending",
    Held => "held",
    InProgress => "inProgress",
    Completed => "completed",
    Failed => "failed",
    Partial => "partial",
    AssessingCancellation => "assessingCancellation",
    PendingCancellation => "pendingCancellation",
    Cancelled => "cancelled",
});

names!(ItemState {
    Acknowledged => "acknowledged",
    Pending => "pending",
    Held => "held",
    InProgress => "inProgress",
    Completed => "completed",
    Failed => "failed",
    PendingCancellation => "pendingCancellation",
    Cancelled => "cancelled",
});

fn refused(what: &'static str, from: &str, to: &str) -> OrdersError {
    OrdersError::InvalidTransition { what, from: from.to_owned(), to: to.to_owned() }
}

impl OrderState {
    /// Whether nothing more happens to the order.
    pub fn is_final(self) -> bool {
        matches!(self, OrderState::Completed | OrderState::Failed | OrderState::Partial | OrderState::Cancelled)
    }

    /// The one transition function: `Ok` if an order may go from `self` to `to` (or
    /// stay), `InvalidTransition` naming both otherwise.
    pub fn transition(self, to: OrderState) -> Result<()> {
        use OrderState::*;
        let allowed = match (self, to) {
            (from, to) if from == to => true,
            (from, _) if from.is_final() => false,
            // Started, waiting for its date or for another order on the same product.
            (Acknowledged | Pending | Held, Pending | Held | InProgress) => true,
            (InProgress, Held) => true,
            // Every item ended (an order may end before it ever showed inProgress).
            (Acknowledged | Pending | Held | InProgress, Completed | Failed | Partial) => true,
            // Cancellation: assessed, then compensating, then done; or refused and back.
            (Acknowledged | Pending | Held | InProgress, AssessingCancellation) => true,
            (AssessingCancellation, PendingCancellation | Acknowledged | Pending | Held | InProgress) => true,
            (PendingCancellation, Cancelled | Completed | Partial | Failed) => true,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(refused("productOrder", self.as_str(), to.as_str()))
        }
    }

    /// The state an order's items put it in. `cancelling`: a cancellation was accepted;
    /// `waiting`: the order's requested start date has not come.
    pub fn of_items(items: &[ItemState], cancelling: bool, waiting: bool) -> OrderState {
        use ItemState as I;
        let all = |f: fn(ItemState) -> bool| !items.is_empty() && items.iter().all(|state| f(*state));
        let any = |state: ItemState| items.contains(&state);
        if all(ItemState::is_final) {
            let completed = items.iter().filter(|s| **s == I::Completed).count();
            let cancelled = items.iter().filter(|s| **s == I::Cancelled).count();
            return if completed == items.len() {
                OrderState::Completed
            } else if cancelled == items.len() {
                OrderState::Cancelled
            } else if completed == 0 && cancelled == 0 {
                OrderState::Failed
            } else if completed == 0 && cancelling {
                // Some items cancelled, the others failed while being worked on.
                OrderState::Cancelled
            } else {
                OrderState::Partial
            };
        }
        if cancelling {
            OrderState::PendingCancellation
        } else if any(I::InProgress) || items.iter().any(|s| s.is_final()) {
            OrderState::InProgress
        } else if any(I::Held) {
            OrderState::Held
        } else if waiting || any(I::Pending) {
            OrderState::Pending
        } else {
            OrderState::Acknowledged
        }
    }
}

impl ItemState {
    /// Whether nothing more happens to the item.
    pub fn is_final(self) -> bool {
        matches!(self, ItemState::Completed | ItemState::Failed | ItemState::Cancelled)
    }

    /// The one transition function for items: `Ok` if an item may go from `self` to `to`
    /// (or stay), `InvalidTransition` naming both otherwise.
    pub fn transition(self, to: ItemState) -> Result<()> {
        use ItemState::*;
        let allowed = match (self, to) {
            (from, to) if from == to => true,
            (from, _) if from.is_final() => false,
            (Acknowledged | Pending | Held, Pending | Held | InProgress) => true,
            // A failed step's item is compensated, then failed; a step may fail at once.
            (Acknowledged | Pending | Held | InProgress, Completed | Failed) => true,
            // Cancelled before anything was done, or compensated after a cancellation.
            (Acknowledged | Pending | Held | InProgress, PendingCancellation | Cancelled) => true,
            // A cancellation that came too late (past an irreversible step) lets it end.
            (PendingCancellation, Cancelled | Completed | Failed) => true,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(refused("productOrderItem", self.as_str(), to.as_str()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ItemState as I, OrderState as O};

    #[test]
    fn final_states_are_final_and_names_read_back() {
        for from in O::ALL {
            assert_eq!(O::parse(from.as_str()), Some(*from));
            for to in O::ALL {
                if from.is_final() && from != to {
                    assert!(from.transition(*to).is_err(), "{from} → {to}");
                }
            }
        }
        for from in I::ALL {
            assert_eq!(I::parse(from.as_str()), Some(*from));
            for to in I::ALL {
                if from.is_final() && from != to {
                    assert!(from.transition(*to).is_err(), "{from} → {to}");
                }
            }
        }
    }

    #[test]
    fn the_order_transition_table() {
        let ok = [
            (O::Acknowledged, O::InProgress),
            (O::Acknowledged, O::Pending),
            (O::Pending, O::InProgress),
            (O::Held, O::InProgress),
            (O::InProgress, O::Held),
            (O::InProgress, O::Completed),
            (O::InProgress, O::Partial),
            (O::InProgress, O::AssessingCancellation),
            (O::AssessingCancellation, O::PendingCancellation),
            (O::AssessingCancellation, O::InProgress),
            (O::PendingCancellation, O::Cancelled),
        ];
        for (from, to) in ok {
            assert!(from.transition(to).is_ok(), "{from} → {to}");
        }
        let refused = [
            (O::Completed, O::Cancelled),
            (O::InProgress, O::Acknowledged),
            (O::InProgress, O::Cancelled),
            (O::Pending, O::PendingCancellation),
            (O::Cancelled, O::InProgress),
        ];
        for (from, to) in refused {
            let error = from.transition(to).expect_err("refused").to_string();
            assert!(error.contains(from.as_str()) && error.contains(to.as_str()), "{error}");
        }
    }

    #[test]
    fn the_order_state_follows_its_items() {
        let cases: &[(&[I], bool, bool, O)] = &[
            (&[I::Acknowledged], false, false, O::Acknowledged),
            (&[I::Pending], false, true, O::Pending),
            (&[I::Held, I::Acknowledged], false, false, O::Held),
            (&[I::InProgress, I::Held], false, false, O::InProgress),
            (&[I::Completed, I::Acknowledged], false, false, O::InProgress),
            (&[I::Completed, I::Completed], false, false, O::Completed),
            (&[I::Failed, I::Failed], false, false, O::Failed),
            (&[I::Completed, I::Failed], false, false, O::Partial),
            (&[I::PendingCancellation, I::Cancelled], true, false, O::PendingCancellation),
            (&[I::Cancelled, I::Cancelled], true, false, O::Cancelled),
            (&[I::Cancelled, I::Failed], true, false, O::Cancelled),
            (&[I::Cancelled, I::Completed], true, false, O::Partial),
            (&[I::Completed], true, false, O::Completed),
        ];
        for (items, cancelling, waiting, expected) in cases {
            assert_eq!(O::of_items(items, *cancelling, *waiting), *expected, "{items:?}");
        }
    }

    #[test]
    fn the_item_transition_table() {
        assert!(I::Acknowledged.transition(I::InProgress).is_ok());
        assert!(I::InProgress.transition(I::PendingCancellation).is_ok());
        assert!(I::PendingCancellation.transition(I::Cancelled).is_ok());
        assert!(I::PendingCancellation.transition(I::Completed).is_ok());
        assert!(I::InProgress.transition(I::Acknowledged).is_err());
        assert!(I::Completed.transition(I::Cancelled).is_err());
    }
}
