//! The Diameter wire format (RFC 6733 §3 and §4): messages and AVPs, decoded without
//! copying (AVP data are slices of the received buffer) and checked as the RFC asks, so a
//! malformed message gets the right Result-Code and Failed-AVP instead of a panic.
//!
//! Header (20 bytes): version (1) = 1 · message length (3) · flags (1: R P E T r r r r) ·
//! command code (3) · application id (4) · hop-by-hop id (4) · end-to-end id (4).
//! AVP: code (4) · flags (1: V M P r r r r r) · length (3, header + data, no padding) ·
//! vendor id (4, when V) · data · padding to a multiple of 4.

use bytes::{BufMut, Bytes, BytesMut};

use super::dictionary::{self, AvpType};
use super::result_code as rc;

pub const HEADER_LEN: usize = 20;
/// Largest message accepted; a longer one is refused before it is buffered.
pub const MAX_MESSAGE_LEN: usize = 1 << 20;
/// Most AVPs in one message, counting those inside groups.
pub const MAX_AVPS: usize = 4096;
/// Deepest nesting of grouped AVPs.
pub const MAX_DEPTH: usize = 8;

pub const FLAG_REQUEST: u8 = 0x80;
pub const FLAG_PROXIABLE: u8 = 0x40;
pub const FLAG_ERROR: u8 = 0x20;
pub const FLAG_RETRANSMIT: u8 = 0x10;
pub const AVP_FLAG_VENDOR: u8 = 0x80;
pub const AVP_FLAG_MANDATORY: u8 = 0x40;
pub const AVP_FLAG_PROTECTED: u8 = 0x20;

/// Why a message could not be decoded, with what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The Result-Code to answer with (e.g. 5014 DIAMETER_INVALID_AVP_LENGTH).
    pub result_code: u32,
    /// Byte offset in the message where the problem is.
    pub offset: usize,
    /// The offending AVP as received (for Failed-AVP), when there is one.
    pub failed_avp: Option<Bytes>,
    pub message: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Result-Code {} at byte {}: {}", self.result_code, self.offset, self.message)
    }
}

/// One AVP; `data` is a view of the received bytes. The V flag in `flags` says whether a
/// vendor id is on the wire (it may be there and be 0); `vendor` is 0 when it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avp {
    pub code: u32,
    pub flags: u8,
    pub vendor: u32,
    pub data: Bytes,
}

/// A whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub flags: u8,
    pub command: u32,
    pub application: u32,
    pub hop_by_hop: u32,
    pub end_to_end: u32,
    pub avps: Vec<Avp>,
}

/// What the start of a receive buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet to know.
    Incomplete,
    /// A message of this many bytes starts the buffer.
    Message(usize),
}

/// Looks at the start of a stream buffer. An error here means the stream cannot be
/// resynchronised (bad version or length): answer if possible, then close.
pub fn frame(buffer: &[u8]) -> Result<Frame, DecodeError> {
    Ok(match announced_len(buffer)? {
        Some(length) if buffer.len() >= length => Frame::Message(length),
        _ => Frame::Incomplete,
    })
}

/// The length the message starting the buffer announces, checked (version 1, 20 to
/// [`MAX_MESSAGE_LEN`] bytes, a multiple of 4) but not yet received: `None` until its
/// first 4 bytes are there. A reader sizes its buffer from it as the bytes arrive, never
/// ahead of them.
pub fn announced_len(buffer: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buffer.len() < 4 {
        return Ok(None);
    }
    if buffer[0] != 1 {
        return Err(error(rc::UNSUPPORTED_VERSION, 0, None, format!("version {} (only 1 exists)", buffer[0])));
    }
    let length = u32::from_be_bytes([0, buffer[1], buffer[2], buffer[3]]) as usize;
    if length < HEADER_LEN || !length.is_multiple_of(4) || length > MAX_MESSAGE_LEN {
        return Err(error(
            rc::INVALID_MESSAGE_LENGTH,
            1,
            None,
            format!("message length {length} (20 to {MAX_MESSAGE_LEN}, a multiple of 4)"),
        ));
    }
    Ok(Some(length))
}

fn error(result_code: u32, offset: usize, failed_avp: Option<Bytes>, message: String) -> DecodeError {
    DecodeError { result_code, offset, failed_avp, message }
}

impl Message {
    /// Decodes one whole message (as delimited by [`frame`]).
    pub fn decode(bytes: Bytes) -> Result<Message, DecodeError> {
        match frame(&bytes)? {
            Frame::Message(length) if length == bytes.len() => {}
            _ => {
                return Err(error(
                    rc::INVALID_MESSAGE_LENGTH,
                    1,
                    None,
                    format!("{} bytes do not hold one message", bytes.len()),
                ))
            }
        }
        let flags = bytes[4];
        if flags & 0x0f != 0 || (flags & FLAG_ERROR != 0 && flags & FLAG_REQUEST != 0) {
            return Err(error(rc::INVALID_HDR_BITS, 4, None, format!("command flags {flags:#04x}")));
        }
        let word = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let command = word(4) & 0x00ff_ffff;
        let mut count = 0;
        let avps = decode_avps(&bytes, HEADER_LEN, bytes.len(), &mut count)?;
        Ok(Message { flags, command, application: word(8), hop_by_hop: word(12), end_to_end: word(16), avps })
    }

    pub fn is_request(&self) -> bool {
        self.flags & FLAG_REQUEST != 0
    }

    pub fn is_retransmission(&self) -> bool {
        self.flags & FLAG_RETRANSMIT != 0
    }

    /// The first top-level AVP with this code and vendor.
    pub fn avp(&self, code: u32, vendor: u32) -> Option<&Avp> {
        self.avps.iter().find(|a| a.code == code && a.vendor == vendor)
    }

    /// Every top-level AVP with this code and vendor.
    pub fn avps(&self, code: u32, vendor: u32) -> impl Iterator<Item = &Avp> {
        self.avps.iter().filter(move |a| a.code == code && a.vendor == vendor)
    }

    /// An answer to this request: same command, application and identifiers; R cleared,
    /// P kept (RFC 6733 §6.2).
    pub fn answer(&self) -> Message {
        Message {
            flags: self.flags & FLAG_PROXIABLE,
            command: self.command,
            application: self.application,
            hop_by_hop: self.hop_by_hop,
            end_to_end: self.end_to_end,
            avps: Vec::new(),
        }
    }

    /// Appends `request`'s Proxy-Info AVPs, in their order, as copies (RFC 6733 §6.2 step
    /// 4: an answer carries every Proxy-Info of its request, so the stateless agents that
    /// added them can route it back).
    pub fn add_proxy_info(&mut self, request: &Message) {
        for avp in request.avps.iter().filter(|avp| avp.code == dictionary::code::PROXY_INFO && avp.vendor == 0) {
            self.avps.push(Avp { data: Bytes::copy_from_slice(&avp.data), ..avp.clone() });
        }
    }

    /// The first AVP with the M bit that the dictionary does not know (RFC 6733 §4.1: the
    /// whole message is refused with 5001): at the top level any, inside the grouped AVPs
    /// the dictionary knows an IETF one (vendor 0: RFC 6733 and RFC 4006 define every
    /// member of their groups, all in the dictionary). A vendor's members of a group are
    /// let through: 3GPP adds them to MSCC and Service-Information release by release
    /// with the M bit, and a gateway of a later release must still be served. Found
    /// inside a group, it comes wrapped in its enclosing groups, each holding only the
    /// offending member (§7.5: the Failed-AVP of a grouped AVP's member).
    pub fn unknown_mandatory(&self) -> Option<Avp> {
        unknown_mandatory_in(&self.avps, true)
    }

    pub fn encode(&self) -> Bytes {
        let length = HEADER_LEN + self.avps.iter().map(Avp::padded_len).sum::<usize>();
        let mut out = BytesMut::with_capacity(length);
        out.put_u32((1 << 24) | length as u32);
        out.put_u32((u32::from(self.flags) << 24) | (self.command & 0x00ff_ffff));
        out.put_u32(self.application);
        out.put_u32(self.hop_by_hop);
        out.put_u32(self.end_to_end);
        for avp in &self.avps {
            avp.encode_into(&mut out);
        }
        out.freeze()
    }
}

/// Decodes the AVPs in `bytes[start..end]`. The members of every AVP the dictionary
/// knows as Grouped are checked as well, however deep (within [`MAX_DEPTH`]), and count
/// towards [`MAX_AVPS`]; they are not kept ([`Avp::group`] decodes them when asked). So a
/// message that decodes holds no malformed group anywhere, and a lying length or a nesting
/// too deep inside a group is answered like one at the top level.
fn decode_avps(bytes: &Bytes, start: usize, end: usize, count: &mut usize) -> Result<Vec<Avp>, DecodeError> {
    let mut avps = Vec::new();
    let mut at = start;
    while at < end {
        let (avp, data_at, next) = decode_avp(bytes, at, end, count)?;
        check_members(bytes, &avp, at, data_at, 1, count)?;
        avps.push(avp);
        at = next;
    }
    Ok(avps)
}

/// Checks the members of `avp` (at `at`, its data at `data_at`) when it is grouped;
/// `depth` is its own level (1: top level). Recursion is bounded by [`MAX_DEPTH`]: a
/// grouped AVP at that level must be empty.
fn check_members(
    bytes: &Bytes,
    avp: &Avp,
    at: usize,
    data_at: usize,
    depth: usize,
    count: &mut usize,
) -> Result<(), DecodeError> {
    if avp.data.is_empty() || avp.definition().is_none_or(|def| def.kind != AvpType::Grouped) {
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        // Failed-AVP: the group without its members (they are what is wrong, and copied
        // back they would make an answer as deep as the request).
        let stub = Avp { data: Bytes::new(), ..avp.clone() };
        return Err(error(
            rc::INVALID_AVP_VALUE,
            at,
            Some(stub.encode()),
            format!("grouped AVP {} at depth {depth} has members (groups nest at most {MAX_DEPTH} deep)", avp.code),
        ));
    }
    let end = data_at + avp.data.len();
    let mut member_at = data_at;
    while member_at < end {
        let (member, member_data_at, member_next) = decode_avp(bytes, member_at, end, count)?;
        check_members(bytes, &member, member_at, member_data_at, depth + 1, count)?;
        member_at = member_next;
    }
    Ok(())
}

/// Decodes the AVP at `at` (of the AVPs ending at `end`): the AVP, where its data starts,
/// and where the next AVP starts.
fn decode_avp(bytes: &Bytes, at: usize, end: usize, count: &mut usize) -> Result<(Avp, usize, usize), DecodeError> {
    *count += 1;
    if *count > MAX_AVPS {
        return Err(error(rc::UNABLE_TO_COMPLY, at, None, format!("more than {MAX_AVPS} AVPs")));
    }
    if end - at < 8 {
        return Err(error(rc::INVALID_AVP_LENGTH, at, None, "truncated AVP header".to_owned()));
    }
    let code = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let flags = bytes[at + 4];
    let length = u32::from_be_bytes([0, bytes[at + 5], bytes[at + 6], bytes[at + 7]]) as usize;
    let header = if flags & AVP_FLAG_VENDOR != 0 { 12 } else { 8 };
    let padded = length.div_ceil(4) * 4;
    // The AVP as received, as far as it can be trusted, for Failed-AVP.
    let raw = || bytes.slice(at..(at + padded.max(header)).min(end));
    if length < header || at + length > end {
        // RFC 6733 §7.1.5: the offending AVP's header with a zero-filled payload of
        // the minimum length its type needs (a well-formed AVP the peer can parse).
        let vendor = if header == 12 && end - at >= 12 {
            u32::from_be_bytes([bytes[at + 8], bytes[at + 9], bytes[at + 10], bytes[at + 11]])
        } else {
            0
        };
        let minimum = dictionary::lookup(code, vendor).and_then(|d| d.kind.fixed_len()).unwrap_or(0);
        let stub = Avp { code, flags: flags & 0xe0, vendor, data: Bytes::from(vec![0u8; minimum]) };
        return Err(error(rc::INVALID_AVP_LENGTH, at, Some(stub.encode()), format!("AVP {code} length {length}")));
    }
    if flags & 0x1f != 0 {
        return Err(error(rc::INVALID_AVP_BITS, at + 4, Some(raw()), format!("AVP {code} flags {flags:#04x}")));
    }
    let vendor = if header == 12 {
        u32::from_be_bytes([bytes[at + 8], bytes[at + 9], bytes[at + 10], bytes[at + 11]])
    } else {
        0
    };
    let data = bytes.slice(at + header..at + length);
    if let Some(def) = dictionary::lookup(code, vendor) {
        if def.kind.fixed_len().is_some_and(|len| len != data.len()) {
            return Err(error(
                rc::INVALID_AVP_LENGTH,
                at,
                Some(raw()),
                format!("{} needs {:?} bytes of data", def.name, def.kind.fixed_len()),
            ));
        }
    }
    Ok((Avp { code, flags, vendor, data }, at + header, at + padded.min(end - at)))
}

impl Avp {
    pub fn is_mandatory(&self) -> bool {
        self.flags & AVP_FLAG_MANDATORY != 0
    }

    fn header_len(&self) -> usize {
        if self.flags & AVP_FLAG_VENDOR != 0 {
            12
        } else {
            8
        }
    }

    /// Length on the wire including padding.
    pub fn padded_len(&self) -> usize {
        (self.header_len() + self.data.len()).div_ceil(4) * 4
    }

    pub fn encode_into(&self, out: &mut BytesMut) {
        let length = self.header_len() + self.data.len();
        out.put_u32(self.code);
        out.put_u32((u32::from(self.flags) << 24) | length as u32);
        if self.flags & AVP_FLAG_VENDOR != 0 {
            out.put_u32(self.vendor);
        }
        out.put_slice(&self.data);
        out.put_bytes(0, self.padded_len() - length);
    }

    /// The whole AVP as it goes on the wire (for Failed-AVP).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.padded_len());
        self.encode_into(&mut out);
        out.freeze()
    }

    /// A mandatory AVP; the V flag is set when `vendor` is not 0.
    pub fn new(code: u32, vendor: u32, data: impl Into<Bytes>) -> Avp {
        let vendor_flag = if vendor != 0 { AVP_FLAG_VENDOR } else { 0 };
        Avp { code, flags: AVP_FLAG_MANDATORY | vendor_flag, vendor, data: data.into() }
    }

    pub fn u32(code: u32, vendor: u32, value: u32) -> Avp {
        Avp::new(code, vendor, value.to_be_bytes().to_vec())
    }

    pub fn u64(code: u32, vendor: u32, value: u64) -> Avp {
        Avp::new(code, vendor, value.to_be_bytes().to_vec())
    }

    pub fn utf8(code: u32, vendor: u32, value: &str) -> Avp {
        Avp::new(code, vendor, value.as_bytes().to_vec())
    }

    pub fn grouped(code: u32, vendor: u32, children: &[Avp]) -> Avp {
        let mut data = BytesMut::with_capacity(children.iter().map(Avp::padded_len).sum());
        for child in children {
            child.encode_into(&mut data);
        }
        Avp::new(code, vendor, data.freeze())
    }

    pub fn as_u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(&self.data[..]).ok().map(u32::from_be_bytes)
    }

    pub fn as_i32(&self) -> Option<i32> {
        <[u8; 4]>::try_from(&self.data[..]).ok().map(i32::from_be_bytes)
    }

    pub fn as_u64(&self) -> Option<u64> {
        <[u8; 8]>::try_from(&self.data[..]).ok().map(u64::from_be_bytes)
    }

    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }

    /// The members of a grouped AVP, checked like top-level AVPs.
    pub fn group(&self) -> Result<Vec<Avp>, DecodeError> {
        let mut count = 0;
        decode_avps(&self.data, 0, self.data.len(), &mut count).map_err(|mut err| {
            // Report the enclosing AVP when the member cannot be isolated.
            if err.failed_avp.is_none() {
                err.failed_avp = Some(self.encode());
            }
            err
        })
    }

    /// Whether the dictionary knows this AVP.
    pub fn definition(&self) -> Option<&'static dictionary::AvpDef> {
        dictionary::lookup(self.code, self.vendor)
    }

    /// For a known AVP whose type has a text form, whether its data is valid UTF-8.
    pub fn has_valid_text(&self) -> bool {
        match self.definition().map(|d| d.kind) {
            Some(AvpType::Utf8String | AvpType::DiameterIdentity | AvpType::DiameterUri) => self.as_str().is_some(),
            _ => true,
        }
    }
}

/// Finds the first AVP with `code`/`vendor` in a list (e.g. members of a group).
pub fn find(avps: &[Avp], code: u32, vendor: u32) -> Option<&Avp> {
    avps.iter().find(|a| a.code == code && a.vendor == vendor)
}

/// [`Message::unknown_mandatory`] of a list of AVPs.
fn unknown_mandatory_in(avps: &[Avp], top: bool) -> Option<Avp> {
    for avp in avps {
        match avp.definition() {
            None if avp.is_mandatory() && (top || avp.vendor == 0) => {
                return Some(Avp { data: Bytes::copy_from_slice(&avp.data), ..avp.clone() })
            }
            Some(definition) if definition.kind == AvpType::Grouped => {
                // A group that does not decode is refused where it is read, naming itself.
                if let Some(inner) = avp.group().ok().and_then(|members| unknown_mandatory_in(&members, false)) {
                    return Some(Avp::grouped(avp.code, avp.vendor, &[inner]));
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diameter::dictionary::code;
    use proptest::prelude::*;

    fn ccr() -> Message {
        Message {
            flags: FLAG_REQUEST | FLAG_PROXIABLE,
            command: 272,
            application: 4,
            hop_by_hop: 0x1122_3344,
            end_to_end: 0x5566_7788,
            avps: vec![
                Avp::utf8(code::SESSION_ID, 0, "gw.example;1;42"),
                Avp::u32(code::CC_REQUEST_TYPE, 0, 1),
                Avp::grouped(
                    code::MULTIPLE_SERVICES_CREDIT_CONTROL,
                    0,
                    &[
                        Avp::u32(code::RATING_GROUP, 0, 10),
                        Avp::grouped(code::REQUESTED_SERVICE_UNIT, 0, &[Avp::u64(code::CC_TOTAL_OCTETS, 0, 1 << 20)]),
                    ],
                ),
                Avp::utf8(code::CALLED_PARTY_ADDRESS, dictionary::VENDOR_3GPP, "tel:+491701234567"),
            ],
        }
    }

    #[test]
    fn a_message_round_trips_with_padding_and_vendor_avps() {
        let message = ccr();
        let bytes = message.encode();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(frame(&bytes), Ok(Frame::Message(bytes.len())));
        let decoded = Message::decode(bytes).expect("decodes");
        assert_eq!(decoded.avps.len(), 4);
        assert_eq!(decoded.avp(code::SESSION_ID, 0).and_then(Avp::as_str), Some("gw.example;1;42"));
        let mscc = decoded.avp(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0).expect("mscc").group().expect("group");
        assert_eq!(find(&mscc, code::RATING_GROUP, 0).and_then(Avp::as_u32), Some(10));
        let rsu = find(&mscc, code::REQUESTED_SERVICE_UNIT, 0).expect("rsu").group().expect("group");
        assert_eq!(find(&rsu, code::CC_TOTAL_OCTETS, 0).and_then(Avp::as_u64), Some(1 << 20));
        assert_eq!(
            decoded.avp(code::CALLED_PARTY_ADDRESS, dictionary::VENDOR_3GPP).and_then(Avp::as_str),
            Some("tel:+491701234567")
        );
        assert_eq!(decoded.encode(), message.encode());
    }

    #[test]
    fn malformed_input_gets_the_right_result_code() {
        let good = ccr().encode().to_vec();
        let check = |bytes: Vec<u8>, expected: u32| {
            let result = frame(&bytes).and_then(|f| match f {
                Frame::Message(len) => Message::decode(Bytes::from(bytes[..len].to_vec())),
                Frame::Incomplete => Err(error(0, 0, None, "incomplete".into())),
            });
            assert_eq!(result.map(|_| 0).unwrap_or_else(|e| e.result_code), expected);
        };
        let mut version = good.clone();
        version[0] = 2;
        check(version, rc::UNSUPPORTED_VERSION);
        let mut odd = good.clone();
        odd[3] = odd[3].wrapping_add(1);
        check(odd, rc::INVALID_MESSAGE_LENGTH);
        let mut bits = good.clone();
        bits[4] |= 0x01;
        check(bits, rc::INVALID_HDR_BITS);
        // First AVP (Session-Id) claims to run past the message.
        let mut avp_len = good.clone();
        avp_len[HEADER_LEN + 5] = 0xff;
        check(avp_len, rc::INVALID_AVP_LENGTH);
        // CC-Request-Type (Enumerated) with 3 data bytes instead of 4.
        let session_padded = Avp::utf8(code::SESSION_ID, 0, "gw.example;1;42").padded_len();
        let mut short = good.clone();
        short[HEADER_LEN + session_padded + 7] = 11;
        check(short, rc::INVALID_AVP_LENGTH);
        let mut avp_bits = good;
        avp_bits[HEADER_LEN + 4] |= 0x01;
        check(avp_bits, rc::INVALID_AVP_BITS);
    }

    #[test]
    fn failed_avp_carries_the_offending_avp() {
        let mut bytes = ccr().encode().to_vec();
        bytes[HEADER_LEN + 4] |= 0x02;
        let err = Message::decode(Bytes::from(bytes)).expect_err("bad AVP flags");
        let failed = err.failed_avp.expect("failed AVP");
        assert_eq!(u32::from_be_bytes([failed[0], failed[1], failed[2], failed[3]]), code::SESSION_ID);
    }

    /// `levels` Multiple-Services-Credit-Control AVPs each inside the next, a Rating-Group
    /// innermost.
    fn nested(levels: usize) -> Avp {
        let mut avp = Avp::u32(code::RATING_GROUP, 0, 1);
        for _ in 0..levels {
            avp = Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, &[avp]);
        }
        avp
    }

    fn request(avps: Vec<Avp>) -> Message {
        Message { flags: FLAG_REQUEST, command: 272, application: 4, hop_by_hop: 1, end_to_end: 2, avps }
    }

    #[test]
    fn groups_nest_at_most_max_depth_deep() {
        // MAX_DEPTH − 1 groups and the Rating-Group inside them: MAX_DEPTH levels.
        assert!(Message::decode(request(vec![nested(MAX_DEPTH - 1)]).encode()).is_ok());
        let err = Message::decode(request(vec![nested(MAX_DEPTH)]).encode()).expect_err("one level too deep");
        assert_eq!(err.result_code, rc::INVALID_AVP_VALUE, "{err}");
        assert!(err.message.contains(&format!("depth {MAX_DEPTH}")), "{err}");
        // Failed-AVP is the group at the deepest level allowed, without its members.
        let failed = err.failed_avp.expect("Failed-AVP");
        assert_eq!(failed, Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, &[]).encode());
        // Far deeper than any stack could follow if it recursed without a bound.
        let err = Message::decode(request(vec![nested(10_000)]).encode()).expect_err("refused");
        assert_eq!(err.result_code, rc::INVALID_AVP_VALUE);
    }

    #[test]
    fn a_lying_length_inside_a_group_is_5014_with_the_member_as_failed_avp() {
        let mscc = Avp::grouped(
            code::MULTIPLE_SERVICES_CREDIT_CONTROL,
            0,
            &[Avp::u32(code::RATING_GROUP, 0, 10), Avp::utf8(code::SESSION_ID, 0, "abcd")],
        );
        let mut bytes = request(vec![Avp::utf8(code::SESSION_ID, 0, "s;1"), mscc]).encode().to_vec();
        // The second member (Session-Id, 12 bytes) claims 255 bytes.
        let member = HEADER_LEN + 12 + 8 + 12;
        bytes[member + 7] = 0xff;
        let err = Message::decode(Bytes::from(bytes)).expect_err("lying length");
        assert_eq!((err.result_code, err.offset), (rc::INVALID_AVP_LENGTH, member), "{err}");
        let failed = err.failed_avp.expect("Failed-AVP");
        assert_eq!(&failed[..4], &code::SESSION_ID.to_be_bytes(), "the member that lies, not its group");
        // A fixed-length member of the wrong size inside a group: 5014 too.
        let short =
            Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, &[Avp::new(code::RATING_GROUP, 0, vec![0u8; 3])]);
        let err = Message::decode(request(vec![short]).encode()).expect_err("3-byte Rating-Group");
        assert_eq!(err.result_code, rc::INVALID_AVP_LENGTH);
    }

    #[test]
    fn avps_inside_groups_count_towards_max_avps() {
        let members: Vec<Avp> = (0..MAX_AVPS).map(|n| Avp::u32(code::RATING_GROUP, 0, n as u32)).collect();
        let err =
            Message::decode(request(vec![Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, &members)]).encode())
                .expect_err("too many AVPs");
        assert_eq!(err.result_code, rc::UNABLE_TO_COMPLY, "{err}");
        let fewer = &members[..MAX_AVPS - 1];
        assert!(Message::decode(
            request(vec![Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, fewer)]).encode()
        )
        .is_ok());
    }

    #[test]
    fn the_announced_length_is_known_from_four_bytes_and_checked() {
        assert_eq!(announced_len(&[1, 0, 0]), Ok(None));
        assert_eq!(announced_len(&[1, 0x10, 0, 0]), Ok(Some(MAX_MESSAGE_LEN)));
        let err = announced_len(&[1, 0x10, 0, 4]).expect_err("past MAX_MESSAGE_LEN");
        assert_eq!(err.result_code, rc::INVALID_MESSAGE_LENGTH);
        assert_eq!(frame(&[1, 0x10, 0, 0, 0]), Ok(Frame::Incomplete));
    }

    /// Found by the fuzzer: the V flag with vendor id 0 must survive a round trip.
    #[test]
    fn vendor_flag_with_vendor_zero_round_trips() {
        let avp = Avp { code: 999, flags: AVP_FLAG_VENDOR, vendor: 0, data: Bytes::from_static(b"abcd") };
        let message = Message {
            flags: FLAG_REQUEST,
            command: 272,
            application: 4,
            hop_by_hop: 1,
            end_to_end: 2,
            avps: vec![avp],
        };
        let decoded = Message::decode(message.encode()).expect("decodes");
        assert_eq!(decoded, message);
        assert_eq!(decoded.encode().len(), HEADER_LEN + 16);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Frame::Message(len)) = frame(&bytes) {
                if let Ok(message) = Message::decode(Bytes::from(bytes[..len].to_vec())) {
                    for avp in &message.avps {
                        let _ = avp.group();
                    }
                }
            }
        }

        #[test]
        fn encode_then_decode_is_identity(
            values in proptest::collection::vec((1u32..5000, any::<u32>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..20),
            hop in any::<u32>(),
        ) {
            let avps: Vec<Avp> = values
                .into_iter()
                .map(|(code, vendor, data)| (code, vendor % 3 * 10415, data))
                // Keep clear of dictionary AVPs (by code *and* vendor), whose data length is checked.
                .filter(|(code, vendor, _)| dictionary::lookup(*code, *vendor).is_none())
                .map(|(code, vendor, data)| Avp::new(code, vendor, data))
                .collect();
            let message = Message { flags: FLAG_REQUEST, command: 272, application: 4, hop_by_hop: hop, end_to_end: 7, avps };
            let decoded = Message::decode(message.encode()).expect("decodes");
            prop_assert_eq!(decoded.encode(), message.encode());
            prop_assert_eq!(decoded.avps.len(), message.avps.len());
        }
    }
}
