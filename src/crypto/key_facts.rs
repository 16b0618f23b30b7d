//! What the team clients show about a registered key (`team.md` §4.3 `gpgkey`): its algorithm family,
//! size, first user id and creation time. Read from an already validated public key; a pure function.

use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, PublicParams};

/// The `gpgkey` facts of one key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyFacts {
    /// `RSA`, `DSA`, `ECDSA` or `EdDSA` (Passbolt's names), else `ECC`.
    pub kind: String,
    /// Modulus size for RSA and DSA; 256 for Curve25519 and the NIST P-256 keys, and so on.
    pub bits: u32,
    /// The first user id, as text.
    pub uid: String,
    /// The primary key's creation time, Unix seconds.
    pub created: u64,
}

/// The facts of an armored public key; `None` when it does not parse.
pub fn key_facts(armored: &str) -> Option<KeyFacts> {
    let (key, _) = SignedPublicKey::from_string(armored).ok()?;
    let primary = &key.primary_key;
    let params = primary.public_params();
    let kind = match primary.algorithm() {
        PublicKeyAlgorithm::RSA | PublicKeyAlgorithm::RSAEncrypt | PublicKeyAlgorithm::RSASign => "RSA",
        PublicKeyAlgorithm::DSA => "DSA",
        PublicKeyAlgorithm::ECDSA => "ECDSA",
        PublicKeyAlgorithm::EdDSALegacy | PublicKeyAlgorithm::Ed25519 | PublicKeyAlgorithm::Ed448 => "EdDSA",
        _ => "ECC",
    };
    let bits = match params {
        // The first MPI (the modulus, or DSA's p) leads the serialised parameters with its bit count.
        PublicParams::RSA(_) | PublicParams::DSA(_) => {
            let mut out = Vec::new();
            params.to_writer(&mut out).ok()?;
            u32::from(u16::from_be_bytes([*out.first()?, *out.get(1)?]))
        }
        PublicParams::Ed448(_) | PublicParams::X448(_) => 448,
        PublicParams::ECDSA(_)
        | PublicParams::ECDH(_)
        | PublicParams::EdDSALegacy(_)
        | PublicParams::Ed25519(_) => match params {
            PublicParams::ECDSA(p) => match p {
                pgp::types::EcdsaPublicParams::P384 { .. } => 384,
                pgp::types::EcdsaPublicParams::P521 { .. } => 521,
                _ => 256,
            },
            _ => 256,
        },
        _ => 0,
    };
    let uid = key
        .details
        .users
        .first()
        .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
        .unwrap_or_default();
    Some(KeyFacts { kind: kind.to_owned(), bits, uid, created: u64::from(primary.created_at().as_secs()) })
}
