//! Alarms forwarded to an operator's fault manager as SNMPv2c traps (RFC 3416
//! `SNMPv2-Trap-PDU` in an RFC 1901 community message over UDP), described by
//! `TOLLGATE-ALARM-MIB.txt` beside this crate.
//!
//! The BER encoder is written by hand (see the README for why): definite lengths (short
//! form below 128 bytes, long form above), minimal two's-complement integers, OIDs in
//! base 128. A trap carries `sysUpTime.0`, `snmpTrapOID.0` (one notification per change:
//! raised, changed, cleared, acknowledged), then the alarm's objects, each `.0`.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use crate::alarm::{AckState, Alarm, AlarmState, Change};
use crate::AlarmError;

/// The enterprise arc: 32473 is IANA's Private Enterprise Number reserved for
/// documentation (RFC 5612); an operator with its own number changes it here and in the
/// MIB.
pub const ENTERPRISE: &[u32] = &[1, 3, 6, 1, 4, 1, 32473];
/// `tollgateAlarmMIB`: `ENTERPRISE.1`.
pub const MIB: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1];
/// The largest trap sent, in bytes (a UDP datagram every receiver takes).
pub const MAX_TRAP_BYTES: usize = 1472;
/// The longest text in a trap: the MIB's `DisplayString` (`SIZE (0..255)`). Longer texts
/// are cut at a character boundary, so every trap of a valid alarm fits `MAX_TRAP_BYTES`.
pub const MAX_TEXT_BYTES: usize = 255;

const SYS_UP_TIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
const SNMP_TRAP_OID: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];

/// A variable binding's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Integer(i64),
    Text(String),
    /// `Unsigned32` / `Gauge32` (`[APPLICATION 2]`).
    Unsigned(u32),
    /// `TimeTicks` (`[APPLICATION 3]`), hundredths of a second.
    TimeTicks(u32),
    Oid(Vec<u32>),
}

/// The notification OID of a change (`tollgateAlarmNotifications.N`), if it is sent.
pub fn notification(change: Change) -> Option<Vec<u32>> {
    let number = match change {
        Change::Raised => 1,
        Change::Updated => 2,
        Change::Cleared => 3,
        Change::Acknowledged | Change::Unacknowledged => 4,
        Change::Repeated | Change::Unchanged => return None,
    };
    Some([MIB, &[0, number]].concat())
}

/// `tollgateAlarmObjects.N.0`.
fn object(number: u32) -> Vec<u32> {
    [MIB, &[1, number, 0]].concat()
}

/// The alarm's objects as the MIB lists them.
pub fn varbinds(alarm: &Alarm) -> Vec<(Vec<u32>, Value)> {
    let report = &alarm.report;
    let state = match alarm.state {
        AlarmState::Raised => 1,
        AlarmState::Updated => 2,
        AlarmState::Cleared => 3,
    };
    let ack = match alarm.ack_state {
        AckState::Acknowledged => 1,
        AckState::Unacknowledged => 2,
    };
    let seconds = |ms: i64| Value::Unsigned(u32::try_from(ms.div_euclid(1000)).unwrap_or(0));
    let text = |text: &str| Value::Text(display_string(text).to_owned());
    vec![
        (object(1), Value::Text(alarm.id.to_string())),
        (object(2), text(&report.alarmed_object)),
        (object(3), text(&report.alarmed_object_type)),
        (object(4), text(report.alarm_type.as_str())),
        (object(5), Value::Integer(alarm.severity().itu_number())),
        (object(6), text(&report.probable_cause)),
        (object(7), text(&report.specific_problem)),
        (object(8), Value::Integer(state)),
        (object(9), Value::Integer(ack)),
        (object(10), seconds(alarm.raised_at_ms)),
        (object(11), seconds(alarm.changed_at_ms)),
    ]
}

/// `text` cut to at most [`MAX_TEXT_BYTES`] at a character boundary.
fn display_string(text: &str) -> &str {
    let mut end = text.len().min(MAX_TEXT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An SNMPv2c trap message: `community`, `request_id`, `uptime_ticks` (hundredths of a
/// second), the notification and its variable bindings.
pub fn encode_trap(
    community: &str,
    request_id: i32,
    uptime_ticks: u32,
    trap: &[u32],
    bindings: &[(Vec<u32>, Value)],
) -> Result<Vec<u8>, AlarmError> {
    let mut list = Vec::new();
    binding(&mut list, SYS_UP_TIME, &Value::TimeTicks(uptime_ticks))?;
    binding(&mut list, SNMP_TRAP_OID, &Value::Oid(trap.to_vec()))?;
    for (name, value) in bindings {
        binding(&mut list, name, value)?;
    }
    let mut pdu = Vec::new();
    integer(&mut pdu, i64::from(request_id));
    integer(&mut pdu, 0); // error-status
    integer(&mut pdu, 0); // error-index
    tlv(&mut pdu, 0x30, &list);
    let mut message = Vec::new();
    integer(&mut message, 1); // version: v2c
    tlv(&mut message, 0x04, community.as_bytes());
    tlv(&mut message, 0xa7, &pdu); // SNMPv2-Trap-PDU
    let mut out = Vec::with_capacity(message.len() + 4);
    tlv(&mut out, 0x30, &message);
    if out.len() > MAX_TRAP_BYTES {
        return Err(AlarmError::Encode(format!("{} bytes, more than {MAX_TRAP_BYTES}", out.len())));
    }
    Ok(out)
}

fn binding(out: &mut Vec<u8>, name: &[u32], value: &Value) -> Result<(), AlarmError> {
    let mut inner = Vec::new();
    oid(&mut inner, name)?;
    match value {
        Value::Integer(n) => integer(&mut inner, *n),
        Value::Text(text) => tlv(&mut inner, 0x04, text.as_bytes()),
        Value::Unsigned(n) => unsigned(&mut inner, 0x42, *n),
        Value::TimeTicks(n) => unsigned(&mut inner, 0x43, *n),
        Value::Oid(value) => oid(&mut inner, value)?,
    }
    tlv(out, 0x30, &inner);
    Ok(())
}

/// Tag, definite length, contents.
fn tlv(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
}

/// An INTEGER in the fewest two's-complement bytes.
fn integer(out: &mut Vec<u8>, n: i64) {
    let bytes = n.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (first, next) = (bytes[start], bytes[start + 1]);
        if (first == 0x00 && next & 0x80 == 0) || (first == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    tlv(out, 0x02, &bytes[start..]);
}

/// An unsigned 32-bit application type: a leading zero byte when the top bit is set.
fn unsigned(out: &mut Vec<u8>, tag: u8, n: u32) {
    let bytes = u64::from(n).to_be_bytes();
    let mut start = 3; // five bytes: room for the leading zero
    while start < 7 && bytes[start] == 0 && bytes[start + 1] & 0x80 == 0 {
        start += 1;
    }
    tlv(out, tag, &bytes[start..]);
}

fn oid(out: &mut Vec<u8>, arcs: &[u32]) -> Result<(), AlarmError> {
    let (Some(&first), Some(&second)) = (arcs.first(), arcs.get(1)) else {
        return Err(AlarmError::Encode("an OID needs at least two arcs".to_owned()));
    };
    if first > 2 || (first < 2 && second >= 40) {
        return Err(AlarmError::Encode(format!("OID starts {first}.{second}")));
    }
    let mut contents = Vec::with_capacity(arcs.len() + 4);
    base128(&mut contents, u64::from(first) * 40 + u64::from(second));
    for &arc in &arcs[2..] {
        base128(&mut contents, u64::from(arc));
    }
    tlv(out, 0x06, &contents);
    Ok(())
}

fn base128(out: &mut Vec<u8>, n: u64) {
    let mut groups = [0u8; 10];
    let mut count = 0;
    let mut rest = n;
    loop {
        groups[count] = (rest & 0x7f) as u8;
        count += 1;
        rest >>= 7;
        if rest == 0 {
            break;
        }
    }
    for at in (0..count).rev() {
        out.push(groups[at] | if at > 0 { 0x80 } else { 0 });
    }
}

/// Sends traps to one receiver over UDP.
#[derive(Debug)]
pub struct TrapSender {
    socket: UdpSocket,
    target: SocketAddr,
    community: String,
    started: Instant,
    next_request: AtomicI32,
}

impl TrapSender {
    /// A sender to `target` (`host:162` usually) with `community`.
    pub fn new(target: SocketAddr, community: &str) -> Result<TrapSender, AlarmError> {
        crate::alarm::check_text("community", community, 64)?;
        let local: SocketAddr = if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let socket =
            UdpSocket::bind(local).map_err(|source| AlarmError::Send { target: target.to_string(), source })?;
        Ok(TrapSender {
            socket,
            target,
            community: community.to_owned(),
            started: Instant::now(),
            next_request: AtomicI32::new(1),
        })
    }

    /// Sends the trap of `change` to `alarm`; a change that notifies nothing (a repeat)
    /// sends nothing. Returns whether a trap was sent.
    pub fn send(&self, alarm: &Alarm, change: Change) -> Result<bool, AlarmError> {
        let Some(trap) = notification(change) else { return Ok(false) };
        let ticks = u32::try_from(self.started.elapsed().as_millis() / 10).unwrap_or(u32::MAX);
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let bytes = encode_trap(&self.community, request_id, ticks, &trap, &varbinds(alarm))?;
        self.socket
            .send_to(&bytes, self.target)
            .map_err(|source| AlarmError::Send { target: self.target.to_string(), source })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out);
        out
    }

    #[test]
    fn integers_take_the_fewest_twos_complement_bytes() {
        for (n, bytes) in [
            (0, vec![0x02, 1, 0x00]),
            (127, vec![0x02, 1, 0x7f]),
            (128, vec![0x02, 2, 0x00, 0x80]),
            (-1, vec![0x02, 1, 0xff]),
            (-129, vec![0x02, 2, 0xff, 0x7f]),
            (256, vec![0x02, 2, 0x01, 0x00]),
        ] {
            assert_eq!(encoded(|out| integer(out, n)), bytes, "{n}");
        }
        assert_eq!(encoded(|out| unsigned(out, 0x43, 0x8000_0000)), vec![0x43, 5, 0, 0x80, 0, 0, 0]);
        assert_eq!(encoded(|out| unsigned(out, 0x42, 5)), vec![0x42, 1, 5]);
    }

    #[test]
    fn oids_and_long_lengths_encode_as_x690_says() {
        // 1.3.6.1.4.1.32473 → 2b 06 01 04 01 81 fd 59 (32473 = 0x7ed9 → 0x81 0xfd 0x59).
        let bytes = encoded(|out| oid(out, ENTERPRISE).expect("accepted"));
        assert_eq!(bytes, vec![0x06, 8, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x81, 0xfd, 0x59]);
        let long = encoded(|out| tlv(out, 0x04, &[7u8; 300]));
        assert_eq!(long[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert!(oid(&mut Vec::new(), &[1, 40]).is_err());
        assert!(oid(&mut Vec::new(), &[1]).is_err());
    }

    #[test]
    fn texts_longer_than_a_display_string_are_cut_at_a_character_boundary_and_the_trap_fits() {
        // 254 ASCII bytes then a 2-byte character: cut before it, at 254.
        let problem = format!("{}é and more", "x".repeat(254));
        assert_eq!(display_string(&problem).len(), 254);
        assert_eq!(display_string("short"), "short");
        let longest = "y".repeat(crate::alarm::MAX_NAME_BYTES);
        let mut report =
            crate::alarm::tests::report(crate::PerceivedSeverity::Major, &"z".repeat(crate::alarm::MAX_TEXT_BYTES));
        report.alarmed_object.clone_from(&longest);
        report.alarmed_object_type.clone_from(&longest);
        report.probable_cause = longest;
        let alarm = Alarm::raised(i64::MAX, report, 0);
        let bindings = varbinds(&alarm);
        assert_eq!(bindings[6].1, Value::Text("z".repeat(MAX_TEXT_BYTES)));
        let trap = encode_trap("public", i32::MAX, u32::MAX, &[1, 3, 6, 1, 4, 1, 32473, 1, 0, 1], &bindings);
        assert!(trap.is_ok_and(|bytes| bytes.len() <= MAX_TRAP_BYTES), "the largest valid alarm fits a datagram");
    }

    #[test]
    fn a_trap_that_would_not_fit_a_datagram_is_refused() {
        let big = vec![(object(7), Value::Text("x".repeat(MAX_TRAP_BYTES)))];
        let refused = encode_trap("public", 1, 0, &[1, 3, 6, 1], &big).expect_err("refused");
        assert!(refused.to_string().contains("more than 1472"), "{refused}");
    }
}
