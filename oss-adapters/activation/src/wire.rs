//! The activation command as one JSON document: the HTTP adapter's request body and the
//! spool adapter's command file are the same bytes (README.md, "The command document").
//! Serialized once per request, before any attempt, so every retry sends identical bytes.

use serde::Serialize;

use crate::{ActivationRequest, Operation};

/// The document's version; a gateway refuses a version it does not know.
pub const COMMAND_VERSION: u32 = 1;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Command<'a> {
    version: u32,
    request_id: &'a str,
    operation: &'static str,
    subscriber: Identities<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<Identities<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_profile: Option<Profile<'a>>,
    targets: Vec<Target<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sim: Option<Sim<'a>>,
}

#[derive(Serialize)]
struct Identities<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    msisdn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    imsi: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iccid: Option<&'a str>,
}

#[derive(Serialize)]
struct Profile<'a> {
    id: &'a str,
    characteristic: Vec<NameValue<'a>>,
}

#[derive(Serialize)]
struct NameValue<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct Target<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    address: &'a str,
}

#[derive(Serialize)]
struct Sim<'a> {
    ki: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    opc: Option<&'a str>,
}

/// The command document of `request`, as JSON bytes. It holds the SIM keys when the
/// request does: the caller keeps it out of logs and zeroes it when done.
pub(crate) fn command_json(request: &ActivationRequest) -> Vec<u8> {
    let subscriber = request.subscriber();
    let previous = match request.operation() {
        Operation::SimSwap { previous_imsi, previous_iccid } => {
            Some(Identities { msisdn: None, imsi: Some(previous_imsi.as_str()), iccid: Some(previous_iccid.as_str()) })
        }
        Operation::NumberChange { previous_msisdn } => {
            Some(Identities { msisdn: Some(previous_msisdn.as_str()), imsi: None, iccid: None })
        }
        _ => None,
    };
    let command = Command {
        version: COMMAND_VERSION,
        request_id: request.id().as_str(),
        operation: request.operation().name(),
        subscriber: Identities {
            msisdn: Some(subscriber.msisdn.as_str()),
            imsi: Some(subscriber.imsi.as_str()),
            iccid: Some(subscriber.iccid.as_str()),
        },
        previous,
        service_profile: request.profile().map(|profile| Profile {
            id: profile.id(),
            characteristic: profile
                .characteristics()
                .iter()
                .map(|c| NameValue { name: &c.name, value: &c.value })
                .collect(),
        }),
        targets: request
            .targets()
            .iter()
            .map(|t| Target { kind: t.kind().name(), id: t.id(), address: t.address() })
            .collect(),
        sim: request.sim_secrets().map(|sim| Sim { ki: sim.ki().expose(), opc: sim.opc().map(|opc| opc.expose()) }),
    };
    // Strings, numbers and sequences of them: serializing cannot fail.
    serde_json::to_vec(&command).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ElementKind, Iccid, Imsi, Msisdn, NetworkElement, RequestId, Secret, ServiceProfile, SimSecrets, Subscriber,
    };

    fn subscriber(msisdn: &str, imsi: &str, iccid: &str) -> Subscriber {
        Subscriber {
            msisdn: Msisdn::new(msisdn).expect("msisdn"),
            imsi: Imsi::new(imsi).expect("imsi"),
            iccid: Iccid::new(iccid).expect("iccid"),
        }
    }

    #[test]
    fn an_activation_with_keys_is_the_documented_document() {
        let profile = ServiceProfile::new("gold-5g").and_then(|p| p.with("apn", "internet")).ok();
        let targets = vec![
            NetworkElement::new(ElementKind::Hss, "hss-1", "hss1.example:3868").expect("hss"),
            NetworkElement::new(ElementKind::Pcrf, "pcrf-1", "pcrf1.example:3868").expect("pcrf"),
        ];
        let request = ActivationRequest::new(
            RequestId::new("order-42:item-1:activate").expect("id"),
            Operation::Activate,
            subscriber("4915112345678", "262011234567890", "89490200001234567890"),
            profile,
            targets,
        )
        .and_then(|r| {
            r.with_sim_secrets(SimSecrets::new(Secret::new("0f".repeat(16)), Some(Secret::new("a0".repeat(16))))?)
        })
        .expect("request");
        let json: serde_json::Value = serde_json::from_slice(&command_json(&request)).expect("json");
        let expected = serde_json::json!({
            "version": 1,
            "requestId": "order-42:item-1:activate",
            "operation": "activate",
            "subscriber": {"msisdn": "4915112345678", "imsi": "262011234567890", "iccid": "89490200001234567890"},
            "serviceProfile": {"id": "gold-5g", "characteristic": [{"name": "apn", "value": "internet"}]},
            "targets": [
                {"type": "HSS", "id": "hss-1", "address": "hss1.example:3868"},
                {"type": "PCRF", "id": "pcrf-1", "address": "pcrf1.example:3868"}
            ],
            "sim": {"ki": "0f".repeat(16), "opc": "a0".repeat(16)}
        });
        assert_eq!(json, expected);
    }

    #[test]
    fn a_sim_swap_and_a_number_change_carry_the_previous_identities() {
        let udm = vec![NetworkElement::new(ElementKind::Udm, "udm-1", "https://udm1.example").expect("udm")];
        let new_line = subscriber("4915112345678", "262019999999999", "89490200009999999999");
        let swap = Operation::SimSwap {
            previous_imsi: Imsi::new("262011234567890").expect("imsi"),
            previous_iccid: Iccid::new("89490200001234567890").expect("iccid"),
        };
        let request =
            ActivationRequest::new(RequestId::new("s1").expect("id"), swap, new_line.clone(), None, udm.clone())
                .expect("request");
        let json: serde_json::Value = serde_json::from_slice(&command_json(&request)).expect("json");
        assert_eq!(json["operation"], "simSwap");
        assert_eq!(json["previous"], serde_json::json!({"imsi": "262011234567890", "iccid": "89490200001234567890"}));
        assert_eq!(json["subscriber"]["imsi"], "262019999999999");
        assert!(json.get("serviceProfile").is_none() && json.get("sim").is_none());

        let change = Operation::NumberChange { previous_msisdn: Msisdn::new("4915100000000").expect("msisdn") };
        let request =
            ActivationRequest::new(RequestId::new("n1").expect("id"), change, new_line, None, udm).expect("request");
        let json: serde_json::Value = serde_json::from_slice(&command_json(&request)).expect("json");
        assert_eq!(json["operation"], "numberChange");
        assert_eq!(json["previous"], serde_json::json!({"msisdn": "4915100000000"}));
    }
}
