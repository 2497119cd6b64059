//! The HTTP/JSON adapter: each activation is one `POST` of the command document to the
//! gateway's URL, with the request id in `X-Request-Id` and `Idempotency-Key`, credentials
//! in `Authorization`, each attempt bounded by `timeout_ms`, transient failures retried
//! with exponential backoff and jitter up to `max_attempts`, and connections kept for
//! reuse (hyper-util's pooled client over [`connect::GatewayConnector`]). The answer is
//! mapped by [`answer::classify`]; the wire contract is in README.md.

pub mod answer;
mod connect;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use zeroize::Zeroizing;

use self::answer::{classify, is_refusal, retry_after_ms, MAX_ANSWER_BYTES};
use self::connect::GatewayConnector;
use crate::{
    wire, ActivationError, ActivationFuture, ActivationOutcome, ActivationRequest, Activator, GatewayAuth,
    GatewayHealth,
};
use crate::{HttpConfig, RequestId};

/// The header carrying the request id (also sent as `Idempotency-Key`).
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The idempotency header of the IETF HTTPAPI draft, with the same value.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Activates through a provisioning gateway over HTTP/JSON. Cheap to share (`Arc`) across
/// workflow workers; one connection pool serves them all.
pub struct HttpActivator {
    client: Client<GatewayConnector, Full<Bytes>>,
    uri: Uri,
    /// Marked sensitive: hyper's `Debug` does not print it.
    authorization: Option<HeaderValue>,
    scheme: &'static str,
    timeout_ms: u64,
    max_attempts: u32,
    backoff_initial_ms: u64,
    backoff_max_ms: u64,
    /// The gateway's `host:port`, and what the last call that ended saw of it.
    gateway: String,
    reach: Mutex<Reach>,
}

/// How a gateway's answers are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answers {
    /// A command's TMF664 `Monitor` ([`answer::classify`]).
    Monitor,
    /// A message taken or refused ([`answer::classify_submission`]).
    Submission,
}

/// Whether the last call that ended reached the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reach {
    Unknown,
    Reached,
    Unreachable(String),
}

impl fmt::Debug for HttpActivator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpActivator")
            .field("url", &self.uri)
            .field("auth", &self.scheme)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

fn authorization(auth: &GatewayAuth) -> Result<HeaderValue, ActivationError> {
    let value = match auth {
        GatewayAuth::Basic { username, password } => {
            let pair = Zeroizing::new(format!("{username}:{}", password.expose()));
            Zeroizing::new(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())))
        }
        GatewayAuth::Bearer { token } => Zeroizing::new(format!("Bearer {}", token.expose())),
    };
    let mut header = HeaderValue::from_str(&value)
        .map_err(|_| ActivationError::config("http.auth", "not usable in an Authorization header"))?;
    header.set_sensitive(true);
    Ok(header)
}

impl HttpActivator {
    /// Checks the configuration and reads the TLS files; no connection is opened yet.
    pub fn new(config: &HttpConfig) -> Result<HttpActivator, ActivationError> {
        config.validate()?;
        let uri: Uri = config.url.parse().map_err(|_| ActivationError::config("http.url", "not a URL"))?;
        let connector = GatewayConnector::new(config, uri.scheme_str() == Some("https"))?;
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.max_idle_connections)
            .pool_idle_timeout(Duration::from_millis(config.idle_timeout_ms))
            .pool_timer(TokioTimer::new())
            .build(connector);
        let gateway = uri.authority().map_or_else(String::new, |authority| authority.as_str().to_owned());
        Ok(HttpActivator {
            client,
            uri,
            gateway,
            authorization: config.auth.as_ref().map(authorization).transpose()?,
            scheme: match config.auth {
                Some(GatewayAuth::Basic { .. }) => "basic",
                Some(GatewayAuth::Bearer { .. }) => "bearer",
                None => "none",
            },
            timeout_ms: config.timeout_ms,
            max_attempts: config.max_attempts,
            backoff_initial_ms: config.backoff_initial_ms,
            backoff_max_ms: config.backoff_max_ms,
            reach: Mutex::new(Reach::Unknown),
        })
    }

    fn reached(&self, reach: Reach) {
        *self.reach.lock().unwrap_or_else(PoisonError::into_inner) = reach;
    }

    async fn run(&self, request: &ActivationRequest) -> ActivationOutcome {
        // Serialized once: every attempt sends the same bytes.
        let body = Bytes::from(wire::command_json(request));
        self.exchange(request.id(), body, request.operation().name(), Answers::Monitor).await
    }

    /// POSTs `body` (a JSON document) under request id `id` with the same retries,
    /// timeouts and credentials as an activation, and answers it as a submission: any 2xx
    /// is `Done` (accepted), a refusal `Permanent`, the rest `Transient`
    /// ([`answer::classify_submission`]). For gateways that take a message rather than
    /// run a command: an SMS gateway ([`crate::SmsGateway`]).
    pub async fn submit(&self, id: &RequestId, body: Bytes, what: &'static str) -> ActivationOutcome {
        self.exchange(id, body, what, Answers::Submission).await
    }

    async fn exchange(&self, id: &RequestId, body: Bytes, what: &'static str, answers: Answers) -> ActivationOutcome {
        let mut attempt = 1;
        loop {
            let (outcome, answered) = self.attempt(id, body.clone(), answers).await;
            tracing::debug!(request_id = %id, operation = what, attempt, ?outcome, "gateway attempt");
            if answered {
                self.reached(Reach::Reached);
            }
            let ActivationOutcome::Transient { reason, retry_after_ms } = outcome else { return outcome };
            let delay_ms = retry_after_ms
                .unwrap_or_else(|| backoff_ms(attempt, self.backoff_initial_ms, self.backoff_max_ms, random_u64()));
            if attempt >= self.max_attempts || delay_ms > self.backoff_max_ms {
                let reason = format!("{reason} (attempt {attempt} of {})", self.max_attempts);
                if !answered {
                    self.reached(Reach::Unreachable(reason.clone()));
                }
                return ActivationOutcome::Transient { reason, retry_after_ms };
            }
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            attempt += 1;
        }
    }

    /// One exchange, bounded by `timeout_ms` from connecting to the answer's last byte,
    /// and whether the gateway answered it (an HTTP status came back).
    async fn attempt(&self, id: &RequestId, body: Bytes, answers: Answers) -> (ActivationOutcome, bool) {
        let classify = |status, retry_after_ms, body: &[u8]| match answers {
            Answers::Monitor => classify(status, retry_after_ms, body, id),
            Answers::Submission => answer::classify_submission(status, retry_after_ms, body, id),
        };
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("tollgate-activation/", env!("CARGO_PKG_VERSION")))
            .header(REQUEST_ID_HEADER, id.as_str())
            .header(IDEMPOTENCY_KEY_HEADER, id.as_str());
        if let Some(authorization) = &self.authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        let request = match builder.body(Full::new(body)) {
            Ok(request) => request,
            // The id is checked at construction to be header-safe; kept as an answer anyway.
            Err(err) => return (ActivationOutcome::transient(format!("request not built: {err}")), true),
        };
        let exchange = async {
            let response = self.client.request(request).await.map_err(|err| describe(&err))?;
            let (parts, body) = response.into_parts();
            match Limited::new(body, MAX_ANSWER_BYTES).collect().await {
                Ok(body) => Ok(classify(parts.status, retry_after_ms(&parts.headers), &body.to_bytes())),
                // A refusal stays one whatever its body; anything else may have run.
                Err(err) if err.is::<http_body_util::LengthLimitError>() && is_refusal(parts.status) => {
                    Ok(classify(parts.status, None, b""))
                }
                // It answered (the gateway is reachable), too much.
                Err(err) if err.is::<http_body_util::LengthLimitError>() => Ok(ActivationOutcome::transient(format!(
                    "HTTP {}: answer longer than {MAX_ANSWER_BYTES} bytes",
                    parts.status.as_u16()
                ))),
                Err(err) => Err(describe(err.as_ref())),
            }
        };
        match tokio::time::timeout(Duration::from_millis(self.timeout_ms), exchange).await {
            Err(_) => (
                ActivationOutcome::transient(format!("no answer within {} ms (http.timeout_ms)", self.timeout_ms)),
                false,
            ),
            Ok(Err(reason)) => (ActivationOutcome::transient(reason), false),
            Ok(Ok(outcome)) => (outcome, true),
        }
    }
}

impl Activator for HttpActivator {
    fn activate<'a>(&'a self, request: &'a ActivationRequest) -> ActivationFuture<'a> {
        Box::pin(self.run(request))
    }

    /// Unreachable after a call whose every attempt failed without an answer (refused,
    /// cut off, timed out); reached again by the next call that gets any answer.
    fn health(&self) -> Option<GatewayHealth> {
        let unreachable = match &*self.reach.lock().unwrap_or_else(PoisonError::into_inner) {
            Reach::Unknown => return None,
            Reach::Reached => None,
            Reach::Unreachable(reason) => Some(reason.clone()),
        };
        Some(GatewayHealth { name: self.gateway.clone(), unreachable })
    }
}

/// An error and its causes, joined: hyper's own message ("client error (Connect)") says
/// little without them. Transport errors carry no header or body, so no credentials.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    answer::bounded(&text)
}

/// A random 64-bit value for jitter (the standard library's per-process random hash keys;
/// nothing here needs to be unpredictable to an attacker).
fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    hasher.finish()
}

/// The delay after failed attempt `attempt` (1-based): the ceiling doubles from `initial_ms`
/// up to `max_ms`, and the delay is drawn from its upper half with `random`, so retries of
/// many activations that failed together spread out ("equal jitter").
pub(crate) fn backoff_ms(attempt: u32, initial_ms: u64, max_ms: u64, random: u64) -> u64 {
    let doublings = attempt.saturating_sub(1).min(32);
    let ceiling = initial_ms.saturating_mul(1u64 << doublings).min(max_ms);
    let half = ceiling / 2;
    half + random % (ceiling - half + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_stays_in_the_upper_half() {
        let bounds = |attempt| (backoff_ms(attempt, 100, 1000, 0), backoff_ms(attempt, 100, 1000, u64::MAX - 1));
        assert_eq!(backoff_ms(1, 100, 1000, 0), 50);
        assert_eq!(backoff_ms(1, 100, 1000, 50), 100);
        assert_eq!(backoff_ms(1, 100, 1000, 51), 50);
        assert_eq!(backoff_ms(3, 100, 1000, 0), 200);
        assert_eq!(backoff_ms(3, 100, 1000, 200), 400);
        assert_eq!(backoff_ms(4, 100, 1000, 0), 400);
        assert_eq!(backoff_ms(9, 100, 1000, 0), 500);
        assert_eq!(backoff_ms(9, 100, 1000, 500), 1000);
        assert_eq!(backoff_ms(u32::MAX, u64::MAX, u64::MAX, 7), u64::MAX / 2 + 7);
        for attempt in 1..40 {
            let (low, high) = bounds(attempt);
            assert!(low <= high && high <= 1000, "attempt {attempt}: {low}..{high}");
        }
    }

    #[test]
    fn jitter_draws_differ() {
        let draws: std::collections::HashSet<u64> = (0..16).map(|_| random_u64()).collect();
        assert!(draws.len() > 1, "{draws:?}");
    }

    #[test]
    fn the_authorization_header_is_sensitive_and_well_formed() {
        let basic = GatewayAuth::Basic { username: "tollgate".into(), password: crate::Secret::new("pa55") };
        let header = authorization(&basic).expect("header");
        assert!(header.is_sensitive());
        assert_eq!(header.to_str().ok(), Some("Basic dG9sbGdhdGU6cGE1NQ=="));
        assert!(!format!("{header:?}").contains("dG9s"));
    }
}
