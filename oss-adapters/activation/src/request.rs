//! What an activation asks of the network: the request id (its idempotency key), the
//! operation, the subscriber's identities, the service profile, the target network
//! elements and, for a new SIM, its secret keys. Every value is checked when it is built,
//! with an error naming the field, so the adapters only ever see valid requests; every
//! field is bounded (`MAX_*`).

use std::fmt;

use crate::{ActivationError, Secret};

/// Longest request id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;
/// Longest network element id, profile id, characteristic name or value, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest network element address (a host:port, a URI, a Diameter identity), in bytes.
pub const MAX_ADDRESS_BYTES: usize = 256;
/// Most characteristics in a service profile.
pub const MAX_CHARACTERISTICS: usize = 64;
/// Most target network elements in one request.
pub const MAX_TARGETS: usize = 16;

/// The idempotency key of an activation: 1 to [`MAX_REQUEST_ID_BYTES`] bytes of ASCII
/// letters, digits, `.`, `_`, `:` and `-`, starting with a letter or digit, so it is safe
/// in an HTTP header and as a file name. The same id must always mean the same command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// Checks and wraps an id.
    pub fn new(id: impl Into<String>) -> Result<RequestId, ActivationError> {
        let id = id.into();
        let field = "request_id";
        if id.is_empty() || id.len() > MAX_REQUEST_ID_BYTES {
            return Err(ActivationError::request(
                field,
                format!("must be 1 to {MAX_REQUEST_ID_BYTES} bytes, not {}", id.len()),
            ));
        }
        if let Some((at, c)) = id.char_indices().find(|&(_, c)| !(c.is_ascii_alphanumeric() || "._:-".contains(c))) {
            return Err(ActivationError::request(
                field,
                format!("{c:?} at byte {at}: only ASCII letters, digits, '.', '_', ':' and '-' are allowed"),
            ));
        }
        if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(ActivationError::request(field, "must start with a letter or a digit"));
        }
        Ok(RequestId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the network is asked to do for one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Provision a new line: subscriber, profile and (usually) SIM keys on every target.
    Activate,
    /// Bar all service, keeping the subscriber provisioned.
    Suspend,
    /// Lift a suspension.
    Resume,
    /// Remove the subscriber from every target.
    Terminate,
    /// Move the line to a new SIM: the request's identities carry the new IMSI and ICCID.
    SimSwap { previous_imsi: Imsi, previous_iccid: Iccid },
    /// Move the line to a new number: the request's identities carry the new MSISDN.
    NumberChange { previous_msisdn: Msisdn },
    /// Replace the service profile with the request's one.
    ChangeProfile,
}

impl Operation {
    /// The operation's name on the wire (`activate`, `simSwap`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Activate => "activate",
            Operation::Suspend => "suspend",
            Operation::Resume => "resume",
            Operation::Terminate => "terminate",
            Operation::SimSwap { .. } => "simSwap",
            Operation::NumberChange { .. } => "numberChange",
            Operation::ChangeProfile => "changeProfile",
        }
    }

    /// Whether the operation needs a service profile in the request.
    pub fn needs_profile(&self) -> bool {
        matches!(self, Operation::Activate | Operation::ChangeProfile)
    }
}

fn digits(field: &'static str, value: &str, min: usize, max: usize) -> Result<(), ActivationError> {
    if let Some((at, c)) = value.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(ActivationError::request(field, format!("{c:?} at byte {at}: only digits are allowed")));
    }
    if value.len() < min || value.len() > max {
        return Err(ActivationError::request(field, format!("must be {min} to {max} digits, not {}", value.len())));
    }
    Ok(())
}

/// An E.164 number without the `+` (a leading `+` is accepted and dropped): 1 to 15
/// digits, not starting with 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Msisdn(String);

impl Msisdn {
    pub fn new(number: &str) -> Result<Msisdn, ActivationError> {
        let number = number.strip_prefix('+').unwrap_or(number);
        digits("msisdn", number, 1, 15)?;
        if number.starts_with('0') {
            return Err(ActivationError::request("msisdn", "an E.164 number starts with its country code, not 0"));
        }
        Ok(Msisdn(number.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A string of decimal digits with a length range, checked naming its field.
macro_rules! digit_string {
    ($(#[$doc:meta])* $name:ident, $field:literal, $min:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: &str) -> Result<$name, ActivationError> {
                digits($field, value, $min, $max)?;
                Ok($name(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

digit_string!(
    /// An IMSI: 6 to 15 digits (MCC, MNC, MSIN; TS 23.003 §2.2).
    Imsi, "imsi", 6, 15
);
digit_string!(
    /// A SIM card's ICCID: 18 to 22 digits (ITU-T E.118, check digit included).
    Iccid, "iccid", 18, 22
);

/// The identities of the subscriber an activation is for (after the operation: a SIM swap
/// carries the new IMSI and ICCID, a number change the new MSISDN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub msisdn: Msisdn,
    pub imsi: Imsi,
    pub iccid: Iccid,
}

/// One name/value pair of a service profile (TMF `Characteristic`), e.g. `apn` = `internet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Characteristic {
    pub name: String,
    pub value: String,
}

/// The service profile (plan) the network elements apply: an id they know (a profile or
/// template name on the HSS/PCRF) and optional characteristics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProfile {
    id: String,
    characteristics: Vec<Characteristic>,
}

fn name(field: &'static str, value: &str, max: usize) -> Result<(), ActivationError> {
    if value.is_empty() || value.len() > max {
        return Err(ActivationError::request(field, format!("must be 1 to {max} bytes, not {}", value.len())));
    }
    if let Some((at, c)) = value.char_indices().find(|(_, c)| c.is_control()) {
        return Err(ActivationError::request(field, format!("control character {c:?} at byte {at}")));
    }
    Ok(())
}

impl ServiceProfile {
    /// A profile with no characteristics.
    pub fn new(id: impl Into<String>) -> Result<ServiceProfile, ActivationError> {
        let id = id.into();
        name("profile.id", &id, MAX_NAME_BYTES)?;
        Ok(ServiceProfile { id, characteristics: Vec::new() })
    }

    /// Adds a characteristic (at most [`MAX_CHARACTERISTICS`], names unique).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Result<ServiceProfile, ActivationError> {
        let (key, value) = (key.into(), value.into());
        name("profile.characteristic.name", &key, MAX_NAME_BYTES)?;
        name("profile.characteristic.value", &value, MAX_NAME_BYTES)?;
        if self.characteristics.len() == MAX_CHARACTERISTICS {
            return Err(ActivationError::request("profile.characteristic", format!("at most {MAX_CHARACTERISTICS}")));
        }
        if self.characteristics.iter().any(|c| c.name == key) {
            return Err(ActivationError::request("profile.characteristic.name", format!("{key:?} given twice")));
        }
        self.characteristics.push(Characteristic { name: key, value });
        Ok(self)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn characteristics(&self) -> &[Characteristic] {
        &self.characteristics
    }
}

/// The kind of a network element an activation configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementKind {
    /// Home Subscriber Server (4G/IMS).
    Hss,
    /// Unified Data Management (5G).
    Udm,
    /// Policy and Charging Rules Function (4G).
    Pcrf,
    /// Policy Control Function (5G).
    Pcf,
    /// Short Message Service Centre.
    Smsc,
    /// Any other provisioned gateway (PGW/SMF, MMSC, voicemail, …).
    Gateway,
}

impl ElementKind {
    /// The kind's name on the wire (`HSS`, `UDM`, `PCRF`, `PCF`, `SMSC`, `GATEWAY`).
    pub fn name(self) -> &'static str {
        match self {
            ElementKind::Hss => "HSS",
            ElementKind::Udm => "UDM",
            ElementKind::Pcrf => "PCRF",
            ElementKind::Pcf => "PCF",
            ElementKind::Smsc => "SMSC",
            ElementKind::Gateway => "GATEWAY",
        }
    }
}

/// A network element an activation is applied to, as the resource inventory records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkElement {
    kind: ElementKind,
    id: String,
    address: String,
}

impl NetworkElement {
    /// `id` is the inventory's id of the element, `address` how the gateway reaches it.
    pub fn new(
        kind: ElementKind,
        id: impl Into<String>,
        address: impl Into<String>,
    ) -> Result<NetworkElement, ActivationError> {
        let (id, address) = (id.into(), address.into());
        name("target.id", &id, MAX_NAME_BYTES)?;
        name("target.address", &address, MAX_ADDRESS_BYTES)?;
        Ok(NetworkElement { kind, id, address })
    }

    pub fn kind(&self) -> ElementKind {
        self.kind
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn address(&self) -> &str {
        &self.address
    }
}

/// A SIM's authentication keys, for the HSS/UDM: Ki (K) and, when the operator uses
/// MILENAGE with per-card OPc, OPc; each 32 or 64 hexadecimal digits (128 or 256 bits).
/// Redacted in `Debug` and zeroed on drop ([`Secret`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimSecrets {
    ki: Secret,
    opc: Option<Secret>,
}

fn key_hex(field: &'static str, key: &str) -> Result<(), ActivationError> {
    // The reason never quotes the key.
    if !(key.len() == 32 || key.len() == 64) {
        return Err(ActivationError::request(field, format!("must be 32 or 64 hex digits, not {}", key.len())));
    }
    if let Some(at) = key.bytes().position(|b| !b.is_ascii_hexdigit()) {
        return Err(ActivationError::request(field, format!("not a hex digit at byte {at}")));
    }
    Ok(())
}

impl SimSecrets {
    pub fn new(ki: Secret, opc: Option<Secret>) -> Result<SimSecrets, ActivationError> {
        key_hex("sim.ki", ki.expose())?;
        if let Some(opc) = &opc {
            key_hex("sim.opc", opc.expose())?;
        }
        Ok(SimSecrets { ki, opc })
    }

    pub fn ki(&self) -> &Secret {
        &self.ki
    }

    pub fn opc(&self) -> Option<&Secret> {
        self.opc.as_ref()
    }
}

/// One activation: built with [`ActivationRequest::new`], which checks that the fields fit
/// together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationRequest {
    id: RequestId,
    operation: Operation,
    subscriber: Subscriber,
    profile: Option<ServiceProfile>,
    targets: Vec<NetworkElement>,
    sim: Option<SimSecrets>,
}

impl ActivationRequest {
    /// A request to the `targets` (1 to [`MAX_TARGETS`], ids unique). `Activate` and
    /// `ChangeProfile` need a profile.
    pub fn new(
        id: RequestId,
        operation: Operation,
        subscriber: Subscriber,
        profile: Option<ServiceProfile>,
        targets: Vec<NetworkElement>,
    ) -> Result<ActivationRequest, ActivationError> {
        if targets.is_empty() || targets.len() > MAX_TARGETS {
            return Err(ActivationError::request(
                "targets",
                format!("must name 1 to {MAX_TARGETS} network elements, not {}", targets.len()),
            ));
        }
        for (index, target) in targets.iter().enumerate() {
            if targets[..index].iter().any(|t| t.id == target.id) {
                return Err(ActivationError::request("target.id", format!("{:?} given twice", target.id)));
            }
        }
        if operation.needs_profile() && profile.is_none() {
            return Err(ActivationError::request("profile", format!("{} needs a service profile", operation.name())));
        }
        Ok(ActivationRequest { id, operation, subscriber, profile, targets, sim: None })
    }

    /// Attaches a SIM's keys (for `Activate` and `SimSwap`, where the HSS/UDM needs them).
    pub fn with_sim_secrets(mut self, sim: SimSecrets) -> Result<ActivationRequest, ActivationError> {
        if !matches!(self.operation, Operation::Activate | Operation::SimSwap { .. }) {
            return Err(ActivationError::request(
                "sim",
                format!("SIM keys are sent only with activate and simSwap, not {}", self.operation.name()),
            ));
        }
        self.sim = Some(sim);
        Ok(self)
    }

    pub fn id(&self) -> &RequestId {
        &self.id
    }

    pub fn operation(&self) -> &Operation {
        &self.operation
    }

    pub fn subscriber(&self) -> &Subscriber {
        &self.subscriber
    }

    pub fn profile(&self) -> Option<&ServiceProfile> {
        self.profile.as_ref()
    }

    pub fn targets(&self) -> &[NetworkElement] {
        &self.targets
    }

    pub fn sim_secrets(&self) -> Option<&SimSecrets> {
        self.sim.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(result: Result<impl fmt::Debug, ActivationError>) -> String {
        result.expect_err("refused").to_string()
    }

    #[test]
    fn request_ids_are_safe_as_headers_and_file_names() {
        assert_eq!(
            RequestId::new("order-42:item-1:activate.v2").map(|id| id.to_string()).ok().as_deref(),
            Some("order-42:item-1:activate.v2")
        );
        assert!(refused(RequestId::new("")).contains("request_id: must be 1 to 128 bytes, not 0"));
        assert!(refused(RequestId::new("x".repeat(129))).contains("not 129"));
        assert!(refused(RequestId::new("../etc/passwd")).contains("'/' at byte 2"));
        assert!(refused(RequestId::new("a b")).contains("' ' at byte 1"));
        assert!(refused(RequestId::new("a\r\nX-Evil: 1")).contains("'\\r' at byte 1"));
        assert!(refused(RequestId::new(".hidden")).contains("must start with a letter or a digit"));
        assert!(refused(RequestId::new("-x")).contains("must start with a letter or a digit"));
    }

    #[test]
    fn identities_are_checked_naming_the_field() {
        assert_eq!(Msisdn::new("+4915112345678").map(|m| m.as_str().to_owned()).ok().as_deref(), Some("4915112345678"));
        assert!(refused(Msisdn::new("015112345678")).contains("msisdn: an E.164 number starts with its country code"));
        assert!(refused(Msisdn::new("49151-1234")).contains("msisdn: '-' at byte 5"));
        assert!(refused(Msisdn::new("4915112345678901")).contains("msisdn: must be 1 to 15 digits, not 16"));
        assert!(refused(Imsi::new("26201")).contains("imsi: must be 6 to 15 digits, not 5"));
        assert!(Imsi::new("262011234567890").is_ok());
        assert!(refused(Iccid::new("8949")).contains("iccid: must be 18 to 22 digits, not 4"));
        assert!(Iccid::new("89490200001234567890").is_ok());
    }

    #[test]
    fn profiles_and_targets_are_bounded() {
        let mut profile = ServiceProfile::new("gold").expect("profile");
        for i in 0..MAX_CHARACTERISTICS {
            profile = profile.with(format!("c{i}"), "v").expect("characteristic");
        }
        assert!(refused(profile.clone().with("one-more", "v")).contains("at most 64"));
        assert!(refused(ServiceProfile::new("gold").and_then(|p| p.with("apn", "a")?.with("apn", "b")))
            .contains("\"apn\" given twice"));
        assert!(refused(ServiceProfile::new("")).contains("profile.id: must be 1 to 128 bytes"));
        assert!(refused(NetworkElement::new(ElementKind::Hss, "hss-1", "x".repeat(257)))
            .contains("target.address: must be 1 to 256 bytes, not 257"));
        assert!(refused(NetworkElement::new(ElementKind::Hss, "hss\n1", "a")).contains("control character"));
    }

    fn subscriber() -> Subscriber {
        Subscriber {
            msisdn: Msisdn::new("4915112345678").expect("msisdn"),
            imsi: Imsi::new("262011234567890").expect("imsi"),
            iccid: Iccid::new("89490200001234567890").expect("iccid"),
        }
    }

    #[test]
    fn a_request_needs_targets_a_profile_where_it_applies_and_keys_only_where_they_are_used() {
        let id = || RequestId::new("r1").expect("id");
        let hss = || NetworkElement::new(ElementKind::Hss, "hss-1", "hss1.example:3868").expect("element");
        assert!(refused(ActivationRequest::new(id(), Operation::Suspend, subscriber(), None, vec![]))
            .contains("targets: must name 1 to 16 network elements, not 0"));
        assert!(refused(ActivationRequest::new(id(), Operation::Suspend, subscriber(), None, vec![hss(), hss()]))
            .contains("target.id: \"hss-1\" given twice"));
        assert!(refused(ActivationRequest::new(id(), Operation::Activate, subscriber(), None, vec![hss()]))
            .contains("profile: activate needs a service profile"));
        let keys = || SimSecrets::new(Secret::new("00".repeat(16)), None).expect("keys");
        let suspend = ActivationRequest::new(id(), Operation::Suspend, subscriber(), None, vec![hss()]).expect("ok");
        assert!(refused(suspend.with_sim_secrets(keys())).contains("not suspend"));
        let profile = ServiceProfile::new("gold").ok();
        let activate = ActivationRequest::new(id(), Operation::Activate, subscriber(), profile, vec![hss()]);
        assert!(activate.and_then(|r| r.with_sim_secrets(keys())).is_ok());
    }

    #[test]
    fn key_errors_never_quote_the_key() {
        let key = "zz".repeat(16);
        let message = refused(SimSecrets::new(Secret::new(key.clone()), None));
        assert!(message.contains("sim.ki: not a hex digit at byte 0"), "{message}");
        assert!(!message.contains(&key));
        assert!(refused(SimSecrets::new(Secret::new("00".repeat(16)), Some(Secret::new("ab"))))
            .contains("sim.opc: must be 32 or 64 hex digits, not 2"));
    }
}
