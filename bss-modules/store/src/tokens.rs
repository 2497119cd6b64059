//! API tokens. A token is 32 random bytes (ring's system generator) shown once, as
//! `tg_` and 64 hex digits, when created; the store keeps only its SHA-256, a name, a
//! role, for a partner the root account of the hierarchy it may act on, an expiry and a
//! revocation time. A presented token is hashed and looked up by hash: what the database
//! holds cannot be used as a token, and the lookup's timing depends on a hash the caller
//! cannot steer, not on the secret. [`TokenSecret`]'s `Debug` prints no secret, so a token
//! cannot leak through a log line by accident.

use std::fmt;

use jiff::Timestamp;
use ring::rand::{SecureRandom, SystemRandom};

use crate::codec::to_ms;
use crate::error::{Result, StoreError};
use crate::hash::{hex, sha256_hex};
use crate::sql::{args, Row};
use crate::{Store, Tx};

/// What a token may do; the API maps each route to the roles allowed on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Care,
    Finance,
    ReadOnly,
    /// A partner or corporate administrator, limited to one account hierarchy.
    Partner,
    /// Writes the product catalogue, and nothing else.
    ProductManager,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] =
        [Role::Admin, Role::Care, Role::Finance, Role::ReadOnly, Role::Partner, Role::ProductManager];

    /// The name stored and shown: `admin`, `care`, `finance`, `read_only`, `partner`,
    /// `product_manager`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Care => "care",
            Role::Finance => "finance",
            Role::ReadOnly => "read_only",
            Role::Partner => "partner",
            Role::ProductManager => "product_manager",
        }
    }

    /// The role named `name` (as [`Role::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The secret of a new token, to hand to its holder once. `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

impl TokenSecret {
    /// The token, for the one place that must show it (the creating command's output).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

impl fmt::Display for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The prefix every token starts with (so a leaked one is recognisable by scanners).
pub const TOKEN_PREFIX: &str = "tg_";
const TOKEN_RANDOM_BYTES: usize = 32;
const TOKEN_LENGTH: usize = TOKEN_PREFIX.len() + 2 * TOKEN_RANDOM_BYTES;

/// A token to create.
#[derive(Debug, Clone, Copy)]
pub struct NewToken<'a> {
    /// What it is for (`billing-export`, `alice@care`): shown in lists and audit records.
    pub name: &'a str,
    pub role: Role,
    /// For [`Role::Partner`], and only for it: the root account of its hierarchy.
    pub scope_account_id: Option<&'a str>,
    pub expires_at: Option<Timestamp>,
}

/// A token as stored (without its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub scope_account_id: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// What a presented token turned out to be. Only `Valid` authenticates; the others are
/// all 401 to the caller, told apart for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    Valid(ApiToken),
    Expired(ApiToken),
    Revoked(ApiToken),
    Unknown,
}

const COLUMNS: &str = "id, name, role, scope_account_id, created_at_ms, expires_at_ms, revoked_at_ms";

fn token(row: &Row) -> Result<ApiToken> {
    let role = row.text("role")?;
    Ok(ApiToken {
        id: row.int("id")?,
        name: row.text("name")?,
        role: Role::parse(&role).ok_or_else(|| row.corrupt("role", format!("unknown role {role:?}")))?,
        scope_account_id: row.opt_text("scope_account_id")?,
        created_at: row.timestamp("created_at_ms")?,
        expires_at: row.opt_timestamp("expires_at_ms")?,
        revoked_at: row.opt_timestamp("revoked_at_ms")?,
    })
}

impl Tx {
    /// Creates a token; the secret is returned here and never again.
    pub async fn create_token(&mut self, new: NewToken<'_>, now: Timestamp) -> Result<(TokenSecret, ApiToken)> {
        if new.name.trim().is_empty() {
            return Err(StoreError::Invalid { field: "name", reason: "empty".into() });
        }
        match (new.role, new.scope_account_id) {
            (Role::Partner, None) => {
                return Err(StoreError::Invalid {
                    field: "scope_account_id",
                    reason: "a partner token needs the root account of its hierarchy".into(),
                })
            }
            (Role::Partner, Some("")) => {
                return Err(StoreError::Invalid { field: "scope_account_id", reason: "empty".into() })
            }
            (role, Some(_)) if role != Role::Partner => {
                return Err(StoreError::Invalid {
                    field: "scope_account_id",
                    reason: format!("only a partner token has a scope, not a {role} token"),
                })
            }
            _ => {}
        }
        let mut random = [0u8; TOKEN_RANDOM_BYTES];
        SystemRandom::new().fill(&mut random).map_err(|_| StoreError::Random)?;
        let secret = TokenSecret(format!("{TOKEN_PREFIX}{}", hex(&random)));
        let row = self
            .fetch_one(
                "token.create",
                &format!(
                    "INSERT INTO api_tokens (token_hash, name, role, scope_account_id, created_at_ms, expires_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
                ),
                args![
                    sha256_hex(secret.expose().as_bytes()),
                    new.name,
                    new.role.as_str(),
                    new.scope_account_id,
                    to_ms(now),
                    new.expires_at.map(to_ms)
                ],
            )
            .await?;
        Ok((secret, token(&row)?))
    }

    /// Revokes a token from `now` (a token already revoked keeps its first revocation
    /// time); returns it as it now stands.
    pub async fn revoke_token(&mut self, id: i64, now: Timestamp) -> Result<ApiToken> {
        let row = self
            .fetch_optional(
                "token.revoke",
                &format!(
                    "UPDATE api_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, $2) WHERE id = $1 RETURNING {COLUMNS}"
                ),
                args![id, to_ms(now)],
            )
            .await?;
        match row {
            Some(row) => token(&row),
            None => Err(StoreError::NotFound { entity: "API token", id: id.to_string() }),
        }
    }
}

impl Store {
    /// What the token a client presented is, at `now`.
    pub async fn check_token(&self, presented: &str, now: Timestamp) -> Result<TokenCheck> {
        if presented.len() != TOKEN_LENGTH || !presented.starts_with(TOKEN_PREFIX) {
            return Ok(TokenCheck::Unknown);
        }
        let mut tx = self.read().await?;
        let row = tx
            .fetch_optional(
                "token.check",
                &format!("SELECT {COLUMNS} FROM api_tokens WHERE token_hash = $1"),
                args![sha256_hex(presented.as_bytes())],
            )
            .await?;
        let Some(row) = row else { return Ok(TokenCheck::Unknown) };
        let token = token(&row)?;
        Ok(if token.revoked_at.is_some_and(|revoked_at| revoked_at <= now) {
            TokenCheck::Revoked(token)
        } else if token.expires_at.is_some_and(|expires_at| expires_at <= now) {
            TokenCheck::Expired(token)
        } else {
            TokenCheck::Valid(token)
        })
    }

    /// Every token, oldest first (there are few).
    pub async fn tokens(&self) -> Result<Vec<ApiToken>> {
        let mut tx = self.read().await?;
        let rows = tx.fetch_all("token.list", &format!("SELECT {COLUMNS} FROM api_tokens ORDER BY id"), vec![]).await?;
        rows.iter().map(token).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{Role, TokenSecret};

    #[test]
    fn a_secret_never_shows_in_debug_or_display() {
        let secret = TokenSecret("tg_0123456789abcdef".into());
        assert_eq!(format!("{secret:?}"), "TokenSecret(<redacted>)");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert!(!format!("{:?}", Some(&secret)).contains("0123"));
    }

    #[test]
    fn roles_read_back_by_name() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
