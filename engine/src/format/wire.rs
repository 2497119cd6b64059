//! The primitives of the engine's compact byte formats (compact charges, compact
//! effects): LEB128 varints, zigzag integers and compact decimals, and a reader whose
//! every error names the byte offset.

use rust_decimal::Decimal;

pub(crate) fn varint(out: &mut Vec<u8>, value: u64) {
    leb128(out, u128::from(value));
}

/// LEB128: 7 bits a byte, low first, the high bit set on every byte but the last.
pub(crate) fn leb128(out: &mut Vec<u8>, mut value: u128) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(crate) fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

pub(crate) fn unzigzag(value: u64) -> i64 {
    (value >> 1) as i64 ^ -((value & 1) as i64)
}

pub(crate) fn decimal(out: &mut Vec<u8>, value: Decimal) {
    let sign = if value.is_sign_negative() { 0x80 } else { 0 };
    out.push(sign | value.scale() as u8);
    leb128(out, value.mantissa().unsigned_abs());
}

pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Reader<'a> {
    /// A charges payload's header, either layout: when it was decided and how many
    /// charges follow, refused when that many charges of at least `min_bytes` each
    /// cannot fit in the payload.
    pub(crate) fn charges_header(&mut self, min_bytes: usize) -> Result<(i64, usize), String> {
        let decided_at = self.u64()? as i64;
        let count = self.u32()? as usize;
        if count > self.bytes.len() / min_bytes {
            return Err(format!("charge count {count} does not fit in {} bytes", self.bytes.len()));
        }
        Ok((decided_at, count))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len());
        match end {
            Some(end) => {
                let out = &self.bytes[self.at..end];
                self.at = end;
                Ok(out)
            }
            None => Err(format!("record ends at byte {} inside a field of {n} bytes", self.bytes.len())),
        }
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, String> {
        self.array().map(u16::from_le_bytes)
    }
    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }
    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }
    pub(crate) fn u128(&mut self) -> Result<u128, String> {
        self.array().map(u128::from_le_bytes)
    }
    pub(crate) fn varint(&mut self) -> Result<u64, String> {
        let at = self.at;
        self.leb128(64)?
            .and_then(|value| u64::try_from(value).ok())
            .ok_or_else(|| format!("varint at byte {at} is longer than 64 bits"))
    }

    /// A LEB128 number ([`leb128`]); `None` when it has more than `bits` bits.
    pub(crate) fn leb128(&mut self, bits: u32) -> Result<Option<u128>, String> {
        let mut value = 0u128;
        for shift in (0..bits).step_by(7) {
            let byte = self.u8()?;
            value |= u128::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> bits == 0).then_some(value));
            }
        }
        Ok(None)
    }

    /// A varint that must fit `T`; `what` names the field in the error.
    pub(crate) fn narrow<T: TryFrom<u64>>(&mut self, what: &str) -> Result<T, String> {
        let at = self.at;
        let value = self.varint()?;
        T::try_from(value).map_err(|_| format!("{what} {value} at byte {at} is out of range"))
    }

    pub(crate) fn compact_decimal(&mut self) -> Result<Decimal, String> {
        let at = self.at;
        let head = self.u8()?;
        let scale = u32::from(head & 0x7f);
        // At most 96 bits, so the magnitude fits an i128.
        let magnitude = self.leb128(96)?.ok_or_else(|| format!("decimal at byte {at} is longer than 96 bits"))? as i128;
        let signed = if head & 0x80 != 0 { -magnitude } else { magnitude };
        Decimal::try_from_i128_with_scale(signed, scale)
            .map_err(|_| format!("decimal at byte {at} is out of range (scale {scale})"))
    }

    pub(crate) fn decimal(&mut self) -> Result<Decimal, String> {
        let at = self.at;
        let bytes: [u8; 16] = self.array()?;
        // `deserialize` accepts any bytes; a scale beyond 28 marks a damaged record.
        if bytes[2] > 28 {
            return Err(format!("decimal at byte {at} has scale {}", bytes[2]));
        }
        Ok(Decimal::deserialize(bytes))
    }
}
