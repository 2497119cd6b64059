//! The audit trail, read-only, for administrators: `GET /tmf-api/audit/v1/auditRecord`
//! (oldest first, `offset`/`limit` paginated with `X-Total-Count`, filtered by `entityType`
//! and `entityId` together) and `GET /tmf-api/audit/v1/chainVerification`, which walks the
//! hash chain and says whether it holds, and where it breaks if not.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tollgate_store::{AuditEntry, ChainCheck};

use crate::error::ApiError;
use crate::tmf::{page_headers, select, ListQuery};
use crate::AppState;

fn record(entry: AuditEntry) -> Value {
    json!({
        "id": entry.seq.to_string(),
        "href": format!("/tmf-api/audit/v1/auditRecord/{}", entry.seq),
        "@type": "AuditRecord",
        "recordedAt": entry.at.to_string(),
        "actor": entry.actor,
        "action": entry.action,
        "entityType": entry.entity_type,
        "entityId": entry.entity_id,
        "before": entry.before,
        "after": entry.after,
        "prevHash": entry.prev_hash,
        "hash": entry.hash,
    })
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(query)?;
    let (mut entity_type, mut entity_id) = (None, None);
    for (name, value) in &query.filters {
        match name.as_str() {
            "entityType" => entity_type = Some(value.as_str()),
            "entityId" => entity_id = Some(value.as_str()),
            _ => {
                return Err(ApiError::bad_request(
                    name.clone(),
                    format!("audit records cannot be filtered on {name:?}"),
                ))
            }
        }
    }
    let entity = match (entity_type, entity_id) {
        (Some(kind), Some(id)) => Some((kind, id)),
        (None, None) => None,
        (Some(_), None) => return Err(ApiError::bad_request("entityId", "entityType and entityId go together")),
        (None, Some(_)) => return Err(ApiError::bad_request("entityType", "entityType and entityId go together")),
    };
    let after_seq = i64::try_from(query.offset).map_err(|_| ApiError::bad_request("offset", "too large"))?;
    let head = state.store.audit_head().await?;
    let entries = if entity.is_some() {
        // Sequence numbers of one entity are not contiguous: skip `offset` of its records.
        let mut entries = state.store.audit_entries(entity, 0, tollgate_store::AUDIT_PAGE_MAX).await?;
        let skip = usize::try_from(query.offset).unwrap_or(usize::MAX).min(entries.len());
        entries.drain(..skip);
        entries.truncate(query.limit as usize);
        entries
    } else {
        state.store.audit_entries(None, after_seq, query.limit).await?
    };
    let total = if entity.is_some() { i64::try_from(entries.len()).unwrap_or(i64::MAX) } else { head.seq };
    let count = entries.len();
    let records: Vec<Value> = entries.into_iter().map(|e| select(record(e), query.fields.as_deref())).collect();
    Ok((page_headers(total, count), Json(Value::Array(records))).into_response())
}

pub(crate) async fn verify(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let body = match state.store.verify_audit_chain().await? {
        ChainCheck::Intact { entries, head } => {
            json!({"@type": "AuditChainVerification", "intact": true, "entries": entries, "headSeq": head.seq, "headHash": head.hash})
        }
        ChainCheck::Broken { seq, problem } => {
            json!({"@type": "AuditChainVerification", "intact": false, "brokenAt": seq, "problem": problem})
        }
    };
    Ok(Json(body).into_response())
}
