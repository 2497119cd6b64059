//! SIM keys (Ki, OPc) and how they are kept. A [`SimKey`] is 128 bits whose `Debug`,
//! `Display` and `Serialize` print `<redacted>`: it can sit in any struct that is logged or
//! serialised without leaking. At rest a key is sealed by a [`KeySealer`] (AES-256-GCM,
//! ring) under a 256-bit key from configuration (`--sim-key-file`), with a random 96-bit
//! nonce per key and the ICCID and field name as associated data, so a sealed value moved
//! to another card or field does not open. Sealed text:
//! `v1:<key id: 16 hex>:<nonce: 24 hex>:<ciphertext and tag: 64 hex>`; the key id (a hash
//! of the key, not the key) says which key sealed it.

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{InventoryError, Result};

/// What `Debug`, `Display` and `Serialize` print instead of a key.
pub const REDACTED: &str = "<redacted>";

/// A SIM's 128-bit secret (Ki or OPc).
#[derive(Clone, PartialEq, Eq)]
pub struct SimKey([u8; 16]);

impl SimKey {
    /// From 32 hex digits (either case); `None` otherwise.
    pub fn from_hex(text: &str) -> Option<SimKey> {
        let bytes = unhex(text)?;
        <[u8; 16]>::try_from(bytes.as_slice()).ok().map(SimKey)
    }

    /// The key itself, for the one place that must send it (the activation adapter).
    /// Never pass it to a log macro.
    pub fn expose(&self) -> &[u8; 16] {
        &self.0
    }

    /// The key as 32 uppercase hex digits, as HSS provisioning interfaces take it.
    pub fn expose_hex(&self) -> String {
        hex(&self.0).to_ascii_uppercase()
    }
}

impl fmt::Debug for SimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl serde::Serialize for SimKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// A SIM card's keys, opened for the activation adapter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SimKeys {
    pub ki: Option<SimKey>,
    pub opc: Option<SimKey>,
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |byte: u8| char::from(byte).to_digit(16).and_then(|value| u8::try_from(value).ok());
    text.as_bytes().chunks(2).map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

/// Seals and opens SIM keys under one 256-bit key.
pub struct KeySealer {
    key: LessSafeKey,
    id: String,
    random: SystemRandom,
}

impl fmt::Debug for KeySealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySealer").field("id", &self.id).finish_non_exhaustive()
    }
}

const FORMAT: &str = "v1";

impl KeySealer {
    /// From the key as 64 hex digits (a key file's content; surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<KeySealer> {
        let bytes = unhex(text.trim())
            .filter(|bytes| bytes.len() == 32)
            .ok_or_else(|| InventoryError::Key { reason: "the key is 64 hex digits (256 bits)".into() })?;
        let mut tagged = b"tollgate-sim-key-id\0".to_vec();
        tagged.extend_from_slice(&bytes);
        let id = hex(&digest(&SHA256, &tagged).as_ref()[..8]);
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| InventoryError::Key { reason: "AES-256-GCM refused the key".into() })?;
        Ok(KeySealer { key: LessSafeKey::new(unbound), id, random: SystemRandom::new() })
    }

    /// The key's id (16 hex digits of a hash of it): which key sealed a value.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn aad(iccid: &str, field: &str) -> Vec<u8> {
        format!("tollgate-sim-{FORMAT}\0{iccid}\0{field}").into_bytes()
    }

    /// Seals `key`, the `field` (`ki`, `opc`) of the SIM `iccid`.
    pub fn seal(&self, iccid: &str, field: &str, key: &SimKey) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| InventoryError::Key { reason: "the system random generator failed".into() })?;
        let mut sealed = key.0.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(iccid, field)),
                &mut sealed,
            )
            .map_err(|_| InventoryError::Key { reason: "sealing failed".into() })?;
        Ok(format!("{FORMAT}:{}:{}:{}", self.id, hex(&nonce), hex(&sealed)))
    }

    /// Opens what [`seal`](KeySealer::seal) made for this ICCID and field with this key.
    pub fn open(&self, iccid: &str, field: &str, sealed: &str) -> Result<SimKey> {
        let parts: Vec<&str> = sealed.split(':').collect();
        let [FORMAT, id, nonce, body] = parts.as_slice() else {
            return Err(InventoryError::Key { reason: format!("the {field} of SIM {iccid} is not a sealed value") });
        };
        if *id != self.id {
            return Err(InventoryError::Key {
                reason: format!("the {field} of SIM {iccid} was sealed with key {id}, this is key {}", self.id),
            });
        }
        let nonce = unhex(nonce)
            .and_then(|bytes| <[u8; NONCE_LEN]>::try_from(bytes.as_slice()).ok())
            .ok_or_else(|| InventoryError::Key { reason: format!("the {field} of SIM {iccid} has a bad nonce") })?;
        let mut body = unhex(body)
            .ok_or_else(|| InventoryError::Key { reason: format!("the {field} of SIM {iccid} is not hex") })?;
        let opened = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(Self::aad(iccid, field)), &mut body)
            .map_err(|_| InventoryError::Key {
                reason: format!("the {field} of SIM {iccid} does not open: altered, or sealed for another card"),
            })?;
        <[u8; 16]>::try_from(&*opened)
            .map(SimKey)
            .map_err(|_| InventoryError::Key { reason: format!("the {field} of SIM {iccid} is not 128 bits") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_key_never_shows_in_debug_display_or_json() {
        let key = SimKey::from_hex("00112233445566778899AABBCCDDEEFF").expect("a key");
        assert_eq!(format!("{key:?}"), REDACTED);
        assert_eq!(format!("{key}"), REDACTED);
        let keys = SimKeys { ki: Some(key.clone()), opc: None };
        assert!(!format!("{keys:?}").contains("8899"), "{keys:?}");
        assert_eq!(serde_json::to_value(&keys).expect("json"), serde_json::json!({"ki": REDACTED, "opc": null}));
        assert_eq!(key.expose_hex(), "00112233445566778899AABBCCDDEEFF");
        for bad in ["", "0011", "00112233445566778899AABBCCDDEEFG", "00112233445566778899AABBCCDDEEFF00"] {
            assert!(SimKey::from_hex(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn sealed_keys_open_only_for_their_card_field_and_key() {
        let sealer = KeySealer::from_hex(KEY).expect("a sealer");
        let key = SimKey::from_hex("00112233445566778899aabbccddeeff").expect("a key");
        let sealed = sealer.seal("8944100000000000018", "ki", &key).expect("sealed");
        assert!(!sealed.contains("00112233"), "{sealed}");
        assert_ne!(sealed, sealer.seal("8944100000000000018", "ki", &key).expect("sealed"), "a fresh nonce each time");
        assert_eq!(sealer.open("8944100000000000018", "ki", &sealed).ok(), Some(key));
        assert!(sealer.open("8944100000000000026", "ki", &sealed).is_err(), "another card");
        assert!(sealer.open("8944100000000000018", "opc", &sealed).is_err(), "another field");
        let other = KeySealer::from_hex(&KEY.replace("1f", "20")).expect("another sealer");
        assert!(matches!(other.open("8944100000000000018", "ki", &sealed), Err(InventoryError::Key { .. })));
        let mut altered = sealed.clone();
        altered.replace_range(altered.len() - 1.., if sealed.ends_with('0') { "1" } else { "0" });
        assert!(sealer.open("8944100000000000018", "ki", &altered).is_err(), "altered");
        assert!(!format!("{sealer:?}").contains("0102"), "{sealer:?}");
        assert!(KeySealer::from_hex("abcd").is_err());
    }
}
