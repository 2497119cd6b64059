//! Credit-Control-Request → engine request, engine answer → Credit-Control-Answer
//! (RFC 4006/8506 with the 3GPP TS 32.299 Gy/Ro AVPs).
//!
//! - CC-Request-Type INITIAL / UPDATE / TERMINATION become a session step; every
//!   Multiple-Services-Credit-Control becomes one rating group of it (Rating-Group keys
//!   the reservation; the service is the plan's service for that rating group, or the
//!   one the Service-Context-Id implies, e.g. voice for IMS).
//! - EVENT with Requested-Action DIRECT_DEBITING debits at once, PRICE_ENQUIRY and
//!   CHECK_BALANCE read; REFUND_ACCOUNT is refused with 5004 until refunds by units exist.
//! - The idempotency key is Session-Id + CC-Request-Number, so a retransmission (T flag
//!   or not) gets the original answer and is never charged twice.

use bytes::Bytes;
use tollgate_engine::{
    Answer, Body, Identity, Operation, Outcome, Plans, Request, ServiceRef, SessionStep, SmolStr, Target, Unit,
    UnitRequest, Usage,
};

use super::codec::{find, Avp, Message};
use super::dictionary::{code, VENDOR_3GPP};
use super::result_code as rc;

pub const COMMAND_CREDIT_CONTROL: u32 = 272;
pub const APPLICATION_CREDIT_CONTROL: u32 = 4;

/// Service-Context-Id values (TS 32.299 §7.1.12) and the plan service they imply when an
/// MSCC names no rating group of the plan.
fn service_for_context(context: &str) -> Option<&'static str> {
    let base = context.split('@').next().unwrap_or("");
    let spec = base.rsplit('.').next().unwrap_or(base);
    match spec {
        "32260" => Some("voice"),
        "32274" => Some("sms"),
        "32251" => Some("data"),
        _ => None,
    }
}

/// Which unit AVP carries the quantity of a service-unit group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Time,
    Octets,
    ServiceSpecific,
}

/// What a CCR asks, decoded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditControl {
    pub session_id: String,
    pub request_type: u32,
    pub request_number: u32,
    pub requested_action: Option<u32>,
    pub subscriber: Option<Identity>,
    pub destination: Option<SmolStr>,
    pub units: Vec<(UnitRequest, UnitKind, bool)>,
    pub event_at: i64,
}

/// A CCR that cannot be served: the Result-Code and the AVP to name in Failed-AVP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub result_code: u32,
    pub failed_avp: Option<Bytes>,
    pub message: String,
}

fn refuse(result_code: u32, failed_avp: Option<Bytes>, message: impl Into<String>) -> Refusal {
    Refusal { result_code, failed_avp, message: message.into() }
}

/// Failed-AVP content for a missing AVP: the AVP with zeroed data of the right size.
pub(crate) fn missing(code: u32, vendor: u32, data_len: usize) -> Refusal {
    let avp = Avp::new(code, vendor, vec![0u8; data_len]);
    refuse(rc::MISSING_AVP, Some(avp.encode()), format!("AVP {code} is missing"))
}

fn required_u32(message: &Message, avp_code: u32) -> Result<u32, Refusal> {
    let avp = message.avp(avp_code, 0).ok_or_else(|| missing(avp_code, 0, 4))?;
    avp.as_u32().ok_or_else(|| refuse(rc::INVALID_AVP_LENGTH, Some(avp.encode()), "not 4 bytes"))
}

fn text(avp: &Avp) -> Result<&str, Refusal> {
    avp.as_str().ok_or_else(|| refuse(rc::INVALID_AVP_VALUE, Some(avp.encode()), "not UTF-8"))
}

/// Digits of a called-party address: `tel:+4930…`, `sip:+4930…@host;user=phone`, `+4930…`.
pub fn address_digits(address: &str) -> Option<String> {
    let rest = address.strip_prefix("tel:").or_else(|| address.strip_prefix("sip:")).unwrap_or(address);
    let rest = rest.split(['@', ';']).next().unwrap_or(rest);
    let digits: String = rest.trim_start_matches('+').chars().filter(|c| *c != '-' && *c != '.').collect();
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

fn group(avp: &Avp) -> Result<Vec<Avp>, Refusal> {
    avp.group().map_err(|err| refuse(err.result_code, err.failed_avp, err.message))
}

/// Every measure a Requested/Used-Service-Unit group carries: a gateway may report the
/// time and the volume of one usage together (RFC 4006 §8.19).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Measures {
    time_seconds: Option<u64>,
    octets: Option<u64>,
    specific: Option<u64>,
}

impl Measures {
    fn of(members: &[Avp]) -> Measures {
        let input = find(members, code::CC_INPUT_OCTETS, 0).and_then(Avp::as_u64);
        let output = find(members, code::CC_OUTPUT_OCTETS, 0).and_then(Avp::as_u64);
        let total = find(members, code::CC_TOTAL_OCTETS, 0).and_then(Avp::as_u64);
        let split =
            (input.is_some() || output.is_some()).then(|| input.unwrap_or(0).saturating_add(output.unwrap_or(0)));
        Measures {
            time_seconds: find(members, code::CC_TIME, 0).and_then(Avp::as_u32).map(u64::from),
            octets: total.or(split),
            specific: find(members, code::CC_SERVICE_SPECIFIC_UNITS, 0).and_then(Avp::as_u64),
        }
    }

    /// The quantity in `kind`, if the group has one.
    fn get(self, kind: UnitKind) -> Option<u64> {
        match kind {
            UnitKind::Time => self.time_seconds,
            UnitKind::Octets => self.octets,
            UnitKind::ServiceSpecific => self.specific,
        }
    }

    /// The first measure, time before volume before service-specific units: what is read
    /// when the plans do not say what the service is counted in.
    fn first(self) -> Option<(u64, UnitKind)> {
        [UnitKind::Time, UnitKind::Octets, UnitKind::ServiceSpecific]
            .into_iter()
            .find_map(|kind| self.get(kind).map(|units| (units, kind)))
    }

    /// No quantity, or only zeros.
    fn is_nothing(self) -> bool {
        [self.time_seconds, self.octets, self.specific].iter().all(|quantity| quantity.unwrap_or(0) == 0)
    }
}

/// The unit AVP that carries a plan unit's quantities.
fn kind_of(unit: Unit) -> UnitKind {
    match unit {
        Unit::Seconds => UnitKind::Time,
        Unit::Bytes => UnitKind::Octets,
        Unit::Events | Unit::Units => UnitKind::ServiceSpecific,
    }
}

fn kind_name(kind: UnitKind) -> &'static str {
    match kind {
        UnitKind::Time => "CC-Time",
        UnitKind::Octets => "CC-Total-Octets (or CC-Input-Octets and CC-Output-Octets)",
        UnitKind::ServiceSpecific => "CC-Service-Specific-Units",
    }
}

fn subscriber(message: &Message) -> Result<Option<Identity>, Refusal> {
    for avp in message.avps(code::SUBSCRIPTION_ID, 0) {
        let members = group(avp)?;
        let kind = find(&members, code::SUBSCRIPTION_ID_TYPE, 0).and_then(Avp::as_u32);
        let data = find(&members, code::SUBSCRIPTION_ID_DATA, 0).map(text).transpose()?;
        let (Some(kind), Some(data)) = (kind, data) else {
            return Err(refuse(rc::MISSING_AVP, Some(avp.encode()), "Subscription-Id needs a type and data"));
        };
        let identity = match kind {
            0 => Identity::Msisdn(data.to_owned()),
            1 => Identity::Imsi(data.to_owned()),
            2 => Identity::SipUri(data.to_owned()),
            3 => Identity::Nai(data.to_owned()),
            // END_USER_PRIVATE: no identity the engine keys subscribers by.
            4 => continue,
            // RFC 4006 §8.47 defines 0 to 4: another value is invalid, not missing.
            _ => {
                let bad = find(&members, code::SUBSCRIPTION_ID_TYPE, 0).map(Avp::encode);
                return Err(refuse(rc::INVALID_AVP_VALUE, bad, format!("Subscription-Id-Type {kind} is not 0 to 4")));
            }
        };
        return Ok(Some(identity));
    }
    Ok(None)
}

/// The called party from Service-Information (IMS or SMS), as digits.
fn destination(message: &Message) -> Option<SmolStr> {
    let service_information = message.avp(code::SERVICE_INFORMATION, VENDOR_3GPP)?.group().ok()?;
    if let Some(ims) = find(&service_information, code::IMS_INFORMATION, VENDOR_3GPP).and_then(|a| a.group().ok()) {
        if let Some(called) = find(&ims, code::CALLED_PARTY_ADDRESS, VENDOR_3GPP).and_then(Avp::as_str) {
            return address_digits(called).map(SmolStr::from);
        }
    }
    let sms = find(&service_information, code::SMS_INFORMATION, VENDOR_3GPP)?.group().ok()?;
    // Release 8 on: SMS-Information → Recipient-Info → Recipient-Address; before: direct.
    let info = find(&sms, code::RECIPIENT_INFO, VENDOR_3GPP).and_then(|a| a.group().ok());
    let holder = info.as_deref().unwrap_or(&sms);
    let recipient = find(holder, code::RECIPIENT_ADDRESS, VENDOR_3GPP)?.group().ok()?;
    find(&recipient, code::ADDRESS_DATA, VENDOR_3GPP).and_then(Avp::as_str).and_then(address_digits).map(SmolStr::from)
}

/// Decodes and checks a CCR. `plans` tell what each rating group (or the service the
/// Service-Context-Id implies) is counted in: its reported usage is read in that unit
/// (time and volume reported together: the one the tariff counts), its quota asked and
/// granted in it; a report without that unit is refused with 5031 rather than read in
/// another (seconds charged as bytes, or volume left unpaid).
pub fn parse(message: &Message, now: i64, plans: &Plans) -> Result<CreditControl, Refusal> {
    let session = message.avp(code::SESSION_ID, 0).ok_or_else(|| missing(code::SESSION_ID, 0, 0))?;
    // RFC 6733 §8.8: one Session-Id; a second names another session (5009, the second
    // as Failed-AVP), not one to ignore.
    if let Some(second) = message.avps(code::SESSION_ID, 0).nth(1) {
        return Err(refuse(rc::AVP_OCCURS_TOO_MANY_TIMES, Some(second.encode()), "Session-Id appears more than once"));
    }
    let session_id = text(session)?.to_owned();
    for required in [code::ORIGIN_HOST, code::ORIGIN_REALM, code::DESTINATION_REALM, code::SERVICE_CONTEXT_ID] {
        let Some(avp) = message.avp(required, 0) else {
            return Err(missing(required, 0, 0));
        };
        // A DiameterIdentity (RFC 6733 §4.3.1) or a context id is never empty.
        if avp.data.is_empty() {
            return Err(refuse(rc::INVALID_AVP_VALUE, Some(avp.encode()), format!("AVP {required} is empty")));
        }
    }
    if required_u32(message, code::AUTH_APPLICATION_ID)? != APPLICATION_CREDIT_CONTROL {
        let avp = message.avp(code::AUTH_APPLICATION_ID, 0).map(Avp::encode);
        return Err(refuse(rc::INVALID_AVP_VALUE, avp, "Auth-Application-Id must be 4"));
    }
    let request_type = required_u32(message, code::CC_REQUEST_TYPE)?;
    if !(1..=4).contains(&request_type) {
        let avp = message.avp(code::CC_REQUEST_TYPE, 0).map(Avp::encode);
        return Err(refuse(rc::INVALID_AVP_VALUE, avp, format!("CC-Request-Type {request_type}")));
    }
    let request_number = required_u32(message, code::CC_REQUEST_NUMBER)?;
    let context = message.avp(code::SERVICE_CONTEXT_ID, 0).map(text).transpose()?.unwrap_or_default();
    let context_service = service_for_context(context);
    let requested_action = message.avp(code::REQUESTED_ACTION, 0).and_then(Avp::as_u32);
    let event_at = message
        .avp(code::EVENT_TIMESTAMP, 0)
        .and_then(Avp::as_u32)
        // NTP seconds (since 1900) to Unix seconds.
        .map_or(now, |ntp| i64::from(ntp) - 2_208_988_800);
    let destination = destination(message);
    let mut units = Vec::new();
    let msccs: Vec<&Avp> = message.avps(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0).collect();
    if msccs.len() > 64 {
        return Err(refuse(rc::UNABLE_TO_COMPLY, None, "more than 64 Multiple-Services-Credit-Control"));
    }
    let default_kind = match context_service {
        Some("voice") => UnitKind::Time,
        Some("sms") => UnitKind::ServiceSpecific,
        _ => UnitKind::Octets,
    };
    // One rating group (or the single service) of the request: its RSU, if any, and its USUs.
    let unit_of = |rating_group: Option<u32>,
                   requested_avp: Option<&Avp>,
                   used_avps: &[&Avp]|
     -> Result<(UnitRequest, UnitKind, bool), Refusal> {
        let requested = requested_avp.map(group).transpose()?.map(|m| Measures::of(&m));
        let mut used = Vec::with_capacity(used_avps.len());
        for avp in used_avps {
            let measures = Measures::of(&group(avp)?);
            // Nothing used (no quantity, or only zeros): nothing to read.
            if !measures.is_nothing() {
                used.push((*avp, measures));
            }
        }
        let counted_in = match rating_group {
            Some(rating_group) => plans.rating_group_unit(rating_group),
            None => context_service.and_then(|name| plans.service_unit(name)),
        };
        let kind = match counted_in {
            Some(unit) => kind_of(unit),
            None => requested
                .and_then(Measures::first)
                .or_else(|| used.first().and_then(|(_, m)| m.first()))
                .map_or(default_kind, |(_, kind)| kind),
        };
        let mut used_units: Option<u64> = None;
        for (avp, measures) in &used {
            let Some(units) = measures.get(kind) else {
                return Err(refuse(
                    rc::RATING_FAILED,
                    Some(avp.encode()),
                    format!(
                        "Used-Service-Unit{} has no {}, the unit the service is counted in",
                        rating_group.map(|g| format!(" of Rating-Group {g}")).unwrap_or_default(),
                        kind_name(kind)
                    ),
                ));
            };
            used_units = Some(used_units.unwrap_or(0).saturating_add(units));
        }
        let service = match rating_group {
            Some(_) => None,
            None => context_service.map(|name| ServiceRef::Name(SmolStr::new(name))),
        };
        let requested_units = match requested {
            // No RSU: nothing asked (a report only).
            None => Some(0),
            // An RSU without a quantity in the service's unit asks for the default quota.
            Some(measures) => measures.get(kind),
        };
        let unit = UnitRequest {
            rating_group: rating_group.unwrap_or(0),
            service,
            requested_units,
            used_units,
            destination: destination.clone(),
        };
        Ok((unit, kind, requested_avp.is_some()))
    };
    for mscc in msccs {
        let members = group(mscc)?;
        let rating_group = find(&members, code::RATING_GROUP, 0).and_then(Avp::as_u32);
        let requested_avp = find(&members, code::REQUESTED_SERVICE_UNIT, 0);
        let used_avps: Vec<&Avp> =
            members.iter().filter(|a| a.code == code::USED_SERVICE_UNIT && a.vendor == 0).collect();
        units.push(unit_of(rating_group, requested_avp, &used_avps)?);
    }
    if units.is_empty() {
        // Single-service credit control: units at the top level.
        let requested_avp = message.avp(code::REQUESTED_SERVICE_UNIT, 0);
        let used_avps: Vec<&Avp> = message.avps(code::USED_SERVICE_UNIT, 0).collect();
        if requested_avp.is_some() || !used_avps.is_empty() || request_type == 4 {
            units.push(unit_of(None, requested_avp, &used_avps)?);
        }
    }
    Ok(CreditControl {
        session_id,
        request_type,
        request_number,
        requested_action,
        subscriber: subscriber(message)?,
        destination,
        units,
        event_at,
    })
}

/// The engine request a CCR stands for.
pub fn to_request(ccr: &CreditControl) -> Result<Request, Refusal> {
    let Some(identity) = ccr.subscriber.clone() else {
        return Err(missing(code::SUBSCRIPTION_ID, 0, 0));
    };
    let key = Some(format!("dia;{};{}", ccr.session_id, ccr.request_number));
    let target = Target::Subscriber(identity);
    let operation = match ccr.request_type {
        1..=3 => Operation::Session {
            session: ccr.session_id.clone(),
            step: match ccr.request_type {
                1 => SessionStep::Initial,
                2 => SessionStep::Update,
                _ => SessionStep::Termination,
            },
            units: ccr.units.iter().map(|(unit, _, _)| unit.clone()).collect(),
        },
        _ => {
            // An event is one service: a second Multiple-Services-Credit-Control was
            // dropped unanswered and uncharged; it is refused instead (5009).
            if ccr.units.len() > 1 {
                let second = Avp::u32(code::RATING_GROUP, 0, ccr.units[1].0.rating_group);
                return Err(refuse(
                    rc::AVP_OCCURS_TOO_MANY_TIMES,
                    Some(Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, &[second]).encode()),
                    "an event (CC-Request-Type EVENT_REQUEST) charges one service: one Multiple-Services-Credit-Control",
                ));
            }
            let (unit, _, _) = ccr.units.first().ok_or_else(|| missing(code::REQUESTED_SERVICE_UNIT, 0, 0))?;
            let units = unit.requested_units.filter(|u| *u > 0).or(unit.used_units).unwrap_or(1);
            let usage = Usage {
                service: unit.service.clone().unwrap_or(ServiceRef::RatingGroup(unit.rating_group)),
                rating_group: (unit.rating_group != 0).then_some(unit.rating_group),
                destination: ccr.destination.clone(),
                start_utc_seconds: ccr.event_at,
                units,
            };
            match ccr.requested_action.unwrap_or(0) {
                0 => Operation::DirectDebit { usage },
                2 => return Ok(Request { key: None, target, operation: Operation::BalanceEnquiry }),
                3 => return Ok(Request { key: None, target, operation: Operation::PriceEnquiry { usage } }),
                // RFC 6733 §7.1.5: a 5004 names the AVP in Failed-AVP.
                action => {
                    return Err(refuse(
                        rc::INVALID_AVP_VALUE,
                        Some(Avp::u32(code::REQUESTED_ACTION, 0, action).encode()),
                        format!("Requested-Action {action} is not supported"),
                    ));
                }
            }
        }
    };
    Ok(Request { key, target, operation })
}

/// The Result-Code for an engine outcome.
pub fn result_code(outcome: &Outcome) -> u32 {
    match outcome {
        Outcome::Success => rc::SUCCESS,
        Outcome::CreditLimitReached => rc::CREDIT_LIMIT_REACHED,
        Outcome::UnknownSubscriber | Outcome::UnknownAccount => rc::USER_UNKNOWN,
        Outcome::UnknownSession => rc::UNKNOWN_SESSION_ID,
        Outcome::RatingFailed(_) => rc::RATING_FAILED,
        Outcome::AlreadyExists => rc::UNABLE_TO_COMPLY,
        Outcome::Invalid(_) => rc::INVALID_AVP_VALUE,
        Outcome::ServiceDenied(_) => rc::END_USER_SERVICE_DENIED,
        _ => rc::UNABLE_TO_COMPLY,
    }
}

fn unit_avp(kind: UnitKind, units: u64) -> Avp {
    match kind {
        UnitKind::Time => Avp::u32(code::CC_TIME, 0, u32::try_from(units).unwrap_or(u32::MAX)),
        UnitKind::Octets => Avp::u64(code::CC_TOTAL_OCTETS, 0, units),
        UnitKind::ServiceSpecific => Avp::u64(code::CC_SERVICE_SPECIFIC_UNITS, 0, units),
    }
}

/// Builds the CCA for `request` from the engine's `answer`.
pub fn answer(
    request: &Message,
    ccr: &CreditControl,
    answer: &Answer,
    origin_host: &str,
    origin_realm: &str,
) -> Message {
    let mut cca = request.answer();
    cca.avps.push(Avp::utf8(code::SESSION_ID, 0, &ccr.session_id));
    cca.avps.push(Avp::u32(code::RESULT_CODE, 0, result_code(&answer.outcome)));
    cca.avps.push(Avp::utf8(code::ORIGIN_HOST, 0, origin_host));
    cca.avps.push(Avp::utf8(code::ORIGIN_REALM, 0, origin_realm));
    cca.avps.push(Avp::u32(code::AUTH_APPLICATION_ID, 0, APPLICATION_CREDIT_CONTROL));
    cca.avps.push(Avp::u32(code::CC_REQUEST_TYPE, 0, ccr.request_type));
    cca.avps.push(Avp::u32(code::CC_REQUEST_NUMBER, 0, ccr.request_number));
    match &answer.body {
        Body::Session { grants } => {
            for (grant, (_, kind, _)) in grants.iter().zip(&ccr.units) {
                let mut members = Vec::new();
                if grant.rating_group != 0 {
                    members.push(Avp::u32(code::RATING_GROUP, 0, grant.rating_group));
                }
                if grant.granted_units > 0 {
                    members.push(Avp::grouped(code::GRANTED_SERVICE_UNIT, 0, &[unit_avp(*kind, grant.granted_units)]));
                    members.push(Avp::u32(code::VALIDITY_TIME, 0, grant.validity_seconds));
                }
                members.push(Avp::u32(code::RESULT_CODE, 0, result_code(&grant.outcome)));
                if grant.final_unit {
                    // Final-Unit-Action TERMINATE (0).
                    members.push(Avp::grouped(
                        code::FINAL_UNIT_INDICATION,
                        0,
                        &[Avp::u32(code::FINAL_UNIT_ACTION, 0, 0)],
                    ));
                }
                cca.avps.push(Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, &members));
            }
        }
        Body::Charged(charged) if ccr.request_type == 4 => {
            if let Some((_, kind, _)) = ccr.units.first() {
                cca.avps.push(Avp::grouped(code::GRANTED_SERVICE_UNIT, 0, &[unit_avp(*kind, charged.charged_units)]));
            }
            cca.avps.push(cost_information(charged.amount, &charged.currency));
        }
        Body::Balance(view) => {
            // Check-Balance-Result: ENOUGH_CREDIT (0) or NO_CREDIT (1).
            let enough = view.available > rust_decimal::Decimal::ZERO;
            cca.avps.push(Avp::u32(code::CHECK_BALANCE_RESULT, 0, if enough { 0 } else { 1 }));
        }
        _ => {}
    }
    cca.add_proxy_info(request);
    cca
}

/// Cost-Information (RFC 4006 §8.7): Unit-Value (digits and exponent) and Currency-Code.
fn cost_information(amount: rust_decimal::Decimal, currency: &str) -> Avp {
    let digits = i64::try_from(amount.mantissa()).unwrap_or(i64::MAX);
    let exponent = -(amount.scale() as i32);
    let unit_value = Avp::grouped(
        code::UNIT_VALUE,
        0,
        &[
            Avp::new(code::VALUE_DIGITS, 0, digits.to_be_bytes().to_vec()),
            Avp::new(code::EXPONENT, 0, exponent.to_be_bytes().to_vec()),
        ],
    );
    Avp::grouped(code::COST_INFORMATION, 0, &[unit_value, Avp::u32(code::CURRENCY_CODE, 0, iso4217_numeric(currency))])
}

/// ISO 4217 numeric code of the currencies plans commonly use (0 when unknown).
fn iso4217_numeric(currency: &str) -> u32 {
    match currency {
        "EUR" => 978,
        "USD" => 840,
        "GBP" => 826,
        "CHF" => 756,
        "JPY" => 392,
        "SEK" => 752,
        "NOK" => 578,
        "DKK" => 208,
        "PLN" => 985,
        "CZK" => 203,
        "INR" => 356,
        "ZAR" => 710,
        _ => 0,
    }
}

/// An answer for a CCR that could not be served.
pub fn refusal_answer(request: &Message, refusal: &Refusal, origin_host: &str, origin_realm: &str) -> Message {
    let mut cca = request.answer();
    if let Some(session) = request.avp(code::SESSION_ID, 0) {
        cca.avps.push(session.clone());
    }
    cca.avps.push(Avp::u32(code::RESULT_CODE, 0, refusal.result_code));
    cca.avps.push(Avp::utf8(code::ORIGIN_HOST, 0, origin_host));
    cca.avps.push(Avp::utf8(code::ORIGIN_REALM, 0, origin_realm));
    cca.avps.push(Avp::u32(code::AUTH_APPLICATION_ID, 0, APPLICATION_CREDIT_CONTROL));
    for avp in [code::CC_REQUEST_TYPE, code::CC_REQUEST_NUMBER] {
        if let Some(found) = request.avp(avp, 0) {
            cca.avps.push(found.clone());
        }
    }
    if !refusal.message.is_empty() {
        cca.avps.push(Avp { flags: 0, ..Avp::utf8(code::ERROR_MESSAGE, 0, &refusal.message) });
    }
    if let Some(failed) = &refusal.failed_avp {
        cca.avps.push(Avp::new(code::FAILED_AVP, 0, failed.clone()));
    }
    cca.add_proxy_info(request);
    cca
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn called_party_addresses_become_digits() {
        assert_eq!(address_digits("tel:+49-30-123456").as_deref(), Some("4930123456"));
        assert_eq!(address_digits("sip:+491701234567@ims.example;user=phone").as_deref(), Some("491701234567"));
        assert_eq!(address_digits("+12125550100").as_deref(), Some("12125550100"));
        assert_eq!(address_digits("sip:alice@example.com"), None);
    }

    #[test]
    fn service_contexts_imply_services() {
        assert_eq!(service_for_context("32260@3gpp.org"), Some("voice"));
        assert_eq!(service_for_context("16.32274@3gpp.org"), Some("sms"));
        assert_eq!(service_for_context("example@operator"), None);
    }
}
