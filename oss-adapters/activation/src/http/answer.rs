//! The gateway's answer mapped to an [`ActivationOutcome`]: a pure function of the status,
//! the `Retry-After` header and the body (a TMF664 `Monitor`-shaped or TMF630
//! `Error`-shaped JSON object), so the whole table in README.md ("Answers") is tested
//! without a socket. Anything unexpected from a 2xx is transient, never done and never
//! permanent: the command may or may not have run, and a retry with the same request id
//! finds out.

use hyper::header::{HeaderMap, RETRY_AFTER};
use hyper::StatusCode;
use serde::Deserialize;

use crate::{ActivationOutcome, RequestId};

/// Largest answer body read, in bytes; a longer one is cut off and the attempt transient.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest reference, code or reason kept from an answer, in bytes (longer ones are cut at
/// a character boundary).
pub const MAX_ANSWER_TEXT_BYTES: usize = 512;
/// Longest `Retry-After` honoured, in seconds (a day); longer values are cut to it.
pub const MAX_RETRY_AFTER_SECONDS: u64 = 86_400;

/// The fields of an answer body this adapter reads; others are ignored.
#[derive(Debug, Default, Deserialize)]
struct Answer {
    /// TMF664 `Monitor.id`: the gateway's reference.
    id: Option<String>,
    /// TMF664 `Monitor.state`: `Completed`, `InProgress` or `InError` (any ASCII case).
    state: Option<String>,
    /// TMF630 `Error.code`, or the business refusal's code.
    code: Option<String>,
    /// TMF630 `Error.reason`.
    reason: Option<String>,
    /// TMF630 `Error.message`.
    message: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Completed,
    InProgress,
    InError,
    Other,
}

impl Answer {
    fn state(&self) -> Option<State> {
        said(&self.state).map(|state| match state.to_ascii_lowercase().as_str() {
            "completed" => State::Completed,
            "inprogress" => State::InProgress,
            "inerror" => State::InError,
            _ => State::Other,
        })
    }

    /// No field says anything: each is absent, null or blank.
    fn is_empty(&self) -> bool {
        let Answer { id, state, code, reason, message } = self;
        [id, state, code, reason, message].into_iter().all(|field| said(field).is_none())
    }

    fn explanation(&self) -> Option<String> {
        match (said(&self.reason), said(&self.message)) {
            (Some(reason), Some(message)) => Some(format!("{reason}: {message}")),
            (Some(text), None) | (None, Some(text)) => Some(text.to_owned()),
            (None, None) => None,
        }
    }
}

/// A field's text unless it is absent or blank: a gateway's `"reason": ""` says nothing.
fn said(field: &Option<String>) -> Option<&str> {
    field.as_deref().filter(|text| !text.trim().is_empty())
}

/// `text` without control characters, at most [`MAX_ANSWER_TEXT_BYTES`]: an answer's
/// strings end up in logs and order histories.
pub(crate) fn bounded(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_ANSWER_TEXT_BYTES));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_ANSWER_TEXT_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

/// `Retry-After` in delta-seconds (RFC 9110 §10.2.3), in milliseconds. The HTTP-date form
/// is not read (the backoff applies instead).
pub(crate) fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(seconds.min(MAX_RETRY_AFTER_SECONDS) * 1000)
}

/// The outcome of one attempt that got an answer.
pub(crate) fn classify(
    status: StatusCode,
    retry_after_ms: Option<u64>,
    body: &[u8],
    request_id: &RequestId,
) -> ActivationOutcome {
    let answer = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Answer::default())
    } else {
        serde_json::from_slice::<Answer>(body).map_err(|err| bounded(&err.to_string()))
    };
    let transient = |reason: String| ActivationOutcome::Transient { reason, retry_after_ms };
    let reference = |answer: &Answer| bounded(answer.id.as_deref().unwrap_or(request_id.as_str()));
    let http = format!("HTTP {}", status.as_u16());
    let answer = match answer {
        Ok(answer) => answer,
        // A 4xx refuses whatever its body says; anything else unreadable may have run.
        Err(_) if is_refusal(status) => Answer::default(),
        Err(err) => return transient(format!("{http} with an unreadable answer: {err}")),
    };
    let state = answer.state();
    let in_progress = |answer: &Answer| format!("{http}: in progress at the gateway (reference {})", reference(answer));
    let permanent = |answer: &Answer| ActivationOutcome::Permanent {
        code: bounded(said(&answer.code).unwrap_or(&format!("http-{}", status.as_u16()))),
        reason: bounded(&answer.explanation().unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned())),
    };
    if status == StatusCode::ACCEPTED {
        return transient(in_progress(&answer));
    }
    if status.is_success() {
        return match state {
            Some(State::Completed) => ActivationOutcome::Done { reference: reference(&answer) },
            Some(State::InProgress) => transient(in_progress(&answer)),
            Some(State::InError) => permanent(&answer),
            Some(State::Other) => {
                transient(format!("{http} with the unknown state {:?}", bounded(&answer.state.unwrap_or_default())))
            }
            None => transient(format!("{http} without a state")),
        };
    }
    if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS {
        return transient(format!(
            "{http}{}",
            answer.explanation().map(|e| format!(": {}", bounded(&e))).unwrap_or_default()
        ));
    }
    if status == StatusCode::CONFLICT {
        // The idempotency-key convention: 409 while the same key is still being worked on;
        // a gateway that finds the command already done says Completed.
        match state {
            Some(State::Completed) => return ActivationOutcome::Done { reference: reference(&answer) },
            Some(State::InProgress) => return transient(in_progress(&answer)),
            None if answer.is_empty() => return transient(in_progress(&answer)),
            _ => return permanent(&answer),
        }
    }
    if is_refusal(status) {
        return permanent(&answer);
    }
    let explanation = answer.explanation().map(|e| format!(": {}", bounded(&e))).unwrap_or_default();
    if status.is_redirection() {
        return transient(format!("{http}: redirects are not followed; check http.url{explanation}"));
    }
    transient(format!("{http}{explanation}"))
}

/// The outcome of one attempt to hand a gateway a message (an SMS): any 2xx took it
/// (`Done`, the reference its `id` or the request id); a refusal (a 4xx but 408 and 429)
/// is `Permanent` with the body's `code` and `reason`/`message` if it has them; anything
/// else is `Transient` (a retry with the same request id is de-duplicated by the gateway).
pub(crate) fn classify_submission(
    status: StatusCode,
    retry_after_ms: Option<u64>,
    body: &[u8],
    request_id: &RequestId,
) -> ActivationOutcome {
    let answer = serde_json::from_slice::<Answer>(body).unwrap_or_default();
    if status.is_success() {
        let reference = said(&answer.id).unwrap_or(request_id.as_str());
        return ActivationOutcome::Done { reference: bounded(reference) };
    }
    if is_refusal(status) {
        return ActivationOutcome::Permanent {
            code: bounded(said(&answer.code).unwrap_or(&format!("http-{}", status.as_u16()))),
            reason: bounded(
                &answer.explanation().unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned()),
            ),
        };
    }
    let explanation = answer.explanation().map(|e| format!(": {}", bounded(&e))).unwrap_or_default();
    ActivationOutcome::Transient { reason: format!("HTTP {}{explanation}", status.as_u16()), retry_after_ms }
}

/// A 4xx that is not 408 or 429: the request will not succeed as it is.
pub(crate) fn is_refusal(status: StatusCode) -> bool {
    status.is_client_error() && status != StatusCode::REQUEST_TIMEOUT && status != StatusCode::TOO_MANY_REQUESTS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(reference: &str) -> ActivationOutcome {
        ActivationOutcome::Done { reference: reference.to_owned() }
    }

    fn permanent(code: &str, reason: &str) -> ActivationOutcome {
        ActivationOutcome::Permanent { code: code.to_owned(), reason: reason.to_owned() }
    }

    /// `Some(fragment)`: transient with a reason containing it.
    fn check(status: u16, retry_after_ms: Option<u64>, body: &str, expected: Result<ActivationOutcome, &str>) {
        let id = RequestId::new("r-1").expect("id");
        let status = StatusCode::from_u16(status).expect("status");
        let outcome = classify(status, retry_after_ms, body.as_bytes(), &id);
        match expected {
            Ok(expected) => assert_eq!(outcome, expected, "{status} {body}"),
            Err(fragment) => match &outcome {
                ActivationOutcome::Transient { reason, retry_after_ms: after } => {
                    assert!(reason.contains(fragment), "{status} {body}: {reason:?} lacks {fragment:?}");
                    assert_eq!(*after, retry_after_ms, "{status} {body}");
                }
                other => panic!("{status} {body}: transient expected, got {other:?}"),
            },
        }
    }

    #[test]
    fn the_answer_table() {
        let completed = r#"{"id":"gw-9","state":"Completed","@type":"Monitor","href":"/monitor/gw-9"}"#;
        check(200, None, completed, Ok(done("gw-9")));
        check(201, None, completed, Ok(done("gw-9")));
        check(200, None, r#"{"state":"completed"}"#, Ok(done("r-1")));
        check(
            202,
            Some(2000),
            r#"{"id":"gw-9","state":"InProgress"}"#,
            Err("in progress at the gateway (reference gw-9)"),
        );
        check(200, None, r#"{"id":"gw-9","state":"inProgress"}"#, Err("in progress"));
        check(
            200,
            None,
            r#"{"id":"gw-9","state":"InError","code":"IMSI_IN_USE","reason":"IMSI already provisioned for another MSISDN"}"#,
            Ok(permanent("IMSI_IN_USE", "IMSI already provisioned for another MSISDN")),
        );
        check(200, None, r#"{"state":"InError"}"#, Ok(permanent("http-200", "OK")));
        check(200, None, r#"{"state":"Pending"}"#, Err("unknown state \"Pending\""));
        check(200, None, "", Err("HTTP 200 without a state"));
        check(200, None, "<html>ok</html>", Err("HTTP 200 with an unreadable answer"));
        check(200, None, r#"{"state":7}"#, Err("unreadable answer"));
        check(408, None, "", Err("HTTP 408"));
        check(429, Some(3000), r#"{"reason":"slow down"}"#, Err("HTTP 429: slow down"));
        check(500, None, "", Err("HTTP 500"));
        check(503, Some(1000), "busy", Err("HTTP 503"));
        check(302, None, "", Err("redirects are not followed"));
        check(409, None, completed, Ok(done("gw-9")));
        check(409, None, "", Err("HTTP 409: in progress"));
        // Regression (CI on f83edc7): blank fields say nothing, as an empty body does.
        check(409, None, r#"{"code":null,"id":null,"reason":"","state":null}"#, Err("HTTP 409: in progress"));
        check(409, None, r#"{"code":" ","reason":"number taken"}"#, Ok(permanent("http-409", "number taken")));
        check(400, None, r#"{"reason":"","message":""}"#, Ok(permanent("http-400", "Bad Request")));
        check(
            409,
            None,
            r#"{"reason":"number assigned elsewhere"}"#,
            Ok(permanent("http-409", "number assigned elsewhere")),
        );
        check(
            409,
            None,
            r#"{"code":"MSISDN_TAKEN","reason":"number assigned elsewhere"}"#,
            Ok(permanent("MSISDN_TAKEN", "number assigned elsewhere")),
        );
        check(
            400,
            None,
            r#"{"code":"BAD_PROFILE","reason":"unknown profile","message":"gold-6g is not defined on hss-1"}"#,
            Ok(permanent("BAD_PROFILE", "unknown profile: gold-6g is not defined on hss-1")),
        );
        check(401, None, "", Ok(permanent("http-401", "Unauthorized")));
        check(404, None, "<html>not here</html>", Ok(permanent("http-404", "Not Found")));
        check(
            422,
            None,
            r#"{"message":"request id reused with another command"}"#,
            Ok(permanent("http-422", "request id reused with another command")),
        );
    }

    #[test]
    fn a_submission_is_taken_by_any_2xx_refused_by_a_4xx_and_retried_otherwise() {
        let id = RequestId::new("sms-1").expect("id");
        let at = |status: u16, body: &str| {
            classify_submission(StatusCode::from_u16(status).expect("status"), Some(5), body.as_bytes(), &id)
        };
        assert_eq!(at(202, ""), done("sms-1"));
        assert_eq!(at(200, r#"{"id":"msg-77","status":"queued"}"#), done("msg-77"));
        assert_eq!(at(201, "<html/>"), done("sms-1"));
        assert_eq!(
            at(400, r#"{"code":"BAD_NUMBER","reason":"not a mobile number"}"#),
            permanent("BAD_NUMBER", "not a mobile number")
        );
        assert_eq!(at(409, ""), permanent("http-409", "Conflict"));
        for (status, fragment) in [(429, "HTTP 429"), (503, "HTTP 503"), (408, "HTTP 408"), (302, "HTTP 302")] {
            match at(status, r#"{"reason":"busy"}"#) {
                ActivationOutcome::Transient { reason, retry_after_ms } => {
                    assert!(reason.starts_with(fragment) && reason.ends_with("busy"), "{reason}");
                    assert_eq!(retry_after_ms, Some(5));
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        /// Whatever a gateway sends, the status class decides where the table says it
        /// does, and what is kept of the body is bounded and printable.
        #[test]
        fn any_answer_is_classified_and_bounded(
            status in 100u16..600,
            body in proptest::prop_oneof![
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
                (
                    proptest::option::of(".{0,700}"),
                    proptest::option::of(proptest::sample::select(&["Completed", "inprogress", "InError", "x"][..])),
                    proptest::option::of(".{0,700}"),
                    proptest::option::of(".{0,700}"),
                ).prop_map(|(id, state, code, reason)| {
                    serde_json::to_vec(&serde_json::json!({"id": id, "state": state, "code": code, "reason": reason}))
                        .expect("json")
                }),
            ],
            retry_after_ms in proptest::option::of(0u64..10_000_000),
        ) {
            let id = RequestId::new("r-1").expect("id");
            let status = StatusCode::from_u16(status).expect("status");
            let outcome = classify(status, retry_after_ms, &body, &id);
            let texts: Vec<&String> = match &outcome {
                ActivationOutcome::Done { reference } => vec![reference],
                ActivationOutcome::Transient { reason, retry_after_ms: after } => {
                    proptest::prop_assert_eq!(*after, retry_after_ms);
                    vec![reason]
                }
                ActivationOutcome::Permanent { code, reason } => vec![code, reason],
            };
            for text in texts {
                proptest::prop_assert!(text.len() <= MAX_ANSWER_TEXT_BYTES + 64, "{}", text.len());
                proptest::prop_assert!(!text.chars().any(char::is_control), "{:?}", text);
            }
            if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS {
                proptest::prop_assert!(outcome.is_transient(), "{} {:?}", status, outcome);
            } else if status.is_client_error() && status != StatusCode::CONFLICT {
                proptest::prop_assert!(outcome.is_permanent(), "{} {:?}", status, outcome);
            } else if status == StatusCode::CONFLICT {
                // A refusal says why; a 409 that says nothing is the same key still at work.
                if let ActivationOutcome::Permanent { code, reason } = &outcome {
                    proptest::prop_assert!(!code.trim().is_empty() && !reason.trim().is_empty(), "{:?}", outcome);
                }
                if body.iter().all(u8::is_ascii_whitespace) {
                    proptest::prop_assert!(outcome.is_transient(), "{:?}", outcome);
                }
            } else if !status.is_success() {
                proptest::prop_assert!(!outcome.is_permanent(), "{} {:?}", status, outcome);
            }
        }
    }

    #[test]
    fn answer_text_is_bounded_and_has_no_control_characters() {
        assert_eq!(bounded("a\nb\u{1b}[31m"), "a b [31m");
        let long = "é".repeat(MAX_ANSWER_TEXT_BYTES);
        let cut = bounded(&long);
        assert_eq!(cut.len(), MAX_ANSWER_TEXT_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let header = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, value.parse().expect("header"));
            retry_after_ms(&headers)
        };
        assert_eq!(header("3"), Some(3000));
        assert_eq!(header(" 0 "), Some(0));
        assert_eq!(header("999999999"), Some(MAX_RETRY_AFTER_SECONDS * 1000));
        assert_eq!(header("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after_ms(&HeaderMap::new()), None);
    }
}
