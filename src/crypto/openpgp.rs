//! OpenPGP input checks: is this text a usable public key, and is this text (or upload) an encrypted
//! PGP message, and to whom. The server never holds a private key and never decrypts; it only refuses
//! input that the recipient could not use or that is not ciphertext at all.
//!
//! Everything here is a pure function over bytes already in memory: no I/O, no clock (`now` is passed
//! in), and no panics on any input (fuzzed, see `fuzz/`). Sizes are capped before any parsing, so the
//! work and memory spent on one input are bounded by its cap. Parsing is done by rPGP (`pgp` crate);
//! the policy — which keys and messages are acceptable — is ours and stricter than rPGP's defaults.
//!
//! Not here: storage of keys or messages, HTTP status codes, and the wording of HTTP error bodies
//! (the API layer prefixes our [`KeyError`] reasons).

use std::fmt;
use std::io::Read;

use pgp::armor::{BlockType, Dearmor, DearmorOptions};
use pgp::composed::{PacketBodyReader, SignedPublicKey, SignedPublicKeyParser, SignedPublicSubKey};
use pgp::packet::{
    Packet, PacketHeader, PacketParser, PublicKeyEncryptedSessionKey, Signature, SignatureType, SubpacketData,
};
use pgp::types::{KeyDetails, Tag};

use super::hex;

/// Largest armored public key accepted, in bytes of text. Real keys are far smaller (an ed25519/cv25519
/// key is under 1 KiB, RSA 4096 with a few user ids a few KiB); the cap bounds signature checks too.
pub const MAX_PUBLIC_KEY_BYTES: usize = 16 * 1024;

/// What the rest of the server needs to know about an accepted public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    /// Primary key's full fingerprint, lowercase hex.
    pub fingerprint: String,
    /// The primary key's expiry (unix seconds) or the earliest expiry among the usable encryption
    /// subkeys' — whichever bounds when the key can no longer be encrypted to; None = never.
    pub expires_at: Option<u64>,
    /// Identifiers of the usable encryption subkeys: (8-byte key id, full fingerprint bytes).
    pub encryption_keys: Vec<([u8; 8], Vec<u8>)>,
}

impl PublicKeyInfo {
    /// The last 16 hex characters of the fingerprint: the `fp16` in request links.
    pub fn fp16(&self) -> &str {
        let start = self.fingerprint.len().saturating_sub(16);
        // Hex is ASCII, so any index is a char boundary; `get` keeps this panic-free regardless.
        self.fingerprint.get(start..).unwrap_or("")
    }
}

/// Why a public key was refused. `Display` is a short reason meant to follow
/// "A valid PGP public key is required: "; it never contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Over [`MAX_PUBLIC_KEY_BYTES`]; nothing was parsed.
    TooLarge,
    /// Armor or packets could not be parsed, or no valid self-signature; the reason is ours, not
    /// rPGP's error text.
    Malformed(String),
    /// Not a `PGP PUBLIC KEY BLOCK` (a message, a signature, an SSH key, plain text, ...).
    NotArmoredPublicKey,
    /// A private key block, or a secret (sub)key packet anywhere: the user pasted the wrong export.
    SecretKeyMaterial,
    /// A keyring (several certificates or several armor blocks), or no primary key at all.
    NotExactlyOnePrimaryKey,
    /// No subkey that is bound, encryption-capable, unexpired and unrevoked (e.g. a sign-only key).
    NoEncryptionSubkey,
    /// The primary key, or every otherwise usable encryption subkey, has expired.
    Expired,
    /// The primary key, or every otherwise usable encryption subkey, is revoked.
    Revoked,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::TooLarge => write!(f, "the key is larger than {MAX_PUBLIC_KEY_BYTES} bytes"),
            KeyError::Malformed(reason) => write!(f, "the key could not be read ({reason})"),
            KeyError::NotArmoredPublicKey => f.write_str("expected an armored PGP PUBLIC KEY BLOCK"),
            KeyError::SecretKeyMaterial => f.write_str("the key contains secret key material"),
            KeyError::NotExactlyOnePrimaryKey => f.write_str("expected exactly one primary key"),
            KeyError::NoEncryptionSubkey => f.write_str("no valid encryption-capable subkey"),
            KeyError::Expired => f.write_str("the key has expired"),
            KeyError::Revoked => f.write_str("the key has been revoked"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Checks that `armored` is exactly one OpenPGP certificate, public parts only, that can be encrypted
/// to at `now` (unix seconds): primary key self-signed, not revoked, not expired, and at least one
/// subkey bound for encryption, not revoked, not expired. Self-signatures are verified.
pub fn validate_public_key(armored: &str, now: u64) -> Result<PublicKeyInfo, KeyError> {
    if armored.len() > MAX_PUBLIC_KEY_BYTES {
        return Err(KeyError::TooLarge);
    }
    let (typ, bytes) = dearmor(armored, MAX_PUBLIC_KEY_BYTES).map_err(|e| match e {
        // Checked on the text first: a pasted private key gets the reason that tells the user what
        // went wrong, even when it is concatenated with a public block.
        _ if armored.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----") => KeyError::SecretKeyMaterial,
        ArmorError::SeveralBlocks if only_public_key_blocks(armored) => KeyError::NotExactlyOnePrimaryKey,
        ArmorError::SeveralBlocks | ArmorError::NotArmored => KeyError::NotArmoredPublicKey,
        ArmorError::Invalid => KeyError::Malformed("invalid ASCII armor".into()),
    })?;
    match typ {
        BlockType::PublicKey => {}
        BlockType::PrivateKey => return Err(KeyError::SecretKeyMaterial),
        _ => return Err(KeyError::NotArmoredPublicKey),
    }

    let packets = key_packets(&bytes)?;
    let primaries = packets.iter().filter(|p| matches!(p, Packet::PublicKey(_))).count();
    if primaries != 1 {
        return Err(KeyError::NotExactlyOnePrimaryKey);
    }
    if !matches!(packets.first(), Some(Packet::PublicKey(_))) {
        return Err(KeyError::Malformed("the first packet is not the primary key".into()));
    }
    // A key revocation is honoured wherever it sits in the block; rPGP's composer only collects the
    // ones directly after the primary key.
    let revocations: Vec<Signature> = packets
        .iter()
        .filter_map(|p| match p {
            Packet::Signature(s) if s.typ() == Some(SignatureType::KeyRevocation) => Some(s.clone()),
            _ => None,
        })
        .collect();

    let mut certs = SignedPublicKeyParser::from_packets(packets.into_iter().map(Ok).peekable());
    let key = match certs.next() {
        Some(Ok(key)) => key,
        Some(Err(_)) | None => {
            return Err(KeyError::Malformed("not a valid certificate".into()));
        }
    };
    evaluate(&key, &revocations, now)
}

/// Applies our policy to a composed certificate. Signatures that do not verify are ignored (as if
/// absent), which is how third-party certifications and garbage both drop out.
fn evaluate(key: &SignedPublicKey, revocations: &[Signature], now: u64) -> Result<PublicKeyInfo, KeyError> {
    let primary = &key.primary_key;
    if revocations.iter().any(|s| s.verify_key(primary).is_ok()) {
        return Err(KeyError::Revoked);
    }

    // The newest valid self-signature carries the primary key's current expiry.
    let direct = key
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::Key) && s.verify_key(primary).is_ok());
    let certifications = key.details.users.iter().flat_map(|user| {
        user.signatures.iter().filter(|s| {
            s.typ() != Some(SignatureType::CertRevocation)
                && s.verify_certification(primary, Tag::UserId, &user.id).is_ok()
        })
    });
    let self_sig = direct
        .chain(certifications)
        .filter(|s| !signature_expired(s, now))
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
        .ok_or_else(|| KeyError::Malformed("no valid self-signature on the primary key".into()))?;
    let primary_created = u64::from(primary.created_at().as_secs());
    let primary_expiry = expiry(primary_created, self_sig);
    if primary_expiry.is_some_and(|at| at <= now) {
        return Err(KeyError::Expired);
    }

    let mut encryption_keys = Vec::new();
    let mut earliest_subkey_expiry: Option<u64> = None;
    let (mut saw_expired, mut saw_revoked) = (false, false);
    for sub in &key.public_subkeys {
        match subkey_status(key, sub, now) {
            SubkeyStatus::Usable { expires_at } => {
                let id = sub.key.legacy_key_id();
                let mut id8 = [0u8; 8];
                id8.copy_from_slice(id.as_ref());
                encryption_keys.push((id8, sub.key.fingerprint().as_bytes().to_vec()));
                if let Some(at) = expires_at {
                    earliest_subkey_expiry = Some(earliest_subkey_expiry.map_or(at, |e| e.min(at)));
                }
            }
            SubkeyStatus::Expired => saw_expired = true,
            SubkeyStatus::Revoked => saw_revoked = true,
            SubkeyStatus::NotForEncryption => {}
        }
    }
    if encryption_keys.is_empty() {
        return Err(if saw_revoked {
            KeyError::Revoked
        } else if saw_expired {
            KeyError::Expired
        } else {
            KeyError::NoEncryptionSubkey
        });
    }

    let expires_at = match (primary_expiry, earliest_subkey_expiry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(PublicKeyInfo { fingerprint: hex(primary.fingerprint().as_bytes()), expires_at, encryption_keys })
}

enum SubkeyStatus {
    Usable { expires_at: Option<u64> },
    Expired,
    Revoked,
    NotForEncryption,
}

/// An encryption-capable subkey (by algorithm, and by key flags when the binding has any) with a
/// valid binding signature; the newest binding decides flags and expiry.
fn subkey_status(key: &SignedPublicKey, sub: &SignedPublicSubKey, now: u64) -> SubkeyStatus {
    let primary = &key.primary_key;
    if !sub.key.algorithm().can_encrypt() {
        return SubkeyStatus::NotForEncryption;
    }
    let Some(binding) = sub
        .signatures
        .iter()
        .filter(|s| {
            s.typ() == Some(SignatureType::SubkeyBinding)
                && !signature_expired(s, now)
                && s.verify_subkey_binding(primary, &sub.key).is_ok()
        })
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
    else {
        return SubkeyStatus::NotForEncryption;
    };
    if let Some(flags) = key_flags(binding)
        && !(flags.encrypt_comms() || flags.encrypt_storage())
    {
        return SubkeyStatus::NotForEncryption;
    }
    let revoked = sub.signatures.iter().any(|s| {
        s.typ() == Some(SignatureType::SubkeyRevocation) && s.verify_subkey_binding(primary, &sub.key).is_ok()
    });
    if revoked {
        return SubkeyStatus::Revoked;
    }
    let expires_at = expiry(u64::from(sub.key.created_at().as_secs()), binding);
    if expires_at.is_some_and(|at| at <= now) {
        return SubkeyStatus::Expired;
    }
    SubkeyStatus::Usable { expires_at }
}

/// The key flags subpacket if the signature has one: absent flags mean "decide by algorithm", which
/// `Signature::key_flags` (empty default) cannot tell apart from "no usage at all".
fn key_flags(sig: &Signature) -> Option<pgp::packet::KeyFlags> {
    sig.config()?.hashed_subpackets().find_map(|p| match &p.data {
        SubpacketData::KeyFlags(flags) => Some(flags.clone()),
        _ => None,
    })
}

/// Expiry of a key created at `created` according to `sig`; a zero or missing period means never.
fn expiry(created: u64, sig: &Signature) -> Option<u64> {
    let secs = sig.key_expiration_time()?.as_secs();
    (secs > 0).then(|| created + u64::from(secs))
}

/// A self-signature that itself has expired no longer speaks for the key.
fn signature_expired(sig: &Signature, now: u64) -> bool {
    match (sig.created(), sig.signature_expiration_time()) {
        (Some(created), Some(period)) if period.as_secs() > 0 => {
            u64::from(created.as_secs()) + u64::from(period.as_secs()) <= now
        }
        _ => false,
    }
}

/// Whether a packet of this tag may sit in a transferable public key: anything else (a literal or
/// compressed packet, a message) would be stored and served back verbatim, and GnuPG refuses to import
/// such a block.
fn is_key_material(tag: Tag) -> bool {
    matches!(
        tag,
        Tag::PublicKey
            | Tag::PublicSubkey
            | Tag::UserId
            | Tag::UserAttribute
            | Tag::Signature
            | Tag::Trust
            | Tag::Padding
    )
}

/// Parses every packet of a key block. Secret key packets are detected by their header tag, before
/// and regardless of whether their body parses, so a damaged secret key is still reported as one.
fn key_packets(mut bytes: &[u8]) -> Result<Vec<Packet>, KeyError> {
    let mut packets = Vec::new();
    let mut broken = false;
    let mut foreign = false;
    while !bytes.is_empty() {
        let Ok(header) = PacketHeader::try_from_reader(&mut bytes) else {
            broken = true;
            break;
        };
        if matches!(header.tag(), Tag::SecretKey | Tag::SecretSubkey) {
            return Err(KeyError::SecretKeyMaterial);
        }
        // Keep scanning, as below: a later secret key packet is the more useful reason.
        foreign |= !is_key_material(header.tag());
        let Ok(mut body) = PacketBodyReader::new(header, &mut bytes) else {
            broken = true;
            break;
        };
        match Packet::from_reader(header, &mut body) {
            Ok(packet) => packets.push(packet),
            // Keep scanning: a later secret key packet is the more useful reason.
            Err(_) => broken = true,
        }
    }
    if broken {
        return Err(KeyError::Malformed("invalid OpenPGP packets".into()));
    }
    if foreign {
        return Err(KeyError::Malformed("the block holds packets that are not key material".into()));
    }
    Ok(packets)
}

fn only_public_key_blocks(text: &str) -> bool {
    text.matches("-----BEGIN ").count() == text.matches("-----BEGIN PGP PUBLIC KEY BLOCK-----").count()
}

/// Summary of an encrypted message's session-key packets. Nothing here is secret: PKESK recipients
/// are in the clear by design of OpenPGP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Recipient identifiers from PKESK packets: key ids (v3 PKESK) or fingerprints (v6 PKESK);
    /// wildcard/anonymous recipients are counted separately.
    pub recipients: Vec<Vec<u8>>,
    pub anonymous_recipients: usize,
    /// At least one SKESK (password-based session key).
    pub password_encrypted: bool,
    /// The encrypted data is a legacy symmetrically-encrypted packet (tag 9), which has no integrity
    /// protection: surfaces that promise an authenticated message refuse it.
    pub unprotected: bool,
}

impl MessageInfo {
    /// True if some recipient is one of `key`'s usable encryption subkeys, by key id or fingerprint.
    /// Anonymous recipients never match: the server cannot tell whom they are for.
    pub fn is_encrypted_to(&self, key: &PublicKeyInfo) -> bool {
        self.recipients
            .iter()
            .any(|r| key.encryption_keys.iter().any(|(id, fp)| r.as_slice() == id.as_slice() || r == fp))
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// Over the caller's cap; nothing was parsed.
    TooLarge,
    /// Not an armored `PGP MESSAGE` / not an OpenPGP packet stream, or not session-key packet(s)
    /// followed by encrypted data (a signed or literal message, a key, garbage, a truncated upload).
    NotEncrypted,
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::TooLarge => f.write_str("the encrypted message is too long"),
            MessageError::NotEncrypted => f.write_str("the message is not PGP encrypted"),
        }
    }
}

impl std::error::Error for MessageError {}

/// Armored `PGP MESSAGE`: size-capped (bytes of the armored text) before parsing; base64 body
/// decodes to a non-empty packet stream whose first packet is a PKESK or SKESK, followed (after any
/// further session-key packets) by an encrypted-data packet (SEIPD v1/v2, legacy SED, or GnuPG's
/// AEAD packet).
pub fn inspect_message(armored: &str, max_bytes: usize) -> Result<MessageInfo, MessageError> {
    if armored.len() > max_bytes {
        return Err(MessageError::TooLarge);
    }
    let (typ, bytes) = dearmor(armored, max_bytes).map_err(|_| MessageError::NotEncrypted)?;
    if typ != BlockType::Message {
        return Err(MessageError::NotEncrypted);
    }
    inspect_packets(&bytes)
}

/// The same check for raw binary OpenPGP bytes (the `/create/file` upload), size-capped.
pub fn inspect_binary_message(bytes: &[u8], max_bytes: usize) -> Result<MessageInfo, MessageError> {
    if bytes.len() > max_bytes {
        return Err(MessageError::TooLarge);
    }
    inspect_packets(bytes)
}

/// Walks the packet stream: ESK+ then one encrypted-data packet, then at most padding/marker
/// packets. Bodies are parsed only to validate framing and session-key packets; nothing is decrypted.
fn inspect_packets(bytes: &[u8]) -> Result<MessageInfo, MessageError> {
    let mut info = MessageInfo {
        recipients: Vec::new(),
        anonymous_recipients: 0,
        password_encrypted: false,
        unprotected: false,
    };
    let mut packets = PacketParser::new(bytes);
    let mut session_keys = 0usize;
    loop {
        match packets.next() {
            Some(Ok(Packet::PublicKeyEncryptedSessionKey(pkesk))) => {
                session_keys += 1;
                match pkesk {
                    PublicKeyEncryptedSessionKey::V3 { id, .. } if id.is_wildcard() => {
                        info.anonymous_recipients += 1;
                    }
                    PublicKeyEncryptedSessionKey::V3 { id, .. } => {
                        info.recipients.push(id.as_ref().to_vec());
                    }
                    PublicKeyEncryptedSessionKey::V6 { fingerprint: None, .. } => {
                        info.anonymous_recipients += 1;
                    }
                    PublicKeyEncryptedSessionKey::V6 { fingerprint: Some(fp), .. } => {
                        info.recipients.push(fp.as_bytes().to_vec());
                    }
                    // An unknown PKESK version names no recipient we could check; it still counts
                    // as a session-key packet, as it would for an implementation that knows it.
                    PublicKeyEncryptedSessionKey::Other { .. } => {}
                }
            }
            Some(Ok(Packet::SymKeyEncryptedSessionKey(_))) => {
                session_keys += 1;
                info.password_encrypted = true;
            }
            Some(Ok(Packet::SymEncryptedProtectedData(_) | Packet::GnupgAeadData(_))) if session_keys > 0 => {
                break;
            }
            Some(Ok(Packet::SymEncryptedData(_))) if session_keys > 0 => {
                info.unprotected = true;
                break;
            }
            _ => return Err(MessageError::NotEncrypted),
        }
    }
    // Anything after the encrypted data other than padding would be a second message glued on.
    for packet in packets {
        match packet {
            Ok(Packet::Padding(_) | Packet::Marker(_)) => {}
            _ => return Err(MessageError::NotEncrypted),
        }
    }
    Ok(info)
}

enum ArmorError {
    /// No armor header line at the start of the text, or text after the footer line.
    NotArmored,
    /// Several `-----BEGIN` lines: several blocks pasted together.
    SeveralBlocks,
    /// rPGP could not decode the block (bad base64, checksum mismatch, header/footer mismatch).
    Invalid,
}

/// Decodes exactly one armor block that makes up the whole text (surrounding whitespace aside).
/// rPGP alone would accept leading text and ignore anything after the first block, which would let
/// a second key or message ride along unchecked.
fn dearmor(text: &str, limit: usize) -> Result<(BlockType, Vec<u8>), ArmorError> {
    let text = text.trim();
    if !text.starts_with("-----BEGIN ") {
        return Err(ArmorError::NotArmored);
    }
    if text.matches("-----BEGIN ").count() != 1 {
        return Err(ArmorError::SeveralBlocks);
    }
    let last_line = text.lines().next_back().unwrap_or("");
    let footer = last_line.starts_with("-----END ") && last_line.ends_with("-----");
    if !footer || text.matches("-----END ").count() != 1 {
        return Err(ArmorError::NotArmored);
    }
    let mut dearmor = Dearmor::with_options(text.as_bytes(), DearmorOptions::new().set_limit(limit));
    let mut bytes = Vec::new();
    // Called once only: after an error rPGP's `Dearmor` is left in a state where another `read`
    // panics ("invalid state"), and `read_to_end` stops at the first error (rPGP never reports
    // `Interrupted`, the only kind it would retry on).
    if dearmor.read_to_end(&mut bytes).is_err() {
        return Err(ArmorError::Invalid);
    }
    let typ = dearmor.typ.ok_or(ArmorError::Invalid)?;
    if bytes.is_empty() {
        return Err(ArmorError::Invalid);
    }
    // The CRC is optional in RFC 9580, but when present and wrong the text was damaged in transit;
    // refuse it rather than parse bytes nobody wrote. Checked here because rPGP 0.21's own check
    // (`enable_crc24_check`) hashes into a copy of its hasher and so rejects every valid block.
    if let Some(expected) = armor_checksum(text)
        && crc24(&bytes) != expected
    {
        return Err(ArmorError::Invalid);
    }
    Ok((typ, bytes))
}

/// The armor's `=XXXX` checksum line (the line before the footer), if there is one.
fn armor_checksum(text: &str) -> Option<u32> {
    use base64::Engine as _;
    let line = text.lines().rev().nth(1)?.trim();
    let b64 = line.strip_prefix('=').filter(|b| b.len() == 4)?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let [a, b, c] = raw.as_slice() else { return None };
    Some(u32::from_be_bytes([0, *a, *b, *c]))
}

/// CRC-24 of RFC 9580 section 6.1.1.
fn crc24(data: &[u8]) -> u32 {
    const INIT: u32 = 0x00B7_04CE;
    const POLY: u32 = 0x0186_4CFB;
    let mut crc = INIT;
    for &byte in data {
        crc ^= u32::from(byte) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= POLY;
            }
        }
    }
    crc & 0x00FF_FFFF
}

/// Real GnuPG for the tests: the integration tests' fixture, shared rather than copied.
#[cfg(test)]
#[path = "../../tests/support/gpg.rs"]
mod gpg;

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;
    use std::time::{SystemTime, UNIX_EPOCH};

    use pgp::composed::{
        ArmorOptions, EncryptionCaps, KeyType, MessageBuilder, SecretKeyParamsBuilder, SubkeyParamsBuilder,
    };
    use pgp::crypto::aead::{AeadAlgorithm, ChunkSize};
    use pgp::crypto::sym::SymmetricKeyAlgorithm;
    use pgp::types::KeyVersion;

    use super::gpg::Gpg;
    use super::*;

    const DAY: u64 = 86_400;

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    /// Everything made with gpg, once per test run: key generation (RSA especially) is the slow
    /// part, and one short-lived GNUPGHOME leaves no agent behind once the fixtures exist.
    struct Fixtures {
        alice_fpr: String,
        alice: String,
        alice_secret: String,
        rsa_fpr: String,
        rsa: String,
        sign_only: String,
        expiring: String,
        revoked: String,
        revoked_subkey: String,
        keyring: String,
        to_alice: String,
        to_alice_binary: Vec<u8>,
        to_rsa: String,
        hidden_to_alice: String,
        symmetric: String,
        signed: String,
    }

    fn fixtures() -> &'static Fixtures {
        static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
        FIXTURES.get_or_init(|| {
            let gpg = Gpg::new();
            let alice_fpr = gpg.gen_key("Alice <alice@example.org>", "future-default", "never");
            let rsa_fpr = gpg.gen_key("Rob <rob@example.org>", "rsa3072", "never");
            let sign_fpr = gpg.gen_key_with_usage("Sig <sig@example.org>", "ed25519", "sign", "never");
            let exp_fpr = gpg.gen_key("Eve <eve@example.org>", "future-default", "1d");
            let rev_fpr = gpg.gen_key("Rev <rev@example.org>", "future-default", "never");
            gpg.revoke_key(&rev_fpr);
            let revsub_fpr = gpg.gen_key("Sub <sub@example.org>", "future-default", "never");
            gpg.revoke_first_subkey(&revsub_fpr);

            let to_alice = gpg.encrypt_to(&alice_fpr, b"to alice");
            // The helper must make messages gpg itself can read back, or the fixtures prove nothing.
            assert_eq!(gpg.decrypt(&to_alice), b"to alice");
            Fixtures {
                alice: gpg.export_public(&alice_fpr),
                alice_secret: gpg.export_secret(&alice_fpr),
                rsa: gpg.export_public(&rsa_fpr),
                sign_only: gpg.export_public(&sign_fpr),
                expiring: gpg.export_public(&exp_fpr),
                revoked: gpg.export_public(&rev_fpr),
                revoked_subkey: gpg.export_public(&revsub_fpr),
                keyring: gpg.export_public_many(&[&alice_fpr, &rsa_fpr]),
                to_alice,
                to_alice_binary: gpg.encrypt_to_binary(&alice_fpr, b"file for alice"),
                to_rsa: gpg.encrypt_to(&rsa_fpr, b"to rob"),
                hidden_to_alice: gpg.encrypt_to_hidden(&alice_fpr, b"who is this for"),
                symmetric: gpg.encrypt_symmetric("correct horse", b"by password"),
                signed: gpg.sign(b"signed, not sealed"),
                alice_fpr,
                rsa_fpr,
            }
        })
    }

    fn alice() -> PublicKeyInfo {
        validate_public_key(&fixtures().alice, now()).expect("alice's key is valid")
    }

    #[test]
    fn a_gpg_future_default_key_is_accepted_with_gpgs_fingerprint() {
        let f = fixtures();
        let info = alice();
        assert_eq!(info.fingerprint, f.alice_fpr.to_lowercase());
        assert_eq!(info.fp16(), &f.alice_fpr.to_lowercase()[24..]);
        assert_eq!(info.expires_at, None);
        assert_eq!(info.encryption_keys.len(), 1);
        let (id, fp) = &info.encryption_keys[0];
        assert_eq!(fp.len(), 20);
        // A v4 key id is the low 64 bits of the fingerprint.
        assert_eq!(&fp[12..], id);
    }

    #[test]
    fn a_gpg_rsa3072_key_is_accepted() {
        let f = fixtures();
        let info = validate_public_key(&f.rsa, now()).expect("rsa key is valid");
        assert_eq!(info.fingerprint, f.rsa_fpr.to_lowercase());
        assert_eq!(info.encryption_keys.len(), 1);
    }

    #[test]
    fn an_armored_secret_key_is_refused_as_secret_material() {
        let err = validate_public_key(&fixtures().alice_secret, now()).unwrap_err();
        assert_eq!(err, KeyError::SecretKeyMaterial);
        assert_eq!(err.to_string(), "the key contains secret key material");
    }

    #[test]
    fn secret_packets_inside_a_public_key_armor_are_refused() {
        // Re-armor the secret key's packets under a PUBLIC KEY BLOCK header.
        let (_, bytes) = dearmor(&fixtures().alice_secret, 64 * 1024).ok().unwrap();
        let relabelled = armor("PGP PUBLIC KEY BLOCK", &bytes);
        assert_eq!(validate_public_key(&relabelled, now()), Err(KeyError::SecretKeyMaterial));
    }

    #[test]
    fn a_secret_key_pasted_after_the_public_key_is_refused_as_secret_material() {
        let f = fixtures();
        let both = format!("{}\n{}", f.alice, f.alice_secret);
        assert_eq!(validate_public_key(&both, now()), Err(KeyError::SecretKeyMaterial));
    }

    #[test]
    fn a_key_block_with_a_message_packet_appended_is_refused() {
        let (_, mut bytes) = dearmor(&fixtures().alice, MAX_PUBLIC_KEY_BYTES).ok().unwrap();
        // A new-format literal data packet (tag 11): binary, no file name, time 0, "hi".
        bytes.extend_from_slice(&[0xc0 | 11, 8, b'b', 0, 0, 0, 0, 0, b'h', b'i']);
        let with_literal = armor("PGP PUBLIC KEY BLOCK", &bytes);
        assert_eq!(
            validate_public_key(&with_literal, now()),
            Err(KeyError::Malformed("the block holds packets that are not key material".into()))
        );
        // A compressed data packet (tag 8) holding nothing: algorithm 0, uncompressed.
        let (_, mut bytes) = dearmor(&fixtures().alice, MAX_PUBLIC_KEY_BYTES).ok().unwrap();
        bytes.extend_from_slice(&[0xc0 | 8, 1, 0]);
        let with_compressed = armor("PGP PUBLIC KEY BLOCK", &bytes);
        assert!(matches!(validate_public_key(&with_compressed, now()), Err(KeyError::Malformed(_))));
        // The untouched block still passes, so the refusal is the appended packet's.
        let (_, bytes) = dearmor(&fixtures().alice, MAX_PUBLIC_KEY_BYTES).ok().unwrap();
        assert!(validate_public_key(&armor("PGP PUBLIC KEY BLOCK", &bytes), now()).is_ok());
    }

    #[test]
    fn a_sign_only_key_has_no_encryption_subkey() {
        assert_eq!(validate_public_key(&fixtures().sign_only, now()), Err(KeyError::NoEncryptionSubkey));
    }

    #[test]
    fn an_expiring_key_is_accepted_until_it_expires_and_refused_after() {
        let f = fixtures();
        let t = now();
        let info = validate_public_key(&f.expiring, t).expect("not yet expired");
        let at = info.expires_at.expect("gpg set an expiry");
        assert!(at > t && at <= t + 2 * DAY, "expiry {at} not about a day after {t}");
        assert_eq!(validate_public_key(&f.expiring, at), Err(KeyError::Expired));
        assert_eq!(validate_public_key(&f.expiring, t + 2 * DAY), Err(KeyError::Expired));
    }

    #[test]
    fn a_revoked_key_is_refused() {
        assert_eq!(validate_public_key(&fixtures().revoked, now()), Err(KeyError::Revoked));
    }

    #[test]
    fn a_key_whose_only_encryption_subkey_is_revoked_is_refused() {
        assert_eq!(validate_public_key(&fixtures().revoked_subkey, now()), Err(KeyError::Revoked));
    }

    #[test]
    fn two_keys_in_one_block_are_refused() {
        assert_eq!(validate_public_key(&fixtures().keyring, now()), Err(KeyError::NotExactlyOnePrimaryKey));
    }

    #[test]
    fn two_armored_key_blocks_are_refused() {
        let f = fixtures();
        let both = format!("{}\n{}", f.alice, f.rsa);
        assert_eq!(validate_public_key(&both, now()), Err(KeyError::NotExactlyOnePrimaryKey));
    }

    #[test]
    fn text_around_the_armor_block_is_refused() {
        let f = fixtures();
        let leading = format!("here is my key:\n{}", f.alice);
        assert_eq!(validate_public_key(&leading, now()), Err(KeyError::NotArmoredPublicKey));
        let trailing = format!("{}\nthanks!\n", f.alice);
        assert_eq!(validate_public_key(&trailing, now()), Err(KeyError::NotArmoredPublicKey));
        // Surrounding whitespace, as pasted from a terminal, is fine.
        assert!(validate_public_key(&format!("\n  {}  \n", f.alice), now()).is_ok());
    }

    #[test]
    fn a_key_over_the_cap_is_refused_before_parsing() {
        let big = format!("{}{}", fixtures().alice, " ".repeat(MAX_PUBLIC_KEY_BYTES));
        assert_eq!(validate_public_key(&big, now()), Err(KeyError::TooLarge));
        let junk = "x".repeat(MAX_PUBLIC_KEY_BYTES + 1);
        assert_eq!(validate_public_key(&junk, now()), Err(KeyError::TooLarge));
    }

    #[test]
    fn a_message_or_plain_text_is_not_a_public_key() {
        let f = fixtures();
        assert_eq!(validate_public_key(&f.to_alice, now()), Err(KeyError::NotArmoredPublicKey));
        assert_eq!(
            validate_public_key("ssh-ed25519 AAAA me@host", now()),
            Err(KeyError::NotArmoredPublicKey)
        );
        assert_eq!(validate_public_key("", now()), Err(KeyError::NotArmoredPublicKey));
    }

    #[test]
    fn tampered_or_truncated_armor_is_refused() {
        let key = &fixtures().alice;
        for i in 0..key.len() {
            // Flip one base64 character in the body at a time (a sample, to keep the test quick).
            if i % 7 != 0 {
                continue;
            }
            let mut bytes = key.clone().into_bytes();
            bytes[i] = match bytes[i] {
                b'A' => b'B',
                b'a'..=b'y' | b'A'..=b'Y' | b'0'..=b'8' => bytes[i] + 1,
                _ => continue,
            };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(validate_public_key(&tampered, now()).is_err(), "tampered at {i} accepted");
        }
        for len in (0..key.len()).step_by(13) {
            let cut = &key[..len];
            assert!(validate_public_key(cut, now()).is_err(), "truncated to {len} accepted");
        }
    }

    #[test]
    fn a_tampered_binding_signature_is_not_honoured() {
        // Re-armored without the CRC, so that only the signature check can catch the flipped bit.
        let (_, mut bytes) = dearmor(&fixtures().alice, MAX_PUBLIC_KEY_BYTES).ok().unwrap();
        let last = bytes.len() - 3; // inside the last packet: the subkey binding signature's MPI
        bytes[last] ^= 0x01;
        let key = armor("PGP PUBLIC KEY BLOCK", &bytes);
        assert!(matches!(
            validate_public_key(&key, now()),
            Err(KeyError::NoEncryptionSubkey | KeyError::Malformed(_))
        ));
    }

    #[test]
    fn keys_made_by_rpgp_are_accepted_v4_and_v6() {
        for version in [KeyVersion::V4, KeyVersion::V6] {
            let (armored, public) = rpgp_key(version);
            let info = validate_public_key(&armored, now()).expect("rPGP key is valid");
            assert_eq!(info.fingerprint, hex(public.fingerprint().as_bytes()));
            assert_eq!(info.encryption_keys.len(), 1);
            let expected_len = if version == KeyVersion::V6 { 32 } else { 20 };
            assert_eq!(info.encryption_keys[0].1.len(), expected_len);
        }
    }

    #[test]
    fn v6_messages_name_the_subkey_by_fingerprint() {
        let (armored, public) = rpgp_key(KeyVersion::V6);
        let info = validate_public_key(&armored, now()).unwrap();
        let subkey = &public.public_subkeys[0];

        let mut rng = rand::thread_rng();
        let mut builder = MessageBuilder::from_bytes("", &b"hello v6"[..]).seipd_v2(
            &mut rng,
            SymmetricKeyAlgorithm::AES128,
            AeadAlgorithm::Ocb,
            ChunkSize::default(),
        );
        builder.encrypt_to_key(&mut rng, subkey).unwrap();
        let message = builder.to_armored_string(&mut rng, ArmorOptions::default()).unwrap();
        let m = inspect_message(&message, 10_000).expect("v6 message");
        assert_eq!(m.recipients, vec![subkey.fingerprint().as_bytes().to_vec()]);
        assert!(m.is_encrypted_to(&info));

        let mut builder = MessageBuilder::from_bytes("", &b"hello v6"[..]).seipd_v2(
            &mut rng,
            SymmetricKeyAlgorithm::AES128,
            AeadAlgorithm::Ocb,
            ChunkSize::default(),
        );
        builder.encrypt_to_key_anonymous(&mut rng, subkey).unwrap();
        let message = builder.to_armored_string(&mut rng, ArmorOptions::default()).unwrap();
        let m = inspect_message(&message, 10_000).expect("anonymous v6 message");
        assert_eq!((m.recipients.len(), m.anonymous_recipients), (0, 1));
        assert!(!m.is_encrypted_to(&info));
    }

    #[test]
    fn a_message_to_the_key_is_encrypted_to_it() {
        let f = fixtures();
        let m = inspect_message(&f.to_alice, 10_000).expect("encrypted message");
        assert_eq!(m.recipients.len(), 1);
        assert_eq!(m.anonymous_recipients, 0);
        assert!(!m.password_encrypted);
        assert!(m.is_encrypted_to(&alice()));
    }

    #[test]
    fn a_binary_message_to_the_key_is_encrypted_to_it() {
        let m = inspect_binary_message(&fixtures().to_alice_binary, 10_000).expect("binary");
        assert!(m.is_encrypted_to(&alice()));
        // The armored check wants armor; the binary one wants bytes.
        let as_text = String::from_utf8_lossy(&fixtures().to_alice_binary).into_owned();
        assert_eq!(inspect_message(&as_text, 10_000), Err(MessageError::NotEncrypted));
    }

    #[test]
    fn a_message_to_another_key_is_not_encrypted_to_this_one() {
        let f = fixtures();
        let m = inspect_message(&f.to_rsa, 10_000).expect("encrypted message");
        assert!(!m.is_encrypted_to(&alice()));
        let rsa = validate_public_key(&f.rsa, now()).unwrap();
        assert!(m.is_encrypted_to(&rsa));
    }

    #[test]
    fn a_password_message_is_encrypted_but_to_no_key() {
        let m = inspect_message(&fixtures().symmetric, 10_000).expect("symmetric message");
        assert!(m.password_encrypted);
        assert!(m.recipients.is_empty());
        assert!(!m.is_encrypted_to(&alice()));
    }

    #[test]
    fn hidden_recipients_are_counted_and_never_match() {
        let m = inspect_message(&fixtures().hidden_to_alice, 10_000).expect("encrypted message");
        assert!(m.anonymous_recipients > 0);
        assert!(m.recipients.is_empty());
        assert!(!m.is_encrypted_to(&alice()));
    }

    #[test]
    fn signed_messages_keys_and_garbage_are_not_encrypted() {
        let f = fixtures();
        for text in [
            f.signed.as_str(),
            f.alice.as_str(),
            "",
            "hello",
            "-----BEGIN PGP MESSAGE-----\n\nAAAA\n-----END PGP MESSAGE-----\n",
        ] {
            assert_eq!(inspect_message(text, 10_000), Err(MessageError::NotEncrypted), "{text}");
        }
        for bytes in [&b""[..], b"\x00", b"\xc1\x05abc", f.signed.as_bytes()] {
            assert_eq!(inspect_binary_message(bytes, 10_000), Err(MessageError::NotEncrypted));
        }
    }

    #[test]
    fn truncated_or_extended_messages_are_not_encrypted() {
        let f = fixtures();
        let (_, bytes) = dearmor(&f.to_alice, 10_000).ok().unwrap();
        for len in 0..bytes.len() {
            assert_eq!(
                inspect_binary_message(&bytes[..len], 10_000),
                Err(MessageError::NotEncrypted),
                "truncated to {len}"
            );
        }
        // A literal data packet glued after the ciphertext.
        let mut glued = bytes.clone();
        glued.extend_from_slice(b"\xcb\x06b\x00\x00\x00\x00\x00");
        assert_eq!(inspect_binary_message(&glued, 10_000), Err(MessageError::NotEncrypted));
        let mut text = f.to_alice.clone();
        text.truncate(text.len() / 2);
        assert_eq!(inspect_message(&text, 10_000), Err(MessageError::NotEncrypted));
    }

    #[test]
    fn messages_over_the_cap_are_refused_before_parsing() {
        let f = fixtures();
        let n = f.to_alice.len();
        assert!(inspect_message(&f.to_alice, n).is_ok());
        assert_eq!(inspect_message(&f.to_alice, n - 1), Err(MessageError::TooLarge));
        let b = &f.to_alice_binary;
        assert!(inspect_binary_message(b, b.len()).is_ok());
        assert_eq!(inspect_binary_message(b, b.len() - 1), Err(MessageError::TooLarge));
    }

    #[test]
    fn errors_display_a_short_reason() {
        assert_eq!(KeyError::NoEncryptionSubkey.to_string(), "no valid encryption-capable subkey");
        assert_eq!(
            KeyError::Malformed("invalid ASCII armor".into()).to_string(),
            "the key could not be read (invalid ASCII armor)"
        );
        assert_eq!(MessageError::NotEncrypted.to_string(), "the message is not PGP encrypted");
    }

    /// Ed25519 primary with an X25519 encryption subkey, made by rPGP; returns it armored and parsed.
    pub(crate) fn rpgp_key(version: KeyVersion) -> (String, SignedPublicKey) {
        let mut rng = rand::thread_rng();
        let subkey = SubkeyParamsBuilder::default()
            .version(version)
            .key_type(KeyType::X25519)
            .can_encrypt(EncryptionCaps::All)
            .build()
            .unwrap();
        let params = SecretKeyParamsBuilder::default()
            .version(version)
            .key_type(KeyType::Ed25519)
            .can_certify(true)
            .can_sign(true)
            .feature_seipd_v2(true)
            .primary_user_id("Rusty <rusty@example.org>".into())
            .subkey(subkey)
            .build()
            .unwrap();
        let secret = params.generate(&mut rng).unwrap();
        let public = secret.to_public_key();
        let armored = public.to_armored_string(ArmorOptions::default()).unwrap();
        (armored, public)
    }

    /// Armor without a CRC line, so that damage inside is left for the packet checks to find.
    fn armor(typ: &str, bytes: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut out = format!("-----BEGIN {typ}-----\n\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap());
            out.push('\n');
        }
        out.push_str(&format!("-----END {typ}-----\n"));
        out
    }
}
