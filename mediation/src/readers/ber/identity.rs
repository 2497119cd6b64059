//! What makes a TS 32.298 record itself: its identity, taken from the CDR's own
//! identifying fields, never from its bytes, so that a CDR delivered again (in another
//! file, re-encoded with other optional fields or record extensions, its SET fields in
//! another order, its times written with another UTC offset) is the same record. Each
//! identifying field has its slot, empty when the CDR lacks it; numbers are written in
//! decimal, octet strings in hex, node addresses as the IP address they encode, times as
//! Unix seconds. Every usage event of a CDR adds its container (the container's local
//! sequence number, else `#` and its position in the record) and always ends with the
//! subscriber it is charged to (see `RecordIdentityText`).
//!
//! | record (outer tag) | identity |
//! |---|---|
//! | PGW-CDR `[79]` | `pgw:p-GWAddress[4]:nodeID[18]:chargingID[5]:recordSequenceNumber[17]:localSequenceNumber[20]:CONTAINER:SUBSCRIBER`; CONTAINER: `listOfServiceData[34]` entry's `localSequenceNumber[4]`, else `#`position |
//! | SGW-CDR `[78]` | `sgw:s-GWAddress[4]:nodeID[18]:chargingID[5]:recordSequenceNumber[17]:localSequenceNumber[20]:#POSITION:SUBSCRIBER` (a `listOfTrafficVolumes[12]` entry has no sequence number) |
//! | MOC `[0]` | `moc:recordingEntity[9]:mSCAddress[39]:callReference[32]:sequenceNumber[33]:TIME:SUBSCRIBER`; TIME: `seizureTime[22]`, else `answerTime[23]` |
//! | CHF-CDR `[200]` | `chf:recordingNetworkFunctionID[1]:chargingID[27]:pDUSessionChargingInformation[13].pDUSessionChargingID[0]:chargingSessionIdentifier[16]:recordSequenceNumber[8]:localRecordSequenceNumber[11]:CONTAINER:SUBSCRIBER`; CONTAINER: the used-unit container's `localSequenceNumber[9]`, else `#`position |
//! | fallback | `cdr:DIGEST:#POSITION:SUBSCRIBER` (XXH3-128 of the CDR's bytes, as in the record id `cdr:DIGEST/POSITION`) |
//!
//! A record falls back to the digest of its bytes only when it lacks what tells it from
//! another record of its node: a PGW/SGW-CDR without `chargingID` and without
//! `localSequenceNumber`, a MOC without `callReference`, a CHF-CDR without any of its
//! session identifiers and without `localRecordSequenceNumber` (a record sequence number
//! alone restarts with every session). Those fields are mandatory or nearly always
//! present; a fallback record is still found again when the very same bytes come back.
//!
//! The tags are those of `records.rs`, checked against pycrate 0.8.1's compiled
//! `GPRSChargingDataTypes` and `CSChargingDataTypes` modules, and for the CHF-CDR against
//! `CHFChargingDataTypes.asn` (TS 32.298 Rel-16 text) in pycrate's repository; see
//! `tests/mediation/BER-LAYOUT.md`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tollgate_engine::Identity;

use super::records::{find, number, time_field};
use super::tlv::{self, Class, Tlv};
use crate::event::RecordIdentityText;

/// The record-level part of a CDR's identity; each usage event adds its container and
/// its subscriber ([`CdrIdentity::event`]).
#[derive(Debug, Clone)]
pub struct CdrIdentity {
    text: RecordIdentityText,
    /// Built from the digest of the CDR's bytes: containers are told apart by position.
    by_digest: bool,
}

impl CdrIdentity {
    /// The identity of the usage event from the container at `position` (0-based, over the
    /// whole record), with the container's own local sequence number if it has one.
    pub fn event(&self, local_sequence: Option<u64>, position: usize, subscriber: &Identity) -> String {
        let mut text = self.text.clone();
        match local_sequence {
            Some(sequence) if !self.by_digest => text.number(Some(sequence)),
            _ => text.text(Some(&format!("#{position}"))),
        };
        text.finish(subscriber)
    }

    /// The identity of a record's one usage event (a MOC record has no containers).
    pub fn record(&self, subscriber: &Identity) -> String {
        if self.by_digest {
            return self.event(None, 0, subscriber);
        }
        self.text.clone().finish(subscriber)
    }

    /// The fallback: `cdr:DIGEST`.
    pub fn digest(digest: &str) -> CdrIdentity {
        let mut text = RecordIdentityText::new("cdr");
        text.text(Some(digest));
        CdrIdentity { text, by_digest: true }
    }
}

/// PGW-CDR (`kind` "pgw") or SGW-CDR ("sgw"): both give the gateway's address at `[4]`
/// and the same identifying fields.
pub fn gprs(kind: &str, fields: &[Tlv<'_>], digest: &str) -> Result<CdrIdentity, String> {
    let charging_id = number(fields, 5, "chargingID")?;
    let local_sequence = number(fields, 20, "localSequenceNumber")?;
    if charging_id.is_none() && local_sequence.is_none() {
        return Ok(CdrIdentity::digest(digest));
    }
    let node = find(fields, 4).map(|f| node_address(&f)).transpose()?;
    let mut text = RecordIdentityText::new(kind);
    text.text(node.as_deref())
        .text(ia5(fields, 18).as_deref())
        .number(charging_id)
        .number(number(fields, 17, "recordSequenceNumber")?)
        .number(local_sequence);
    Ok(CdrIdentity { text, by_digest: false })
}

/// MOC record: the MSC that recorded the call, its call reference (unique per MSC for a
/// while, then reused, hence the time), the partial record's sequence number.
pub fn moc(fields: &[Tlv<'_>], digest: &str) -> Result<CdrIdentity, String> {
    let Some(call_reference) = find(fields, 32) else {
        return Ok(CdrIdentity::digest(digest));
    };
    let time = match time_field(fields, 22, "seizureTime")? {
        Some(seized) => Some(seized),
        None => time_field(fields, 23, "answerTime")?,
    };
    let mut text = RecordIdentityText::new("moc");
    text.text(find(fields, 9).map(|f| address(&f)).as_deref())
        .text(find(fields, 39).map(|f| address(&f)).as_deref())
        .text(Some(&hex(call_reference.value)))
        .number(number(fields, 33, "sequenceNumber")?)
        .text(time.map(|t| t.to_string()).as_deref());
    Ok(CdrIdentity { text, by_digest: false })
}

/// CHF-CDR: the CHF that wrote it, the session's identifiers, the record's sequence
/// numbers.
pub fn chf(fields: &[Tlv<'_>], digest: &str) -> Result<CdrIdentity, String> {
    let charging_id = number(fields, 27, "chargingID")?;
    let pdu_session_charging_id = match find(fields, 13) {
        Some(information) if information.constructed => {
            let information = tlv::children(&information).collect::<Result<Vec<_>, _>>()?;
            number(&information, 0, "pDUSessionChargingID")?
        }
        _ => None,
    };
    let session = find(fields, 16).map(|f| hex(f.value));
    let local_sequence = number(fields, 11, "localRecordSequenceNumber")?;
    if charging_id.is_none() && pdu_session_charging_id.is_none() && session.is_none() && local_sequence.is_none() {
        return Ok(CdrIdentity::digest(digest));
    }
    let mut text = RecordIdentityText::new("chf");
    text.text(ia5(fields, 1).as_deref())
        .number(charging_id)
        .number(pdu_session_charging_id)
        .text(session.as_deref())
        .number(number(fields, 8, "recordSequenceNumber")?)
        .number(local_sequence);
    Ok(CdrIdentity { text, by_digest: false })
}

/// An IA5String field as text (`None` when absent or empty).
fn ia5(fields: &[Tlv<'_>], tag: u32) -> Option<String> {
    find(fields, tag).filter(|f| !f.value.is_empty()).map(|f| String::from_utf8_lossy(f.value).into_owned())
}

/// An AddressString as its digits, or in hex when its digits are not plain TBCD.
fn address(field: &Tlv<'_>) -> String {
    tlv::address(field).unwrap_or_else(|_| hex(field.value))
}

fn hex(bytes: &[u8]) -> String {
    crate::readers::hex_prefix(bytes, usize::MAX)
}

/// A `GSNAddress` (an `IPAddress`: an untagged CHOICE, so the field's tag wraps the
/// alternative's): `iPBinV4Address [0]`, `iPBinV6Address [1]`, `iPBinV6AddressWithPrefix
/// [4]`, `iPTextV4Address [2]` or `iPTextV6Address [3]`, written as the address's text so
/// a binary and a text encoding of one node agree (an IPv4-mapped IPv6 address as IPv4).
/// An alternative not known here is written in hex.
fn node_address(field: &Tlv<'_>) -> Result<String, String> {
    let inner = if field.constructed {
        match tlv::children(field).next() {
            Some(inner) => inner?,
            None => return Ok(String::new()),
        }
    } else {
        // An encoder that left out the wrapping: the address's octets as they are.
        *field
    };
    let binary = |octets: &[u8]| -> Option<IpAddr> {
        match octets.len() {
            4 => Some(IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))),
            16 => <[u8; 16]>::try_from(octets).ok().map(|o| Ipv6Addr::from(o).to_canonical()),
            _ => None,
        }
    };
    let address = match (inner.class, inner.tag, inner.constructed) {
        (Class::Context, 2 | 3, false) => {
            let text = String::from_utf8_lossy(inner.value);
            match text.trim().parse::<IpAddr>() {
                Ok(ip) => Some(ip.to_canonical()),
                Err(_) => return Ok(text.into_owned()),
            }
        }
        (Class::Context, 4, true) => {
            // IPBinV6AddressWithPrefixLength ::= SEQUENCE { OCTET STRING, prefix length }
            match tlv::children(&inner).next() {
                Some(octets) => binary(octets?.value),
                None => None,
            }
        }
        (_, _, false) => binary(inner.value),
        _ => None,
    };
    Ok(address.map_or_else(|| hex(inner.value), |ip| ip.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(bytes: &[u8]) -> String {
        node_address(&tlv::read(bytes, 0).expect("element")).expect("address")
    }

    #[test]
    fn a_node_address_is_the_same_whichever_way_it_is_encoded() {
        // [4] wrapping iPBinV4Address [0]: 10.0.0.1
        assert_eq!(node(&[0xa4, 0x06, 0x80, 0x04, 10, 0, 0, 1]), "10.0.0.1");
        // iPTextV4Address [2]
        assert_eq!(node(&[0xa4, 0x0a, 0x82, 0x08, b'1', b'0', b'.', b'0', b'.', b'0', b'.', b'1']), "10.0.0.1");
        // iPBinV6Address [1] holding the IPv4-mapped ::ffff:10.0.0.1
        let mut v6 = vec![0xa4, 0x12, 0x81, 0x10];
        v6.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1]);
        assert_eq!(node(&v6), "10.0.0.1");
        // iPBinV6AddressWithPrefix [4]: 2001:db8::1 / 64
        let mut prefixed = vec![0xa4, 0x17, 0xa4, 0x15, 0x04, 0x10, 0x20, 0x01, 0x0d, 0xb8];
        prefixed.extend_from_slice(&[0; 11]);
        prefixed.extend_from_slice(&[1, 0x02, 0x01, 64]);
        assert_eq!(node(&prefixed), "2001:db8::1");
        // iPTextV6Address [3] in another spelling of the same address
        let text = b"2001:0DB8:0:0:0:0:0:1";
        let mut spelled = vec![0xa4, (text.len() + 2) as u8, 0x83, text.len() as u8];
        spelled.extend_from_slice(text);
        assert_eq!(node(&spelled), "2001:db8::1");
        // no wrapping at all
        assert_eq!(node(&[0x84, 0x04, 10, 0, 0, 1]), "10.0.0.1");
    }
}
