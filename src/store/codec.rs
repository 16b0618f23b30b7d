//! The record codec: every stored record is one leading format-version byte followed by the record's
//! `postcard` encoding, in clear ([`FORMAT_VERSION`]) or sealed by the caller ([`SEALED_VERSION`]).
//! Old versions stay decodable by matching on the byte; a newer one is refused rather than misread.
//!
//! The codec knows no keys: a sealed record's caller passes the function that seals or opens it, so
//! the store stays below the crypto and the domain.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

/// The format written today for records that hold nothing a client chose.
pub const FORMAT_VERSION: u8 = 1;

/// A record whose `postcard` encoding is sealed as a whole: for records that hold bytes a client chose
/// (ciphertexts, public keys, labels), so the database file holds none of them, not even as ciphertext.
pub const SEALED_VERSION: u8 = 2;

pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let out = vec![FORMAT_VERSION];
    // Serialising our own plain data types into a Vec cannot fail: postcard errors only on sequences
    // of unknown length and writer failures, neither of which we have.
    match postcard::to_extend(record, out) {
        Ok(bytes) => bytes,
        Err(err) => unreachable!("postcard encoding into a Vec failed: {err}"),
    }
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, body)) => body_of(body),
        Some((&SEALED_VERSION, _)) => {
            Err(StoreError::Corrupt("a sealed record was read without its key".into()))
        }
        Some((version, _)) => Err(StoreError::Corrupt(format!("unknown record format version {version}"))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}

/// [`encode`], with the encoding sealed by `seal` (which must be undone by the `open` given to
/// [`decode_sealed`]).
pub fn encode_sealed<T: Serialize>(record: &T, seal: impl FnOnce(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let plain = encode(record);
    let sealed = seal(&plain[1..]);
    let mut out = Vec::with_capacity(1 + sealed.len());
    out.push(SEALED_VERSION);
    out.extend_from_slice(&sealed);
    out
}

/// Decodes a record written by [`encode_sealed`], opening it with `open`, or one written in clear by
/// [`encode`] before its kind was sealed (old databases stay readable).
pub fn decode_sealed<T: DeserializeOwned>(
    bytes: &[u8],
    open: impl FnOnce(&[u8]) -> Result<Vec<u8>, StoreError>,
) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&SEALED_VERSION, sealed)) => body_of(&open(sealed)?),
        _ => decode(bytes),
    }
}

fn body_of<T: DeserializeOwned>(body: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(body).map_err(|err| StoreError::Corrupt(format!("record body: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        name: String,
        at: u64,
        tags: Vec<Option<u32>>,
    }

    #[test]
    fn records_round_trip_with_a_version_byte() {
        let sample = Sample { name: "x".into(), at: 7, tags: vec![Some(1), None] };
        let bytes = encode(&sample);
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample);
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        let mut bytes = encode(&Sample { name: "x".into(), at: 7, tags: vec![] });
        bytes[0] = 99;
        assert!(matches!(decode::<Sample>(&bytes), Err(StoreError::Corrupt(_))));
        assert!(matches!(decode::<Sample>(&[]), Err(StoreError::Corrupt(_))));
        assert!(matches!(decode::<Sample>(&[FORMAT_VERSION, 0xff]), Err(StoreError::Corrupt(_))));
    }

    fn xor(bytes: &[u8]) -> Vec<u8> {
        bytes.iter().map(|b| b ^ 0x5a).collect()
    }

    #[test]
    fn sealed_records_round_trip_and_records_in_clear_still_decode() {
        let sample = Sample { name: "distinctive".into(), at: 7, tags: vec![Some(1)] };
        let sealed = encode_sealed(&sample, xor);
        assert_eq!(sealed[0], SEALED_VERSION);
        assert!(!sealed.windows(11).any(|w| w == b"distinctive"));
        assert_eq!(decode_sealed::<Sample>(&sealed, |b| Ok(xor(b))).unwrap(), sample);
        // An old record, written before its kind was sealed, decodes without being opened.
        let clear = encode(&sample);
        let opened = decode_sealed::<Sample>(&clear, |_| Err(StoreError::Corrupt("not sealed".into())));
        assert_eq!(opened.unwrap(), sample);
        // A sealed record that fails to open, or is read as a record in clear, is an error.
        let refused = decode_sealed::<Sample>(&sealed, |_| Err(StoreError::Corrupt("wrong key".into())));
        assert!(matches!(refused, Err(StoreError::Corrupt(_))));
        assert!(matches!(decode::<Sample>(&sealed), Err(StoreError::Corrupt(_))));
    }
}
