//! Delivery of short messages to an SMS gateway over the HTTP adapter: one `POST` per
//! message of `{"reference", "to", "text"}` to the gateway's URL, under the message's
//! request id (`X-Request-Id` and `Idempotency-Key`, so a retried message is sent once by
//! a gateway that de-duplicates), with the [`HttpConfig`]'s credentials, TLS, timeouts and
//! retries. Any 2xx means the gateway took the message; a refusal (a 4xx but 408 and 429)
//! is permanent; anything else is transient. The configuration file is an activation
//! configuration's `[http]` table (README.md, "SMS gateway").

use std::path::Path;

use bytes::Bytes;
use serde_json::json;

use crate::{ActivationConfig, ActivationError, ActivationOutcome, HttpActivator, HttpConfig, Msisdn, RequestId};

/// The longest text sent, in characters: ten concatenated GSM-7 segments of 153.
pub const MAX_SMS_TEXT_CHARS: usize = 1530;
/// The most recipients of one message.
pub const MAX_SMS_RECIPIENTS: usize = 10;

/// A message to send, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsMessage {
    id: RequestId,
    to: Vec<Msisdn>,
    text: String,
}

impl SmsMessage {
    /// `id` is the idempotency key (the same message, retried, keeps it); `to` the
    /// recipients' E.164 numbers (1 to [`MAX_SMS_RECIPIENTS`]); `text` 1 to
    /// [`MAX_SMS_TEXT_CHARS`] characters without control characters but line breaks.
    pub fn new(id: &str, to: &[&str], text: &str) -> Result<SmsMessage, ActivationError> {
        let id = RequestId::new(id)?;
        if to.is_empty() || to.len() > MAX_SMS_RECIPIENTS {
            return Err(ActivationError::request(
                "to",
                format!("1 to {MAX_SMS_RECIPIENTS} recipients, not {}", to.len()),
            ));
        }
        let to = to.iter().map(|number| Msisdn::new(number)).collect::<Result<Vec<_>, _>>()?;
        let count = text.chars().count();
        if count == 0 || count > MAX_SMS_TEXT_CHARS {
            return Err(ActivationError::request("text", format!("1 to {MAX_SMS_TEXT_CHARS} characters, not {count}")));
        }
        if let Some((at, c)) = text.char_indices().find(|&(_, c)| c.is_control() && c != '\n') {
            return Err(ActivationError::request("text", format!("control character {c:?} at byte {at}")));
        }
        Ok(SmsMessage { id, to, text: text.to_owned() })
    }

    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// The document POSTed: numbers in E.164 with their `+`.
    pub fn json(&self) -> String {
        let to: Vec<String> = self.to.iter().map(|number| format!("+{}", number.as_str())).collect();
        json!({"reference": self.id.as_str(), "to": to, "text": self.text}).to_string()
    }
}

/// An SMS gateway reached over HTTP/JSON.
#[derive(Debug)]
pub struct SmsGateway {
    http: HttpActivator,
}

impl SmsGateway {
    /// Checks the configuration; no connection is opened yet.
    pub fn new(config: &HttpConfig) -> Result<SmsGateway, ActivationError> {
        Ok(SmsGateway { http: HttpActivator::new(config)? })
    }

    /// Reads a configuration file with an `[http]` table (a `[spool]` one is refused).
    pub fn load(path: &Path) -> Result<SmsGateway, ActivationError> {
        match ActivationConfig::load(path)? {
            ActivationConfig::Http(http) => SmsGateway::new(&http),
            ActivationConfig::Spool(_) => Err(ActivationError::ConfigFile {
                path: path.to_owned(),
                message: "an SMS gateway is reached over HTTP: an [http] table, not [spool]".to_owned(),
            }),
        }
    }

    /// Sends `message`: `Done` once the gateway took it.
    pub async fn send(&self, message: &SmsMessage) -> ActivationOutcome {
        self.http.submit(&message.id, Bytes::from(message.json()), "sms").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_checked_field_by_field_and_sent_as_documented() {
        let message = SmsMessage::new("sms:t1:episode-1", &["491700000001", "+491700000002"], "Low balance.\nTop up.")
            .expect("valid");
        assert_eq!(
            message.json(),
            r#"{"reference":"sms:t1:episode-1","text":"Low balance.\nTop up.","to":["+491700000001","+491700000002"]}"#
        );
        let long = "x".repeat(MAX_SMS_TEXT_CHARS + 1);
        let many: Vec<&str> = vec!["491700000001"; MAX_SMS_RECIPIENTS + 1];
        for (id, to, text, field) in [
            ("sms 1", &["491700000001"][..], "hi", "request_id"),
            ("sms-1", &[][..], "hi", "to"),
            ("sms-1", &many[..], "hi", "to"),
            ("sms-1", &["0170000001"][..], "hi", "msisdn"),
            ("sms-1", &["49170abc"][..], "hi", "msisdn"),
            ("sms-1", &["491700000001"][..], "", "text"),
            ("sms-1", &["491700000001"][..], &long, "text"),
            ("sms-1", &["491700000001"][..], "a\u{1b}[31m", "text"),
        ] {
            match SmsMessage::new(id, to, text) {
                Err(ActivationError::Request { field: found, .. }) => assert_eq!(found, field, "{id} {to:?} {text:?}"),
                other => panic!("{id} {to:?} {text:?}: {other:?}"),
            }
        }
    }
}
