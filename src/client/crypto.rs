//! Every use of OpenPGP by the command-line client, in one place, made to match the web UI's
//! `web/src/crypto.js` byte for byte where it matters (`web-ui.md` §6): a link or a request made here
//! opens in the browser and the other way round.
//!
//! Not here: the network, files, and what the user is told. Errors never carry key material, a
//! plaintext or rPGP's own error text (which may quote packet contents).

use std::io::{BufReader, Read};

use pgp::composed::{
    ArmorOptions, Deserializable, EncryptionCaps, KeyType, Message, MessageBuilder, SecretKeyParamsBuilder,
    SignedPublicKey, SignedPublicSubKey, SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::{DataMode, LiteralData, PacketTrait, SymEncryptedProtectedData, SymKeyEncryptedSessionKey};
use pgp::types::{KeyDetails, KeyVersion, Password, StringToKey};
use rand::rngs::OsRng;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// The web UI's key alphabet: `[A-Za-z0-9]`, 22 characters, about 131 bits.
const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub const KEY_LENGTH: usize = 22;

/// The user ID of a request key made without a label, as the web UI names it.
pub const DEFAULT_REQUEST_LABEL: &str = "lethe secret request";

/// Largest armored key read from the server or a file; the server refuses larger ones anyway.
pub const MAX_KEY_BYTES: usize = 64 * 1024;

/// Why an OpenPGP step failed, in words that are safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// The OS random source failed.
    Random,
    /// The password does not open the message, or the message was altered (MDC or AEAD tag).
    WrongKey,
    /// The bytes are not an OpenPGP message this client can read.
    NotAMessage,
    /// A plaintext is larger than the caller allows (a decompression bomb from a hostile server).
    TooLarge,
    /// rPGP refused to build a key or a message (should not happen with our own inputs).
    Build(&'static str),
    /// A key does not parse or does not have what it must have; the reason is ours.
    Key(&'static str),
}

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CryptoError::Random => f.write_str("the system's random source failed"),
            CryptoError::WrongKey => f.write_str("wrong decryption key, or the message was altered"),
            CryptoError::NotAMessage => f.write_str("not an OpenPGP message"),
            CryptoError::TooLarge => f.write_str("the decrypted secret is larger than allowed"),
            CryptoError::Build(what) => write!(f, "cannot make the {what}"),
            CryptoError::Key(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for CryptoError {}

/// A fresh 22-character key from the OS CSPRNG. Bytes ≥ 248 are dropped: 248 is the largest multiple
/// of 62 below 256, so every kept byte maps to a character with equal chance (the web UI's rule).
pub fn new_key() -> Result<Zeroizing<String>, CryptoError> {
    let rng = SystemRandom::new();
    let mut out = Zeroizing::new(String::with_capacity(KEY_LENGTH));
    while out.len() < KEY_LENGTH {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill(&mut bytes[..]).map_err(|_| CryptoError::Random)?;
        for &b in bytes.iter() {
            if b < 248 && out.len() < KEY_LENGTH {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

/// Text as openpgp.js stores it in a UTF-8 literal packet: every line ending is CR LF.
fn canonical_eol(text: &str) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() + text.len() / 16));
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Back to the local line endings, as openpgp.js does when it reads text (`nativeEOL`).
fn native_eol(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

/// Password-based encryption of a text secret: SKESK v4 (iterated and salted SHA-256) + SEIPD v1
/// with MDC, AES-256, a UTF-8 literal packet without a name; armored. GnuPG reads it.
pub fn encrypt_text(text: &str, key: &str) -> Result<String, CryptoError> {
    let data = canonical_eol(text);
    let mut builder =
        MessageBuilder::from_bytes("", data.to_vec()).seipd_v1(OsRng, SymmetricKeyAlgorithm::AES256);
    builder.data_mode(DataMode::Utf8).map_err(|_| CryptoError::Build("message"))?;
    builder
        .encrypt_with_password(StringToKey::new_default(OsRng), &Password::from(key))
        .map_err(|_| CryptoError::Build("message"))?;
    builder.to_armored_string(OsRng, ArmorOptions::default()).map_err(|_| CryptoError::Build("message"))
}

/// Password-based encryption of a file: as [`encrypt_text`], binary literal packet carrying the
/// file's name (only inside the ciphertext), not armored. Assembled from packets because rPGP's
/// message builder writes every literal packet without a name.
pub fn encrypt_file(bytes: &[u8], name: &str, key: &str) -> Result<Vec<u8>, CryptoError> {
    let build = |_| CryptoError::Build("message");
    let literal =
        LiteralData::from_bytes(name.to_owned(), pgp::bytes::Bytes::from(bytes.to_vec())).map_err(build)?;
    let mut plaintext = Zeroizing::new(Vec::with_capacity(bytes.len() + name.len() + 16));
    literal.to_writer_with_header(&mut *plaintext).map_err(build)?;
    let alg = SymmetricKeyAlgorithm::AES256;
    let session_key = alg.new_session_key(OsRng);
    let skesk = SymKeyEncryptedSessionKey::encrypt_v4(
        &Password::from(key),
        &session_key,
        StringToKey::new_default(OsRng),
        alg,
    )
    .map_err(build)?;
    let seipd = SymEncryptedProtectedData::encrypt_seipdv1(OsRng, alg, session_key.as_ref(), &plaintext)
        .map_err(build)?;
    let mut out = Vec::with_capacity(plaintext.len() + 128);
    skesk.to_writer_with_header(&mut out).map_err(build)?;
    seipd.to_writer_with_header(&mut out).map_err(build)?;
    Ok(out)
}

/// A decrypted message.
pub struct Opened {
    pub data: Zeroizing<Vec<u8>>,
    /// The literal packet's file name, when it has one.
    pub file_name: Option<String>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("data", &"[redacted]").field("file_name", &"[redacted]").finish()
    }
}

/// Ciphertext as it came from the server: armored text or binary packets.
#[derive(Debug, Clone, Copy)]
pub enum Ciphertext<'a> {
    Armored(&'a str),
    Binary(&'a [u8]),
}

fn parse(ciphertext: Ciphertext<'_>) -> Result<Message<'_>, CryptoError> {
    match ciphertext {
        Ciphertext::Armored(text) => Message::from_armor(BufReader::new(text.as_bytes()))
            .map(|(m, _)| m)
            .map_err(|_| CryptoError::NotAMessage),
        Ciphertext::Binary(bytes) => Message::from_bytes(bytes).map_err(|_| CryptoError::NotAMessage),
    }
}

/// Reads a decrypted message to its end, at most `max` bytes: the MDC or AEAD tag is checked at the
/// end, so nothing is returned before the whole message has been authenticated.
fn read_plain(mut message: Message<'_>, max: usize) -> Result<Opened, CryptoError> {
    // Other OpenPGP tools compress (GnuPG does by default); compressed inside compressed is legal.
    for _ in 0..4 {
        if !message.is_compressed() {
            break;
        }
        message = message.decompress().map_err(|_| CryptoError::WrongKey)?;
    }
    let mut data = Zeroizing::new(Vec::new());
    (&mut message).take(max as u64 + 1).read_to_end(&mut data).map_err(|_| CryptoError::WrongKey)?;
    if data.len() > max {
        return Err(CryptoError::TooLarge);
    }
    // Known once reading has begun: the header is parsed lazily.
    let header = message.literal_data_header().cloned();
    let (text, file_name) = match &header {
        Some(h) => (
            matches!(h.mode(), DataMode::Utf8 | DataMode::Text),
            Some(String::from_utf8_lossy(h.file_name()).into_owned()).filter(|n| !n.is_empty()),
        ),
        None => (false, None),
    };
    let data = if text { Zeroizing::new(native_eol(&data)) } else { data };
    Ok(Opened { data, file_name })
}

/// Opens a password-encrypted message: SEIPD v1 as the web UI makes, and SEIPD v2 (AEAD) as
/// openpgp.js with `aeadProtect` and Yopass make.
pub fn decrypt_with_password(
    ciphertext: Ciphertext<'_>,
    key: &str,
    max: usize,
) -> Result<Opened, CryptoError> {
    let message = parse(ciphertext)?;
    let message = message.decrypt_with_password(&Password::from(key)).map_err(|_| CryptoError::WrongKey)?;
    read_plain(message, max)
}

/// Opens a message sent to a request with the request's private key.
pub fn decrypt_with_private_key(armored: &str, private_key: &str, max: usize) -> Result<Opened, CryptoError> {
    let (key, _) = SignedSecretKey::from_string(private_key)
        .map_err(|_| CryptoError::Key("the stored private key does not parse"))?;
    let message = parse(Ciphertext::Armored(armored))?;
    let message = message.decrypt(&Password::empty(), &key).map_err(|_| CryptoError::WrongKey)?;
    read_plain(message, max)
}

/// A request key pair, armored, with the primary key's fingerprint in lowercase hex.
pub struct RequestKey {
    pub private_key: Zeroizing<String>,
    pub public_key: String,
    pub fingerprint: String,
}

impl std::fmt::Debug for RequestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestKey").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

/// The web UI's request key: v4, EdDSA ed25519 primary, ECDH cv25519 encryption subkey, no
/// passphrase, no expiry, the label (or [`DEFAULT_REQUEST_LABEL`]) as its one user ID.
pub fn generate_request_key(label: &str) -> Result<RequestKey, CryptoError> {
    let user_id = if label.is_empty() { DEFAULT_REQUEST_LABEL } else { label };
    let subkey = SubkeyParamsBuilder::default()
        .version(KeyVersion::V4)
        .key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
        .can_encrypt(EncryptionCaps::All)
        .build()
        .map_err(|_| CryptoError::Build("key pair"))?;
    let params = SecretKeyParamsBuilder::default()
        .version(KeyVersion::V4)
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(user_id.to_owned())
        .subkey(subkey)
        .build()
        .map_err(|_| CryptoError::Build("key pair"))?;
    let secret = params.generate(OsRng).map_err(|_| CryptoError::Build("key pair"))?;
    let private_key = Zeroizing::new(
        secret.to_armored_string(ArmorOptions::default()).map_err(|_| CryptoError::Build("key pair"))?,
    );
    let public_key = secret
        .to_public_key()
        .to_armored_string(ArmorOptions::default())
        .map_err(|_| CryptoError::Build("key pair"))?;
    Ok(RequestKey { private_key, public_key, fingerprint: hex(secret.fingerprint().as_bytes()) })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_public_key(armored: &str) -> Result<SignedPublicKey, CryptoError> {
    if armored.len() > MAX_KEY_BYTES {
        return Err(CryptoError::Key("the key is too large"));
    }
    if armored.contains("PRIVATE KEY BLOCK") {
        return Err(CryptoError::Key("a private key where a public key belongs"));
    }
    let (key, _) =
        SignedPublicKey::from_string(armored).map_err(|_| CryptoError::Key("the key does not parse"))?;
    Ok(key)
}

/// The user ID the key's owner marked primary among those whose self-signature verifies, else the
/// first that verifies: what openpgp.js's `getPrimaryUser()` returns for the keys both clients make.
fn primary_user_id(key: &SignedPublicKey) -> Option<&[u8]> {
    let verified: Vec<_> =
        key.details.users.iter().filter(|u| u.verify_bindings(&key.primary_key).is_ok()).collect();
    verified
        .iter()
        .find(|u| u.signatures.iter().any(|s| s.is_primary()))
        .or_else(|| verified.first())
        .map(|u| u.id.id())
}

/// A subkey bound to the primary key by a verified signature that allows encryption.
fn encryption_subkey(key: &SignedPublicKey) -> Option<&SignedPublicSubKey> {
    key.public_subkeys.iter().find(|sub| {
        sub.verify_bindings(&key.primary_key).is_ok()
            && sub.signatures.iter().any(|s| {
                let flags = s.key_flags();
                flags.encrypt_comms() || flags.encrypt_storage()
            })
    })
}

/// The responder's check (`web-ui.md` §4.5): the key's fingerprint ends in `fp16`, its verified
/// primary user ID is exactly `label` (or the default when the request has none), and it has an
/// encryption subkey. Returns the key to encrypt to.
pub fn verify_request_key(armored: &str, fp16: &str, label: &str) -> Result<SignedPublicKey, CryptoError> {
    let key = read_public_key(armored)?;
    if !hex(key.fingerprint().as_bytes()).ends_with(&fp16.to_ascii_lowercase()) {
        return Err(CryptoError::Key("fingerprint mismatch"));
    }
    let expected = if label.is_empty() { DEFAULT_REQUEST_LABEL } else { label };
    if primary_user_id(&key) != Some(expected.as_bytes()) {
        return Err(CryptoError::Key("label mismatch"));
    }
    if encryption_subkey(&key).is_none() {
        return Err(CryptoError::Key("no encryption subkey"));
    }
    Ok(key)
}

/// Encrypts a text to a verified request key as openpgp.js does for our keys: PKESK v3 to the
/// encryption subkey, SEIPD v1 with MDC, AES-256, UTF-8 literal; armored.
pub fn encrypt_to_key(text: &str, key: &SignedPublicKey) -> Result<String, CryptoError> {
    let subkey = encryption_subkey(key).ok_or(CryptoError::Key("no encryption subkey"))?;
    let data = canonical_eol(text);
    let mut builder =
        MessageBuilder::from_bytes("", data.to_vec()).seipd_v1(OsRng, SymmetricKeyAlgorithm::AES256);
    builder.data_mode(DataMode::Utf8).map_err(|_| CryptoError::Build("message"))?;
    builder.encrypt_to_key(OsRng, subkey).map_err(|_| CryptoError::Build("message"))?;
    builder.to_armored_string(OsRng, ArmorOptions::default()).map_err(|_| CryptoError::Build("message"))
}

/// An imported entry's keys: a private key and a public key, both exactly `fingerprint`.
pub fn check_entry_keys(private_key: &str, public_key: &str, fingerprint: &str) -> Result<(), CryptoError> {
    if private_key.len() > MAX_KEY_BYTES {
        return Err(CryptoError::Key("privateKey is too large"));
    }
    let (private, _) = SignedSecretKey::from_string(private_key)
        .map_err(|_| CryptoError::Key("privateKey is not a private key"))?;
    let public =
        read_public_key(public_key).map_err(|_| CryptoError::Key("publicKey is not a public key"))?;
    if hex(private.fingerprint().as_bytes()) != fingerprint {
        return Err(CryptoError::Key("privateKey has another fingerprint"));
    }
    if hex(public.fingerprint().as_bytes()) != fingerprint {
        return Err(CryptoError::Key("publicKey has another fingerprint"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_22_characters_of_the_web_alphabet_and_differ() {
        let a = new_key().unwrap();
        let b = new_key().unwrap();
        assert_eq!(a.len(), KEY_LENGTH);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{}", a.as_str());
        assert_ne!(a, b);
    }

    #[test]
    fn text_round_trips_with_its_line_endings() {
        let key = new_key().unwrap();
        let msg = encrypt_text("one\ntwo\r\nthree\n", &key).unwrap();
        assert!(msg.starts_with("-----BEGIN PGP MESSAGE-----"));
        let opened = decrypt_with_password(Ciphertext::Armored(&msg), &key, 1000).unwrap();
        assert_eq!(&opened.data[..], b"one\ntwo\nthree\n");
        assert_eq!(opened.file_name, None);
        assert_eq!(
            decrypt_with_password(Ciphertext::Armored(&msg), "not the key", 1000).unwrap_err(),
            CryptoError::WrongKey
        );
    }

    #[test]
    fn a_file_keeps_its_bytes_and_name_and_a_cap_is_kept() {
        let key = new_key().unwrap();
        let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let msg = encrypt_file(&bytes, "report.pdf", &key).unwrap();
        let opened = decrypt_with_password(Ciphertext::Binary(&msg), &key, 5000).unwrap();
        assert_eq!(&opened.data[..], &bytes[..]);
        assert_eq!(opened.file_name.as_deref(), Some("report.pdf"));
        assert_eq!(
            decrypt_with_password(Ciphertext::Binary(&msg), &key, 4999).unwrap_err(),
            CryptoError::TooLarge
        );
    }

    #[test]
    fn a_request_key_verifies_against_its_own_fingerprint_and_label_only() {
        let k = generate_request_key("Prod API key").unwrap();
        assert_eq!(k.fingerprint.len(), 40);
        let fp16 = &k.fingerprint[24..];
        let key = verify_request_key(&k.public_key, fp16, "Prod API key").unwrap();
        assert_eq!(
            verify_request_key(&k.public_key, "0000000000000000", "Prod API key").unwrap_err(),
            CryptoError::Key("fingerprint mismatch")
        );
        assert_eq!(
            verify_request_key(&k.public_key, fp16, "Prod API key!").unwrap_err(),
            CryptoError::Key("label mismatch")
        );
        assert!(verify_request_key(&k.private_key, fp16, "Prod API key").is_err());
        let msg = encrypt_to_key("to the requester\n", &key).unwrap();
        let opened = decrypt_with_private_key(&msg, &k.private_key, 1000).unwrap();
        assert_eq!(&opened.data[..], b"to the requester\n");
        check_entry_keys(&k.private_key, &k.public_key, &k.fingerprint).unwrap();
        let other = generate_request_key("").unwrap();
        assert!(verify_request_key(&other.public_key, &other.fingerprint[24..], "").is_ok());
        assert!(check_entry_keys(&other.private_key, &k.public_key, &k.fingerprint).is_err());
    }
}
