//! What became of an activation, as the provisioning workflow needs to know it: done (go
//! on), transient (try again later with the same request id), or permanent (compensate).
//! An outcome is an answer, not an error: a gateway refusing a subscriber is business as
//! usual.

/// The result of one [`Activator::activate`](crate::Activator::activate) call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivationOutcome {
    /// The network did it (now or on an earlier attempt with the same request id).
    Done {
        /// The gateway's reference for the command (its monitor or task id), for support
        /// and reconciliation; the request id when the gateway gave none.
        reference: String,
    },
    /// It may work later: a timeout, a refused or dropped connection, a 5xx, a 408 or 429,
    /// a gateway still working on it, a result not there yet. Retry with the same request
    /// id; the gateway de-duplicates.
    Transient {
        /// What went wrong, for the log and the order's history (never holds credentials).
        reason: String,
        /// How long the gateway asked to be left alone (`Retry-After`), in milliseconds.
        retry_after_ms: Option<u64>,
    },
    /// It will not work as asked: a 4xx other than 408 and 429, or a business refusal from
    /// the network. Retrying is pointless; the workflow compensates.
    Permanent {
        /// The gateway's error code (`http-404` when it gave none).
        code: String,
        /// The gateway's explanation.
        reason: String,
    },
}

impl ActivationOutcome {
    pub fn is_done(&self) -> bool {
        matches!(self, ActivationOutcome::Done { .. })
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, ActivationOutcome::Transient { .. })
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, ActivationOutcome::Permanent { .. })
    }

    pub(crate) fn transient(reason: impl Into<String>) -> ActivationOutcome {
        ActivationOutcome::Transient { reason: reason.into(), retry_after_ms: None }
    }
}
