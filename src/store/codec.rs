//! The record codec: every stored record is one leading format-version byte followed by the record's
//! `postcard` encoding. Old versions stay decodable by matching on the byte; a newer one is refused
//! rather than misread.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

/// The format written today.
pub const FORMAT_VERSION: u8 = 1;

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
        Some((&FORMAT_VERSION, body)) => {
            postcard::from_bytes(body).map_err(|err| StoreError::Corrupt(format!("record body: {err}")))
        }
        Some((version, _)) => Err(StoreError::Corrupt(format!("unknown record format version {version}"))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
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
}
