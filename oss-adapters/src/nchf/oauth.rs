//! OAuth2 access tokens of the 5G service-based architecture (TS 33.501 §13.4.1, TS 29.510
//! §6.3.5.2.4 AccessTokenClaims): a JWS in compact form, signed by the NRF with RS256 or
//! ES256 (RFC 7518), sent as `Authorization: Bearer …` (RFC 6750).
//!
//! A token is accepted when
//! - its signature verifies with the configured NRF public key, under the one algorithm
//!   that key is for (RS256 for an RSA key of 2048 bits or more, ES256 for a P-256 key):
//!   the token's `alg` must name it, so `none` or an HMAC "signed" with the public key never
//!   pass; a `crit` header is refused (no extension is understood);
//! - `exp` is not past and `nbf`, if present, not ahead (each with `CLOCK_SKEW_SECONDS`);
//! - `aud` is the NF type `CHF`, or lists the configured NF instance id of this CHF;
//! - `iss` is the configured NRF NF instance id, when one is configured; `sub` is present;
//! - `scope` (space-separated) contains `nchf-convergedcharging` — otherwise 403
//!   `insufficient_scope`, every other failure is 401 `invalid_token`.
//!
//! The token is never logged; a refusal is logged at DEBUG with its reason only.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use serde::Deserialize;

use super::model::ProblemDetails;
use crate::AdapterError;

/// The scope of the Nchf_ConvergedCharging service (TS 32.291 OpenAPI securitySchemes).
pub const SCOPE: &str = "nchf-convergedcharging";
/// The NF type a token for any CHF names as its audience (TS 29.510 NFType).
pub const NF_TYPE: &str = "CHF";
/// Longest token read, in bytes (larger: refused unread).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock difference tolerated between the NRF and this CHF for `exp` and `nbf`.
pub const CLOCK_SKEW_SECONDS: u64 = 30;

/// The JWS algorithm of the NRF's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256 (signature as r ‖ s, 64 bytes).
    Es256,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
        }
    }
}

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header: 401 without an error code (RFC 6750 §3.1).
    Missing,
    /// 401 `invalid_token`, with the reason given as `error_description`.
    InvalidToken(&'static str),
    /// 403 `insufficient_scope`: a valid token without `nchf-convergedcharging`.
    InsufficientScope,
}

/// Checks NRF-issued access tokens (see the module documentation).
#[derive(Clone)]
pub struct AccessTokenVerifier {
    algorithm: Algorithm,
    /// The subjectPublicKey of the NRF key: PKCS#1 RSAPublicKey or an uncompressed point.
    public_key: Vec<u8>,
    issuer: Option<String>,
    nf_instance_id: Option<String>,
}

impl std::fmt::Debug for AccessTokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenVerifier")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("nf_instance_id", &self.nf_instance_id)
            .finish()
    }
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    /// Required, though any consumer may charge.
    #[serde(rename = "sub")]
    _subject: String,
    aud: Audience,
    scope: String,
    #[serde(rename = "exp")]
    expires_at: u64,
    #[serde(default, rename = "nbf")]
    not_before_at: Option<u64>,
}

impl AccessTokenVerifier {
    /// Reads the NRF public key from a PEM file (`-----BEGIN PUBLIC KEY-----`, as
    /// `openssl pkey -pubout` or `openssl x509 -pubkey -noout` write it).
    pub fn from_pem_file(
        path: &std::path::Path,
        issuer: Option<String>,
        nf_instance_id: Option<String>,
    ) -> Result<AccessTokenVerifier, AdapterError> {
        let spki = SubjectPublicKeyInfoDer::from_pem_file(path).map_err(|err| {
            let reason = match err {
                rustls_pki_types::pem::Error::NoItemsFound => "no PUBLIC KEY in the file".to_owned(),
                err => err.to_string(),
            };
            AdapterError::AccessTokenKey(format!("NRF public key {}: {reason}", path.display()))
        })?;
        AccessTokenVerifier::from_spki_der(&spki, issuer, nf_instance_id)
            .map_err(|err| AdapterError::AccessTokenKey(format!("NRF public key {}: {err}", path.display())))
    }

    /// From a DER SubjectPublicKeyInfo; the error says what is wrong with the key.
    pub fn from_spki_der(
        spki: &[u8],
        issuer: Option<String>,
        nf_instance_id: Option<String>,
    ) -> Result<AccessTokenVerifier, &'static str> {
        let (algorithm, public_key) = spki::read(spki)?;
        Ok(AccessTokenVerifier { algorithm, public_key: public_key.to_vec(), issuer, nf_instance_id })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Checks a token at `now_unix_seconds`.
    pub fn verify(&self, token: &str, now_unix_seconds: u64) -> Result<(), Refusal> {
        use Refusal::InvalidToken;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(InvalidToken("the token is too long"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidToken("not a compact JWS"));
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| InvalidToken("not base64url"));
        let jose: JoseHeader = serde_json::from_slice(&decode(header)?).map_err(|_| InvalidToken("bad JOSE header"))?;
        if jose.alg != self.algorithm.name() {
            return Err(InvalidToken("unexpected signature algorithm"));
        }
        if jose.crit.is_some() {
            return Err(InvalidToken("unsupported critical header"));
        }
        let signed = &token[..header.len() + 1 + payload.len()];
        let signature = decode(signature)?;
        let verified = match self.algorithm {
            Algorithm::Rs256 => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.public_key),
            Algorithm::Es256 => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public_key),
        }
        .verify(signed.as_bytes(), &signature);
        if verified.is_err() {
            return Err(InvalidToken("bad signature"));
        }
        let claims: Claims = serde_json::from_slice(&decode(payload)?).map_err(|_| InvalidToken("bad claims"))?;
        if claims.expires_at.saturating_add(CLOCK_SKEW_SECONDS) <= now_unix_seconds {
            return Err(InvalidToken("expired"));
        }
        if claims.not_before_at.is_some_and(|nbf| nbf > now_unix_seconds.saturating_add(CLOCK_SKEW_SECONDS)) {
            return Err(InvalidToken("not yet valid"));
        }
        let ours = |audience: &String| audience == NF_TYPE || self.nf_instance_id.as_ref() == Some(audience);
        let for_us = match &claims.aud {
            Audience::One(audience) => ours(audience),
            Audience::Many(audiences) => audiences.iter().any(ours),
        };
        if !for_us {
            return Err(InvalidToken("not for this CHF"));
        }
        if self.issuer.as_ref().is_some_and(|issuer| *issuer != claims.iss) {
            return Err(InvalidToken("unexpected issuer"));
        }
        if !claims.scope.split(' ').any(|scope| scope == SCOPE) {
            return Err(Refusal::InsufficientScope);
        }
        Ok(())
    }

    /// Reads the bearer token of a request and checks it.
    pub fn authorize(&self, headers: &HeaderMap, now_unix_seconds: u64) -> Result<(), Refusal> {
        let Some(value) = headers.get(header::AUTHORIZATION) else { return Err(Refusal::Missing) };
        let Some(token) = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()))
        else {
            return Err(Refusal::Missing);
        };
        self.verify(token, now_unix_seconds)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, challenge, detail) = match self {
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer scope=\"{SCOPE}\""),
                "an access token is required".to_owned(),
            ),
            Refusal::InvalidToken(reason) => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer error=\"invalid_token\", error_description=\"{reason}\""),
                format!("invalid access token: {reason}"),
            ),
            Refusal::InsufficientScope => (
                StatusCode::FORBIDDEN,
                format!("Bearer error=\"insufficient_scope\", scope=\"{SCOPE}\""),
                format!("the access token does not grant {SCOPE}"),
            ),
        };
        let body = ProblemDetails {
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            status: status.as_u16(),
            detail,
            // TS 29.500 defines no application error for these; the status and
            // WWW-Authenticate say it all.
            cause: "",
            invalid_params: Vec::new(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, [(header::CONTENT_TYPE, "application/problem+json")], json).into_response();
        if let Ok(challenge) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// Wraps `router` so every request (unknown paths included) needs an access token.
pub fn require_access_tokens(router: Router, verifier: Arc<AccessTokenVerifier>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(verifier, authorize))
}

async fn authorize(State(verifier): State<Arc<AccessTokenVerifier>>, request: Request, next: Next) -> Response {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match verifier.authorize(request.headers(), now) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::debug!(?refusal, "nchf request refused: access token");
            // Read the body (bounded) before answering: an HTTP/2 answer that ends while the
            // request is still being sent resets the stream, and some clients (curl 7.88)
            // then report a stream error instead of the 401.
            let _ = axum::body::to_bytes(request.into_body(), super::server::MAX_BODY_BYTES).await;
            refusal.into_response()
        }
    }
}

/// The few DER shapes of a SubjectPublicKeyInfo (RFC 5280 §4.1.2.7) this needs.
mod spki {
    use super::Algorithm;

    /// rsaEncryption (RFC 8017), parameters NULL.
    const RSA_ENCRYPTION: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    /// id-ecPublicKey with namedCurve prime256v1 (RFC 5480).
    pub(super) const EC_P256: &[u8] = &[
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
        0x07,
    ];

    /// One DER element of `tag`: its contents and what follows it.
    fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&found, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        if found != tag {
            return None;
        }
        let (length, rest) = match first {
            0..=0x7f => (usize::from(first), rest),
            0x81 | 0x82 => {
                let (bytes, rest) = rest.split_at_checked(usize::from(first & 0x7f))?;
                (bytes.iter().fold(0usize, |length, byte| (length << 8) | usize::from(*byte)), rest)
            }
            _ => return None,
        };
        rest.split_at_checked(length)
    }

    /// The algorithm a key is for and its subjectPublicKey.
    pub(super) fn read(der: &[u8]) -> Result<(Algorithm, &[u8]), &'static str> {
        let malformed = "not a DER SubjectPublicKeyInfo";
        let (info, rest) = element(der, 0x30).ok_or(malformed)?;
        let (algorithm, rest2) = element(info, 0x30).ok_or(malformed)?;
        let (bits, rest3) = element(rest2, 0x03).ok_or(malformed)?;
        if !rest.is_empty() || !rest3.is_empty() {
            return Err(malformed);
        }
        let Some((0, key)) = bits.split_first() else { return Err(malformed) };
        if algorithm == RSA_ENCRYPTION {
            Ok((Algorithm::Rs256, key))
        } else if algorithm == EC_P256 {
            if key.len() != 65 || key[0] != 0x04 {
                return Err("not an uncompressed P-256 point");
            }
            Ok((Algorithm::Es256, key))
        } else {
            Err("neither an RSA nor a P-256 key (RS256 or ES256)")
        }
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::{json, Value};

    use super::*;

    const NOW: u64 = 1_800_000_000;
    const INSTANCE: &str = "5a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d";
    const NRF: &str = "0f1e2d3c-4b5a-4987-8765-43210fedcba9";

    struct Nrf {
        key: EcdsaKeyPair,
        verifier: AccessTokenVerifier,
    }

    /// A fresh P-256 NRF key and a verifier for it, with an NF instance id and issuer.
    fn nrf() -> Nrf {
        let random = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random).expect("key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random).expect("key");
        // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING { 0, point } }
        let mut spki = vec![0x30, 0x59, 0x30, 0x13];
        spki.extend_from_slice(spki::EC_P256);
        spki.extend_from_slice(&[0x03, 0x42, 0x00]);
        spki.extend_from_slice(key.public_key().as_ref());
        let verifier =
            AccessTokenVerifier::from_spki_der(&spki, Some(NRF.into()), Some(INSTANCE.into())).expect("verifier");
        Nrf { key, verifier }
    }

    fn sign(key: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let signed =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = key.sign(&SystemRandom::new(), signed.as_bytes()).expect("signature");
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    fn claims() -> Value {
        json!({"iss": NRF, "sub": "1b9e6c52-2a3f-4f8e-9c1d-0a8b7e6f5d4c", "aud": "CHF",
               "scope": "nchf-convergedcharging", "exp": NOW + 600})
    }

    /// Signs `claims` with `header` (after `edit` changes the finished token) and checks it.
    fn check(header: Value, claims: Value, edit: impl Fn(String) -> String, expected: Result<(), Refusal>) {
        let nrf = nrf();
        let token = edit(sign(&nrf.key, &header, &claims));
        assert_eq!(nrf.verifier.verify(&token, NOW), expected, "{header} {claims}");
    }

    fn with(mut value: Value, field: &str, replacement: Value) -> Value {
        if replacement.is_null() {
            value.as_object_mut().expect("object").remove(field);
        } else {
            value[field] = replacement;
        }
        value
    }

    #[test]
    fn claims_are_checked_as_ts_29_510_defines_them() {
        let es256 = json!({"alg": "ES256", "typ": "JWT"});
        let same = |token: String| token;
        let invalid = |reason| Err(Refusal::InvalidToken(reason));
        let cases: Vec<(Value, Result<(), Refusal>)> = vec![
            (claims(), Ok(())),
            (with(claims(), "aud", json!([INSTANCE])), Ok(())),
            (with(claims(), "aud", json!(["another-chf", INSTANCE])), Ok(())),
            (with(claims(), "aud", json!("SMF")), invalid("not for this CHF")),
            (with(claims(), "aud", json!(["another-chf"])), invalid("not for this CHF")),
            (with(claims(), "aud", Value::Null), invalid("bad claims")),
            (with(claims(), "scope", json!("nnrf-disc nchf-convergedcharging")), Ok(())),
            (with(claims(), "scope", json!("nchf-spendinglimitcontrol")), Err(Refusal::InsufficientScope)),
            (with(claims(), "scope", json!("nchf-convergedcharging-x")), Err(Refusal::InsufficientScope)),
            (with(claims(), "exp", json!(NOW - CLOCK_SKEW_SECONDS)), invalid("expired")),
            (with(claims(), "exp", json!(NOW - CLOCK_SKEW_SECONDS + 1)), Ok(())),
            (with(claims(), "exp", json!(1.8e9)), invalid("bad claims")),
            (with(claims(), "exp", Value::Null), invalid("bad claims")),
            (with(claims(), "nbf", json!(NOW + CLOCK_SKEW_SECONDS + 1)), invalid("not yet valid")),
            (with(claims(), "nbf", json!(NOW)), Ok(())),
            (with(claims(), "iss", json!("some-other-nrf")), invalid("unexpected issuer")),
            (with(claims(), "sub", Value::Null), invalid("bad claims")),
        ];
        for (claims, expected) in cases {
            check(es256.clone(), claims, same, expected);
        }
    }

    #[test]
    fn only_the_keys_algorithm_and_its_signature_pass() {
        let invalid = |reason| Err(Refusal::InvalidToken(reason));
        for alg in ["none", "HS256", "RS256", "ES384"] {
            check(json!({"alg": alg}), claims(), |t| t, invalid("unexpected signature algorithm"));
        }
        check(json!({"alg": "ES256", "crit": ["exp"]}), claims(), |t| t, invalid("unsupported critical header"));
        // Another claim set under the same signature.
        let other = URL_SAFE_NO_PAD.encode(with(claims(), "scope", json!("nchf-convergedcharging x")).to_string());
        let swap = |token: String| {
            let parts: Vec<&str> = token.split('.').collect();
            format!("{}.{other}.{}", parts[0], parts[2])
        };
        check(json!({"alg": "ES256"}), claims(), swap, invalid("bad signature"));
        // Signed by another NRF key.
        let stranger = nrf();
        let forged = sign(&stranger.key, &json!({"alg": "ES256"}), &claims());
        assert_eq!(nrf().verifier.verify(&forged, NOW), invalid("bad signature"));
        check(json!({"alg": "ES256"}), claims(), |t| format!("{t}="), invalid("not base64url"));
        check(json!({"alg": "ES256"}), claims(), |t| format!("{t}.x"), invalid("not a compact JWS"));
        check(json!({"alg": "ES256"}), claims(), |_| "x".repeat(MAX_TOKEN_BYTES + 1), invalid("the token is too long"));
    }

    #[test]
    fn the_bearer_header_is_read_case_insensitively_and_required() {
        let nrf = nrf();
        let token = sign(&nrf.key, &json!({"alg": "ES256"}), &claims());
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).expect("header"));
            headers
        };
        assert_eq!(nrf.verifier.authorize(&headers(&format!("Bearer {token}")), NOW), Ok(()));
        assert_eq!(nrf.verifier.authorize(&headers(&format!("bearer {token}")), NOW), Ok(()));
        assert_eq!(nrf.verifier.authorize(&headers(&format!("Basic {token}")), NOW), Err(Refusal::Missing));
        assert_eq!(nrf.verifier.authorize(&HeaderMap::new(), NOW), Err(Refusal::Missing));
    }

    #[test]
    fn keys_other_than_rsa_or_p256_are_refused() {
        assert_eq!(spki::read(&[0x30, 0x00]).err(), Some("not a DER SubjectPublicKeyInfo"));
        // Ed25519 (1.3.101.112).
        let mut ed25519 = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        ed25519.extend_from_slice(&[7; 32]);
        assert_eq!(spki::read(&ed25519).err(), Some("neither an RSA nor a P-256 key (RS256 or ES256)"));
        assert_eq!(nrf().verifier.algorithm(), Algorithm::Es256);
    }
}
