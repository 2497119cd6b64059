//! TS 32.298 records → usage events. Only the fields rating needs, and those that
//! identify a record (`identity.rs`), are read; every other element is skipped by its
//! length, so records of later releases with more fields still decode. Tags are the context-specific tags of the ASN.1 modules (checked
//! against pycrate's compiled `GPRSChargingDataTypes` and `CSChargingDataTypes`; the
//! CHF-CDR's are our transcription of the Rel-16 `CHFChargingDataTypes` text,
//! `tests/mediation/chf-subset.asn`; see `tests/mediation/BER-LAYOUT.md`).

use tollgate_engine::{Identity, ServiceRef};

use super::identity::{self, CdrIdentity};
use super::tlv::{self, Tlv};
use crate::event::UsageRecord;

/// The record types read, by the context tag of their CHOICE alternative.
pub mod tags {
    /// `GPRSRecord.sGWRecord`.
    pub const SGW_RECORD: u32 = 78;
    /// `GPRSRecord.pGWRecord`.
    pub const PGW_RECORD: u32 = 79;
    /// `CallEventRecord.moCallRecord`.
    pub const MO_CALL_RECORD: u32 = 0;
    /// `CHFRecord.chargingFunctionRecord`.
    pub const CHF_RECORD: u32 = 200;
}

/// Most usage events taken from one CDR (containers per record).
pub const MAX_EVENTS_PER_CDR: usize = 256;

/// Decodes one CDR into its usage events. `digest` names the CDR's bytes: its events'
/// record ids are `cdr:{digest}/{n}`, and a record without identifying fields is
/// identified by it (`identity.rs`). The error names the field and byte offset.
pub fn decode(cdr: &[u8], base: usize, digest: &str) -> Result<Vec<UsageRecord>, String> {
    let record = tlv::read(cdr, base)?;
    if record.len != cdr.len() {
        return Err(format!("byte {}: {} bytes after the record", base + record.len, cdr.len() - record.len));
    }
    if record.class != tlv::Class::Context || !record.constructed {
        return Err(format!("byte {base}: not a CDR (tag class {:?}, number {})", record.class, record.tag));
    }
    match record.tag {
        tags::PGW_RECORD => pgw(&record, digest),
        tags::SGW_RECORD => sgw(&record, digest),
        tags::MO_CALL_RECORD => moc(&record, digest),
        tags::CHF_RECORD => chf(&record, digest),
        other => Err(format!("byte {base}: record type [{other}] is not read by this build")),
    }
}

/// The fields of a constructed value by context tag (the last one wins).
fn fields<'a>(parent: &Tlv<'a>) -> Result<Vec<Tlv<'a>>, String> {
    tlv::children(parent).collect()
}

pub(super) fn find<'a>(fields: &[Tlv<'a>], tag: u32) -> Option<Tlv<'a>> {
    fields.iter().rev().find(|f| f.is_context(tag)).copied()
}

fn required<'a>(fields: &[Tlv<'a>], tag: u32, name: &str, at: usize) -> Result<Tlv<'a>, String> {
    find(fields, tag).ok_or_else(|| format!("record at byte {at}: field `{name}` [{tag}] missing"))
}

/// The subscriber: MSISDN when present, else IMSI.
fn subscriber(fields: &[Tlv<'_>], msisdn_tag: u32, imsi_tag: u32, at: usize) -> Result<Identity, String> {
    if let Some(msisdn) = find(fields, msisdn_tag) {
        return tlv::address(&msisdn).map(Identity::Msisdn).map_err(|e| format!("field `servedMSISDN`: {e}"));
    }
    if let Some(imsi) = find(fields, imsi_tag) {
        return tlv::tbcd(imsi.value, imsi.value_offset)
            .map(Identity::Imsi)
            .map_err(|e| format!("field `servedIMSI`: {e}"));
    }
    Err(format!("record at byte {at}: neither servedMSISDN [{msisdn_tag}] nor servedIMSI [{imsi_tag}]"))
}

pub(super) fn time_field(fields: &[Tlv<'_>], tag: u32, name: &str) -> Result<Option<i64>, String> {
    find(fields, tag).map(|t| tlv::timestamp(&t).map_err(|e| format!("field `{name}`: {e}"))).transpose()
}

pub(super) fn number(fields: &[Tlv<'_>], tag: u32, name: &str) -> Result<Option<u64>, String> {
    find(fields, tag).map(|t| tlv::unsigned(&t).map_err(|e| format!("field `{name}`: {e}"))).transpose()
}

fn limit(events: &[UsageRecord], at: usize) -> Result<(), String> {
    if events.len() >= MAX_EVENTS_PER_CDR {
        return Err(format!("record at byte {at}: more than {MAX_EVENTS_PER_CDR} containers"));
    }
    Ok(())
}

/// PGW-CDR: one data event per `listOfServiceData` container (rating group, uplink +
/// downlink volume, from `timeOfFirstUsage` or the record's opening time).
fn pgw(record: &Tlv<'_>, digest: &str) -> Result<Vec<UsageRecord>, String> {
    let at = record.offset;
    let f = fields(record)?;
    let subscriber = subscriber(&f, 22, 3, at)?;
    let identity = identity::gprs("pgw", &f, digest)?;
    let opened = time_field(&f, 13, "recordOpeningTime")?
        .ok_or_else(|| format!("record at byte {at}: field `recordOpeningTime` [13] missing"))?;
    let list = required(&f, 34, "listOfServiceData", at)?;
    let mut events = Vec::new();
    for container in tlv::children(&list) {
        let container = container?;
        limit(&events, at)?;
        let c = fields(&container)?;
        let rating_group = number(&c, 1, "ratingGroup")?
            .ok_or_else(|| format!("container at byte {}: field `ratingGroup` [1] missing", container.offset))?;
        let uplink = number(&c, 12, "datavolumeFBCUplink")?.unwrap_or(0);
        let downlink = number(&c, 13, "datavolumeFBCDownlink")?.unwrap_or(0);
        let start = time_field(&c, 5, "timeOfFirstUsage")?.unwrap_or(opened);
        let container = Container { local_sequence: number(&c, 4, "localSequenceNumber")?, position: events.len() };
        let event =
            data_event(&identity, digest, container, &subscriber, Some(rating_group), start, (uplink, downlink), at)?;
        events.push(event);
    }
    Ok(events)
}

/// SGW-CDR: one data event per `listOfTrafficVolumes` container, on the plan's `data`
/// service (an SGW reports no rating group).
fn sgw(record: &Tlv<'_>, digest: &str) -> Result<Vec<UsageRecord>, String> {
    let at = record.offset;
    let f = fields(record)?;
    let subscriber = subscriber(&f, 22, 3, at)?;
    let identity = identity::gprs("sgw", &f, digest)?;
    let opened = time_field(&f, 13, "recordOpeningTime")?
        .ok_or_else(|| format!("record at byte {at}: field `recordOpeningTime` [13] missing"))?;
    let list = required(&f, 12, "listOfTrafficVolumes", at)?;
    let mut events = Vec::new();
    for container in tlv::children(&list) {
        let container = container?;
        limit(&events, at)?;
        let c = fields(&container)?;
        let uplink = number(&c, 3, "dataVolumeGPRSUplink")?.unwrap_or(0);
        let downlink = number(&c, 4, "dataVolumeGPRSDownlink")?.unwrap_or(0);
        let container = Container { local_sequence: None, position: events.len() };
        events.push(data_event(&identity, digest, container, &subscriber, None, opened, (uplink, downlink), at)?);
    }
    Ok(events)
}

/// Where a usage event sits in its CDR: its container's own local sequence number, if
/// any, and its position among the record's events.
#[derive(Debug, Clone, Copy)]
struct Container {
    local_sequence: Option<u64>,
    position: usize,
}

#[allow(clippy::too_many_arguments)]
fn data_event(
    identity: &CdrIdentity,
    digest: &str,
    container: Container,
    subscriber: &Identity,
    rating_group: Option<u64>,
    start: i64,
    (uplink, downlink): (u64, u64),
    at: usize,
) -> Result<UsageRecord, String> {
    let rating_group = rating_group
        .map(|rg| u32::try_from(rg).map_err(|_| format!("record at byte {at}: rating group {rg} too large")))
        .transpose()?;
    let units = uplink.checked_add(downlink).ok_or_else(|| format!("record at byte {at}: volume overflows"))?;
    Ok(UsageRecord {
        record_id: format!("cdr:{digest}/{}", container.position).into(),
        record_identity: identity.event(container.local_sequence, container.position, subscriber),
        subscriber: subscriber.clone(),
        service: match rating_group {
            Some(rg) => ServiceRef::RatingGroup(rg),
            None => ServiceRef::Name("data".into()),
        },
        rating_group,
        destination: None,
        start_utc_seconds: start,
        units,
    })
}

/// MOC record: one voice event (called number, answer or seizure time, call duration).
fn moc(record: &Tlv<'_>, digest: &str) -> Result<Vec<UsageRecord>, String> {
    let at = record.offset;
    let f = fields(record)?;
    let subscriber = subscriber(&f, 3, 1, at)?;
    let identity = identity::moc(&f, digest)?;
    let called = required(&f, 5, "calledNumber", at)?;
    let destination = tlv::address(&called).map_err(|e| format!("field `calledNumber`: {e}"))?;
    let start = match time_field(&f, 23, "answerTime")? {
        Some(answered) => answered,
        None => time_field(&f, 22, "seizureTime")?
            .ok_or_else(|| format!("record at byte {at}: neither answerTime [23] nor seizureTime [22]"))?,
    };
    let duration = number(&f, 25, "callDuration")?
        .ok_or_else(|| format!("record at byte {at}: field `callDuration` [25] missing"))?;
    Ok(vec![UsageRecord {
        record_id: format!("cdr:{digest}/0").into(),
        record_identity: identity.record(&subscriber),
        subscriber,
        service: ServiceRef::Name("voice".into()),
        rating_group: None,
        destination: Some(destination.into()),
        start_utc_seconds: start,
        units: duration,
    }])
}

/// CHF-CDR: one event per used-unit container of each `listOfMultipleUnitUsage` entry.
/// (pycrate 0.8.1 has no CHF module, so the sample `chf.cdr` is encoded by pycrate from
/// our hand-written subset of the Rel-16 module, `tests/mediation/chf-subset.asn`,
/// compiled by pycrate's ASN.1 compiler: the encoding is pycrate's, the tags are our
/// transcription of the spec; see `tests/mediation/BER-LAYOUT.md`.)
fn chf(record: &Tlv<'_>, digest: &str) -> Result<Vec<UsageRecord>, String> {
    let at = record.offset;
    let f = fields(record)?;
    let identifier = required(&f, 2, "subscriberIdentifier", at)?;
    let subscriber = chf_subscriber(&identifier)?;
    let identity = identity::chf(&f, digest)?;
    let opened = time_field(&f, 6, "recordOpeningTime")?
        .ok_or_else(|| format!("record at byte {at}: field `recordOpeningTime` [6] missing"))?;
    let list = required(&f, 5, "listOfMultipleUnitUsage", at)?;
    let mut events = Vec::new();
    for usage in tlv::children(&list) {
        let usage = usage?;
        let u = fields(&usage)?;
        let rating_group = number(&u, 0, "ratingGroup")?
            .ok_or_else(|| format!("unit usage at byte {}: field `ratingGroup` [0] missing", usage.offset))?;
        let Some(containers) = find(&u, 1) else { continue };
        for container in tlv::children(&containers) {
            let container = container?;
            limit(&events, at)?;
            let c = fields(&container)?;
            let start = container_start(&c, opened)?;
            let total = number(&c, 4, "dataTotalVolume")?;
            let (uplink, downlink) = match total {
                Some(total) => (total, 0),
                None => {
                    (number(&c, 5, "dataVolumeUplink")?.unwrap_or(0), number(&c, 6, "dataVolumeDownlink")?.unwrap_or(0))
                }
            };
            let container = Container { local_sequence: number(&c, 9, "localSequenceNumber")?, position: events.len() };
            let event = data_event(
                &identity,
                digest,
                container,
                &subscriber,
                Some(rating_group),
                start,
                (uplink, downlink),
                at,
            )?;
            events.push(event);
        }
    }
    Ok(events)
}

/// When a used-unit container's usage started: `pDUContainerInformation [11]` →
/// `timeOfFirstUsage [2]` when the SMF sent it; else `triggerTimeStamp [3]` (when the
/// container was closed) less the `time [1]` it covers; else the trigger time; else the
/// record's opening time.
fn container_start(c: &[Tlv<'_>], opened: i64) -> Result<i64, String> {
    if let Some(information) = find(c, 11) {
        if let Some(first) = time_field(&fields(&information)?, 2, "timeOfFirstUsage")? {
            return Ok(first);
        }
    }
    let trigger = time_field(c, 3, "triggerTimeStamp")?;
    let used = number(c, 1, "time")?;
    Ok(match (trigger, used) {
        (Some(trigger), Some(used)) => trigger.saturating_sub(i64::try_from(used).unwrap_or(i64::MAX)),
        (Some(trigger), None) => trigger,
        (None, _) => opened,
    })
}

/// `SubscriptionID ::= SET { subscriptionIDType [0] ENUMERATED, subscriptionIDData [1] UTF8String }`
/// (0: E.164, 1: IMSI, 2: SIP URI, 3: NAI).
fn chf_subscriber(identifier: &Tlv<'_>) -> Result<Identity, String> {
    let f = fields(identifier)?;
    let kind = number(&f, 0, "subscriptionIDType")?.unwrap_or(0);
    let data = required(&f, 1, "subscriptionIDData", identifier.offset)?;
    let text = std::str::from_utf8(data.value)
        .map_err(|_| format!("byte {}: subscriptionIDData is not UTF-8", data.offset))?
        .to_owned();
    match kind {
        0 => Ok(Identity::Msisdn(text.trim_start_matches("msisdn-").to_owned())),
        1 => Ok(Identity::Imsi(text.trim_start_matches("imsi-").to_owned())),
        2 => Ok(Identity::SipUri(text)),
        3 => Ok(Identity::Nai(text)),
        other => Err(format!("byte {}: subscriptionIDType {other} is not read", identifier.offset)),
    }
}
