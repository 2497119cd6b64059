//! A bounded BER (ITU-T X.690) tag-length-value reader over a byte slice: definite and
//! indefinite lengths, multi-byte tags, a depth limit, and errors that name the byte
//! offset. Plus the TS 29.002 / TS 32.298 primitive encodings CDRs use (TBCD strings,
//! address strings, 9-octet time stamps, integers).

/// Deepest nesting of constructed values accepted.
pub const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Universal,
    Application,
    Context,
    Private,
}

/// One decoded element. `value` borrows the content octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub class: Class,
    pub constructed: bool,
    pub tag: u32,
    /// Offset of the element's first byte in the outermost buffer.
    pub offset: usize,
    pub value: &'a [u8],
    /// Offset of `value` in the outermost buffer.
    pub value_offset: usize,
    /// Bytes of the whole element (header, content and end-of-contents).
    pub len: usize,
}

impl Tlv<'_> {
    pub fn is_context(&self, tag: u32) -> bool {
        self.class == Class::Context && self.tag == tag
    }
}

/// Reads the element at `bytes[0..]`; `base` is the offset of `bytes` in the outermost
/// buffer (for messages). Errors name the offset.
pub fn read(bytes: &[u8], base: usize) -> Result<Tlv<'_>, String> {
    read_at_depth(bytes, base, 0)
}

fn read_at_depth(bytes: &[u8], base: usize, depth: usize) -> Result<Tlv<'_>, String> {
    if depth > MAX_DEPTH {
        return Err(format!("byte {base}: nested deeper than {MAX_DEPTH}"));
    }
    let first = *bytes.first().ok_or_else(|| format!("byte {base}: element expected, data ended"))?;
    let class = match first >> 6 {
        0 => Class::Universal,
        1 => Class::Application,
        2 => Class::Context,
        _ => Class::Private,
    };
    let constructed = first & 0x20 != 0;
    let mut at = 1;
    let mut tag = u32::from(first & 0x1f);
    if tag == 0x1f {
        tag = 0;
        loop {
            let b = *bytes.get(at).ok_or_else(|| format!("byte {}: tag runs past the data", base + at))?;
            at += 1;
            if tag > (u32::MAX >> 7) {
                return Err(format!("byte {base}: tag number too large"));
            }
            tag = (tag << 7) | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    let length_byte = *bytes.get(at).ok_or_else(|| format!("byte {}: length expected, data ended", base + at))?;
    at += 1;
    if length_byte == 0x80 {
        // Indefinite length: constructed only, content ends with two zero octets.
        if !constructed {
            return Err(format!("byte {base}: indefinite length on a primitive element"));
        }
        let start = at;
        loop {
            if bytes.get(at..at + 2) == Some(&[0, 0]) {
                let value = &bytes[start..at];
                return Ok(Tlv {
                    class,
                    constructed,
                    tag,
                    offset: base,
                    value,
                    value_offset: base + start,
                    len: at + 2,
                });
            }
            if at >= bytes.len() {
                return Err(format!("byte {base}: indefinite-length element has no end-of-contents"));
            }
            let child = read_at_depth(&bytes[at..], base + at, depth + 1)?;
            at += child.len;
        }
    }
    let length = if length_byte & 0x80 == 0 {
        usize::from(length_byte)
    } else {
        let count = usize::from(length_byte & 0x7f);
        if count > 4 {
            return Err(format!("byte {}: length of {count} octets is not supported", base + at - 1));
        }
        let octets =
            bytes.get(at..at + count).ok_or_else(|| format!("byte {}: length octets run past the data", base + at))?;
        at += count;
        octets.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b))
    };
    let end = at.checked_add(length).filter(|end| *end <= bytes.len()).ok_or_else(|| {
        format!("byte {base}: element of {length} bytes runs past the data ({} left)", bytes.len() - at)
    })?;
    Ok(Tlv { class, constructed, tag, offset: base, value: &bytes[at..end], value_offset: base + at, len: end })
}

/// The elements inside a constructed value, in order.
pub fn children<'a>(parent: &Tlv<'a>) -> Children<'a> {
    Children { bytes: parent.value, base: parent.value_offset, at: 0 }
}

#[derive(Debug, Clone)]
pub struct Children<'a> {
    bytes: &'a [u8],
    base: usize,
    at: usize,
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<Tlv<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.bytes.len() {
            return None;
        }
        match read(&self.bytes[self.at..], self.base + self.at) {
            Ok(tlv) => {
                self.at += tlv.len;
                Some(Ok(tlv))
            }
            Err(err) => {
                self.at = self.bytes.len();
                Some(Err(err))
            }
        }
    }
}

/// A non-negative INTEGER of at most 8 content octets.
pub fn unsigned(tlv: &Tlv<'_>) -> Result<u64, String> {
    let v = tlv.value;
    if v.is_empty() || v.len() > 9 || (v.len() == 9 && v[0] != 0) || v[0] & 0x80 != 0 {
        return Err(format!("byte {}: not a non-negative integer of at most 64 bits", tlv.offset));
    }
    Ok(v.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
}

/// TBCD digits (TS 29.002): two digits per octet, low nibble first, 0xF filler.
pub fn tbcd(bytes: &[u8], offset: usize) -> Result<String, String> {
    let mut out = String::with_capacity(bytes.len() * 2);
    for (i, b) in bytes.iter().enumerate() {
        for (n, nibble) in [b & 0x0f, b >> 4].into_iter().enumerate() {
            match nibble {
                0..=9 => out.push(char::from(b'0' + nibble)),
                0x0f if i + 1 == bytes.len() && n == 1 => {}
                _ => return Err(format!("byte {}: {nibble:#x} is not a TBCD digit", offset + i)),
            }
        }
    }
    if out.is_empty() {
        return Err(format!("byte {offset}: empty digit string"));
    }
    Ok(out)
}

/// An AddressString / ISDN-AddressString (TS 29.002): one octet of nature of address and
/// numbering plan, then TBCD digits.
pub fn address(tlv: &Tlv<'_>) -> Result<String, String> {
    match tlv.value.split_first() {
        Some((_, digits)) => tbcd(digits, tlv.value_offset + 1),
        None => Err(format!("byte {}: empty address", tlv.offset)),
    }
}

/// A TS 32.298 TimeStamp: 9 octets, BCD `YYMMDDhhmmss`, then `+`/`-` and BCD `hhmm` of
/// the offset from UTC. Returns Unix seconds (years 2000–2099).
pub fn timestamp(tlv: &Tlv<'_>) -> Result<i64, String> {
    let v = tlv.value;
    let bad = |what: &str| format!("byte {}: time stamp {what}", tlv.offset);
    if v.len() != 9 {
        return Err(bad(&format!("of {} octets, not 9", v.len())));
    }
    let bcd = |b: u8| -> Result<i32, String> {
        if b >> 4 > 9 || b & 15 > 9 {
            return Err(bad("has a digit that is not BCD"));
        }
        Ok(i32::from(b >> 4) * 10 + i32::from(b & 15))
    };
    let sign = match v[6] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err(bad("has no offset sign")),
    };
    let civil = jiff::civil::DateTime::new(
        (2000 + bcd(v[0])?) as i16,
        bcd(v[1])? as i8,
        bcd(v[2])? as i8,
        bcd(v[3])? as i8,
        bcd(v[4])? as i8,
        bcd(v[5])? as i8,
        0,
    )
    .map_err(|_| bad("is not a valid date and time"))?;
    let offset_seconds = sign * (bcd(v[7])? * 3600 + bcd(v[8])? * 60);
    if offset_seconds.abs() > 18 * 3600 {
        return Err(bad("has an offset beyond 18 hours"));
    }
    let local = jiff::tz::TimeZone::UTC.to_timestamp(civil).map_err(|_| bad("is out of range"))?.as_second();
    Ok(local - i64::from(offset_seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_definite_indefinite_and_long_tags() {
        // [79] constructed, long-form tag, definite length, holding [3] 2 octets.
        let bytes = [0xbf, 0x4f, 0x04, 0x83, 0x02, 0x12, 0x34];
        let tlv = read(&bytes, 0).expect("element");
        assert_eq!((tlv.class, tlv.constructed, tlv.tag, tlv.len), (Class::Context, true, 79, 7));
        let child = children(&tlv).next().expect("child").expect("ok");
        assert_eq!((child.tag, child.value, child.value_offset), (3, &[0x12, 0x34][..], 5));
        let indefinite = [0xa1, 0x80, 0x80, 0x01, 0x05, 0x00, 0x00];
        let tlv = read(&indefinite, 10).expect("indefinite");
        assert_eq!(tlv.len, 7);
        assert_eq!(unsigned(&children(&tlv).next().expect("child").expect("ok")), Ok(5));
    }

    #[test]
    fn refuses_what_runs_past_the_data_naming_the_offset() {
        for (bytes, expected) in [
            (&[0x30, 0x05, 0x01][..], "byte 100: element of 5 bytes"),
            (&[0x1f][..], "tag runs past"),
            (&[0x30, 0x85, 0, 0, 0, 0, 1][..], "length of 5 octets"),
            (&[0x30, 0x80, 0x01, 0x01][..], "runs past"),
            (&[0x04, 0x80][..], "indefinite length on a primitive"),
        ] {
            let err = read(bytes, 100).expect_err("refused");
            assert!(err.contains(expected), "{bytes:?}: {err}");
        }
    }

    #[test]
    fn decodes_tbcd_addresses_and_time_stamps() {
        assert_eq!(tbcd(&[0x62, 0x02, 0x01], 0), Ok("262010".to_owned()));
        assert_eq!(tbcd(&[0x62, 0x02, 0xf1], 0), Ok("26201".to_owned()));
        assert!(tbcd(&[0x6a], 0).is_err());
        let msisdn = [0x91, 0x94, 0x71, 0x00, 0x00, 0x00, 0x10];
        let tlv = Tlv {
            class: Class::Context,
            constructed: false,
            tag: 22,
            offset: 0,
            value: &msisdn,
            value_offset: 2,
            len: 9,
        };
        assert_eq!(address(&tlv), Ok("491700000001".to_owned()));
        // 2026-03-02 11:00:00 +01:00 = 10:00:00 UTC.
        let stamp = [0x26, 0x03, 0x02, 0x11, 0x00, 0x00, b'+', 0x01, 0x00];
        let tlv = Tlv {
            class: Class::Context,
            constructed: false,
            tag: 13,
            offset: 0,
            value: &stamp,
            value_offset: 2,
            len: 11,
        };
        assert_eq!(timestamp(&tlv), Ok(1_772_445_600));
    }
}
