//! Cryptographic building blocks: ids and tokens from the OS CSPRNG, the store keys ids are kept under,
//! constant-time comparison, the master key with at-rest AEAD, keyed id hashes for logs, and passphrase
//! hashing.
//!
//! Nothing here knows about HTTP or the store; the domain layer decides what gets hashed or sealed.

pub mod key_facts;
pub mod openpgp;
pub mod passphrase;
pub mod server_key;

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest::{SHA256, digest};
use ring::hkdf::{HKDF_SHA256, Prk, Salt};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// `n` bytes from the OS CSPRNG. The OS generator failing is not recoverable: nothing secure can be
/// made without it, so the process stops rather than hand out a guessable id.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if SystemRandom::new().fill(&mut out).is_err() {
        panic!("the operating system's random number generator failed");
    }
    out
}

const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Length of a v1 key: 160 bits written in base 36 take at most 31 digits.
pub const KEY_LEN: usize = 31;

/// 36^6, the largest power of 36 below 2^32: base-36 conversion works six digits at a time on 32-bit
/// limbs, which keeps making and reading keys off the request path's profile.
const BASE36_CHUNK: u64 = 36u64.pow(6);

/// Writes a 160-bit big-endian number as exactly [`KEY_LEN`] lower-case base-36 digits.
fn encode_base36(bytes: &[u8; 20]) -> String {
    let mut limbs = [0u32; 5];
    for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(4)) {
        *limb = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    let mut digits = [b'0'; 36];
    for group in digits.rchunks_exact_mut(6) {
        // Long division of the limbs by 36^6; the remainder is the next six digits.
        let mut rem = 0u64;
        for limb in limbs.iter_mut() {
            let acc = (rem << 32) | u64::from(*limb);
            *limb = (acc / BASE36_CHUNK) as u32;
            rem = acc % BASE36_CHUNK;
        }
        for digit in group.iter_mut().rev() {
            *digit = BASE36[(rem % 36) as usize];
            rem /= 36;
        }
    }
    // 36^31 > 2^160, so the five leading digits of the 36 are always zero.
    String::from_utf8_lossy(&digits[36 - KEY_LEN..]).into_owned()
}

fn base36_digit(c: u8) -> Option<u64> {
    match c {
        b'0'..=b'9' => Some(u64::from(c - b'0')),
        b'a'..=b'z' => Some(u64::from(c - b'a') + 10),
        _ => None,
    }
}

/// Reverses [`encode_base36`]; `None` for anything that is not a base-36 number below 2^160.
fn decode_base36(s: &str) -> Option<[u8; 20]> {
    let mut limbs = [0u32; 5];
    for chunk in s.as_bytes().chunks(6) {
        let mut value = 0u64;
        let mut scale = 1u64;
        for &c in chunk {
            value = value * 36 + base36_digit(c)?;
            scale *= 36;
        }
        // limbs = limbs * scale + value, from the least significant limb up.
        let mut carry = value;
        for limb in limbs.iter_mut().rev() {
            let acc = u64::from(*limb) * scale + carry;
            *limb = acc as u32;
            carry = acc >> 32;
        }
        if carry != 0 {
            return None;
        }
    }
    let mut out = [0u8; 20];
    for (chunk, limb) in out.chunks_exact_mut(4).zip(limbs) {
        chunk.copy_from_slice(&limb.to_be_bytes());
    }
    Some(out)
}

/// True for strings that could be a key made by [`MasterKey::new_key`]; anything else is rejected
/// before any store access.
pub fn is_key_shaped(s: &str) -> bool {
    s.len() == KEY_LEN && s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// Length of a client-encrypted secret or secret-request id.
pub const ID_LEN: usize = 32;

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// True for strings that could be an id made by [`MasterKey::new_id`].
pub fn is_id_shaped(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new secret-request management token: 256 bits, URL-safe base64 (43 characters).
pub fn new_request_token() -> String {
    base64url(&random_bytes::<32>())
}

/// A new API token: 160 bits as 40 lower-case hex characters.
pub fn new_token() -> String {
    hex(&random_bytes::<20>())
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

/// SHA-256, the name under which bearer ids and tokens are stored.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest(&SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Compares two digests without an early exit, so timing does not reveal how many leading bytes of a
/// guessed token were right.
pub fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Errors of the crypto layer.
#[derive(Debug)]
pub enum CryptoError {
    /// The master key file could not be read or created.
    KeyFile { path: PathBuf, source: io::Error },
    /// The master key file is readable by group or others.
    KeyFilePermissions { path: PathBuf, mode: u32 },
    /// The master key file does not hold exactly 32 bytes.
    KeyFileLength { path: PathBuf, len: usize },
    /// A sealed value failed authentication: corrupted data or the wrong master key.
    Unseal,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::KeyFile { path, source } => {
                write!(f, "master key file {}: {source}", path.display())
            }
            CryptoError::KeyFilePermissions { path, mode } => write!(
                f,
                "master key file {} is readable by group or others (mode {mode:04o}); run chmod 600 on it",
                path.display()
            ),
            CryptoError::KeyFileLength { path, len } => write!(
                f,
                "master key file {} holds {len} bytes, expected 32; restore the right file",
                path.display()
            ),
            CryptoError::Unseal => f.write_str("stored ciphertext failed authentication"),
        }
    }
}

impl std::error::Error for CryptoError {}

/// What a sealed value is for; part of the key derivation so a ciphertext of one purpose can never be
/// opened as another.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub enum Purpose {
    /// A v1 secret's value, keyed by its secret key.
    SecretValue,
    /// The secret key kept inside a metadata record, keyed by the metadata key.
    MetadataSecretKey,
    /// A metadata key kept in an account's recent list, keyed by the account name.
    RecentMetadataKey,
    /// A client-encrypted secret's whole record (the client's ciphertext with it), keyed by its id.
    ClientSecret,
    /// A secret request's whole record (public key, label, submitted ciphertext), keyed by its id.
    Request,
    /// An outbox entry (addresses, links, labels), keyed by its store key.
    Outbox,
    /// A team record (user, session, login token, resource, secret), keyed by its store key.
    Team,
}

impl Purpose {
    fn salt(self) -> &'static [u8] {
        match self {
            Purpose::SecretValue => b"lethe/v1/secret-value",
            Purpose::MetadataSecretKey => b"lethe/v1/metadata-secret-key",
            Purpose::RecentMetadataKey => b"lethe/v1/recent-metadata-key",
            Purpose::ClientSecret => b"lethe/client-secret-record",
            Purpose::Request => b"lethe/request-record",
            Purpose::Outbox => b"lethe/outbox-entry",
            Purpose::Team => b"lethe/team-record",
        }
    }
}

/// The server's master key. Neither it nor the database alone decrypts anything: every key is derived
/// from it *and* the bearer id of the record.
pub struct MasterKey {
    /// One HKDF pseudo-random key per [`Purpose`], extracted once so the hot path only expands.
    prks: [Prk; 7],
    log_key: hmac::Key,
    /// Masks the creation sequence inside each bearer id (see [`MasterKey::store_key`]).
    locality_key: hmac::Key,
    /// The next creation sequence number; only its order matters, never its value.
    sequence: AtomicU32,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        let hmac_key = |salt: &[u8]| {
            Salt::new(HKDF_SHA256, salt)
                .extract(&bytes)
                .expand(&[], hmac::HMAC_SHA256)
                .map(hmac::Key::from)
                .unwrap_or_else(|_| unreachable!("HKDF output of one block cannot fail"))
        };
        let prk = |p: Purpose| Salt::new(HKDF_SHA256, p.salt()).extract(&bytes);
        let prks = [
            prk(Purpose::SecretValue),
            prk(Purpose::MetadataSecretKey),
            prk(Purpose::RecentMetadataKey),
            prk(Purpose::ClientSecret),
            prk(Purpose::Request),
            prk(Purpose::Outbox),
            prk(Purpose::Team),
        ];
        // Starting from the clock keeps a restarted server appending after what it wrote before (the
        // sequence wraps every 49 days, which only moves where inserts land).
        let start = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u32);
        MasterKey {
            prks,
            log_key: hmac_key(b"lethe/log-id-hash"),
            locality_key: hmac_key(b"lethe/id-locality"),
            sequence: AtomicU32::new(start),
        }
    }

    /// A new v1 bearer key for links: [`KEY_LEN`] lower-case base-36 characters (the shape v1 clients
    /// know from the reference server) holding 128 random bits and the masked creation sequence.
    pub fn new_key(&self) -> String {
        let mut bytes = random_bytes::<20>();
        self.stamp(&mut bytes);
        encode_base36(&bytes)
    }

    /// Two new v1 bearer keys (a secret's and its metadata's) holding one creation sequence, so their
    /// store keys lead with the same four bytes: the records they name form one group, which a store
    /// that spreads groups apart (Redis Cluster) keeps together for the batches that span both.
    pub fn new_key_pair(&self) -> (String, String) {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let (mut first, mut second) = (random_bytes::<20>(), random_bytes::<20>());
        self.stamp_with(&mut first, sequence);
        self.stamp_with(&mut second, sequence);
        (encode_base36(&first), encode_base36(&second))
    }

    /// A new id for client-encrypted secrets and secret requests: [`ID_LEN`] URL-safe base64
    /// characters holding 160 random bits and the masked creation sequence. Its length differs from a
    /// v1 key's, so a path decides its dialect by shape alone.
    pub fn new_id(&self) -> String {
        let mut bytes = random_bytes::<24>();
        self.stamp(&mut bytes);
        base64url(&bytes)
    }

    /// Overwrites the first four bytes of a fresh random id with the next sequence number, masked by a
    /// keyed hash of the id's random rest.
    fn stamp(&self, bytes: &mut [u8]) {
        self.stamp_with(bytes, self.sequence.fetch_add(1, Ordering::Relaxed));
    }

    fn stamp_with(&self, bytes: &mut [u8], sequence: u32) {
        let sequence = sequence.to_be_bytes();
        let (head, random) = bytes.split_at_mut(4);
        let mask = self.locality_mask(random);
        for ((h, s), m) in head.iter_mut().zip(sequence).zip(mask) {
            *h = s ^ m;
        }
    }

    fn locality_mask(&self, random: &[u8]) -> [u8; 4] {
        let tag = hmac::sign(&self.locality_key, random);
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&tag.as_ref()[..4]);
        mask
    }

    /// The name under which the record of a bearer id (v1 key, client-encrypted or request id) is
    /// stored: the id's creation sequence, then the first 28 bytes of SHA-256 of the id.
    ///
    /// A B-tree keyed by plain SHA-256 scatters every insert onto its own leaf, so a group commit of
    /// fifty creates rewrites fifty leaves per table, and a commit's cost grows with the number of
    /// batches in it. Led by the sequence, the records created together sit together, and a group
    /// commit rewrites a few pages per table. The sequence is masked inside the id with a keyed hash
    /// of the id's random part, so a link tells its holder nothing about when or in what order it was
    /// made; the database file shows creation order, which its expiry index shows anyway. Strings that
    /// are not shaped like an id still get a key, which simply matches nothing.
    pub fn store_key(&self, id: &str) -> [u8; 32] {
        let decoded = if is_key_shaped(id) {
            decode_base36(id).map(Vec::from)
        } else if is_id_shaped(id) {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(id).ok()
        } else {
            None
        };
        let mut key = [0u8; 32];
        if let Some(bytes) = decoded.filter(|b| b.len() > 4) {
            let (head, random) = bytes.split_at(4);
            for ((k, h), m) in key.iter_mut().zip(head).zip(self.locality_mask(random)) {
                *k = h ^ m;
            }
        }
        key[4..].copy_from_slice(&sha256(id.as_bytes())[..28]);
        key
    }

    /// Reads the key file, creating it (mode 0600, 32 random bytes) when absent. Refuses a file that
    /// group or others can read.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, CryptoError> {
        let io_err = |source| CryptoError::KeyFile { path: path.to_owned(), source };
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(mut file) => {
                let bytes = random_bytes::<32>();
                file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(io_err)?;
                return Ok(MasterKey::from_bytes(bytes));
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(io_err(err)),
        }
        let mode = fs::metadata(path).map_err(io_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CryptoError::KeyFilePermissions { path: path.to_owned(), mode });
        }
        let mut data = Vec::with_capacity(33);
        fs::File::open(path).and_then(|f| f.take(64).read_to_end(&mut data)).map_err(io_err)?;
        let bytes: [u8; 32] = data
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::KeyFileLength { path: path.to_owned(), len: data.len() })?;
        Ok(MasterKey::from_bytes(bytes))
    }

    fn aead_key(&self, purpose: Purpose, id: &[u8]) -> LessSafeKey {
        let info = [id];
        let okm = self.prks[purpose as usize]
            .expand(&info, &AES_256_GCM)
            .unwrap_or_else(|_| unreachable!("HKDF output of one AES key cannot fail"));
        LessSafeKey::new(UnboundKey::from(okm))
    }

    /// Encrypts `plaintext` under the key for (`purpose`, `id`); output is nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, purpose: Purpose, id: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let key = self.aead_key(purpose, id);
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce_bytes);
        let mut body = plaintext.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::empty(), &mut body)
            .unwrap_or_else(|_| unreachable!("AES-GCM sealing fails only past 64 GiB"));
        out.extend_from_slice(&body);
        out
    }

    /// Reverses [`MasterKey::seal`].
    pub fn open(&self, purpose: Purpose, id: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.opener(purpose, id).open(sealed)
    }

    /// The key that opens what [`MasterKey::seal`] sealed for (`purpose`, `id`), derived now, so
    /// that opening later costs only the decryption.
    pub fn opener(&self, purpose: Purpose, id: &[u8]) -> Opener {
        Opener(self.aead_key(purpose, id))
    }

    /// A keyed hash of an id for logs and the audit trail: 12 hex characters, stable for one master key,
    /// useless for finding the record without it.
    pub fn id_hash(&self, id: &str) -> String {
        let tag = hmac::sign(&self.log_key, id.as_bytes());
        let mut s = hex(&tag.as_ref()[..6]);
        s.truncate(12);
        s
    }
}

/// A derived key for one sealed value (see [`MasterKey::opener`]).
pub struct Opener(LessSafeKey);

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Opener")
    }
}

impl Opener {
    /// The plaintext of `sealed`, or [`CryptoError::Unseal`] if it was not sealed under this key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(CryptoError::Unseal);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Unseal)?;
        let mut body = body.to_vec();
        let plain_len =
            self.0.open_in_place(nonce, Aad::empty(), &mut body).map_err(|_| CryptoError::Unseal)?.len();
        body.truncate(plain_len);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_31_base36_characters_and_distinct() {
        let mk = MasterKey::from_bytes([3; 32]);
        let a = mk.new_key();
        let b = mk.new_key();
        assert_eq!(a.len(), KEY_LEN);
        assert!(is_key_shaped(&a), "{a}");
        assert_ne!(a, b);
        assert!(!is_key_shaped("UPPERCASE0000000000000000000000"));
        assert!(!is_key_shaped("short"));
        assert_eq!(new_token().len(), 40);
        let id = mk.new_id();
        assert!(is_id_shaped(&id) && !is_key_shaped(&id), "{id}");
        assert!(!is_id_shaped(&a));
        assert_eq!(new_request_token().len(), 43);
    }

    #[test]
    fn base36_round_trips_every_160_bit_number_and_refuses_larger_ones() {
        let mut one = [0u8; 20];
        one[19] = 1;
        for bytes in [[0u8; 20], one, [0xff; 20], random_bytes::<20>(), random_bytes::<20>()] {
            let text = encode_base36(&bytes);
            assert!(is_key_shaped(&text), "{text}");
            assert_eq!(decode_base36(&text), Some(bytes));
        }
        // 36^31 > 2^160: the largest 31-digit numbers do not fit, and are not keys.
        assert_eq!(decode_base36(&"z".repeat(KEY_LEN)), None);
        assert_eq!(decode_base36("Z"), None);
        assert_eq!(encode_base36(&one), format!("{}1", "0".repeat(KEY_LEN - 1)));
        assert_eq!(encode_base36(&[0xff; 20]), "twj4yidkw7a8pn4g709kzmfoaol3x8f");
        // The same numbers as the digit-by-digit definition gives, for every length of input.
        assert_eq!(
            decode_base36("z"),
            Some({
                let mut b = [0u8; 20];
                b[19] = 35;
                b
            })
        );
        assert_eq!(
            decode_base36("100"),
            Some({
                let mut b = [0u8; 20];
                b[18] = 5;
                b[19] = 16;
                b
            })
        );
    }

    #[test]
    fn a_key_pair_shares_its_creation_sequence_and_nothing_else() {
        let mk = MasterKey::from_bytes([9; 32]);
        let (a, b) = mk.new_key_pair();
        assert_ne!(a, b);
        let (ka, kb) = (mk.store_key(&a), mk.store_key(&b));
        assert_eq!(ka[..4], kb[..4], "one group");
        assert_ne!(ka[4..], kb[4..]);
        let (c, _) = mk.new_key_pair();
        assert_ne!(mk.store_key(&c)[..4], ka[..4], "the next pair has the next sequence");
        // The shared sequence is masked differently in each: the links do not show they belong together.
        assert_ne!(a.as_bytes()[..4], b.as_bytes()[..4]);
    }

    #[test]
    fn store_keys_follow_creation_order_which_the_ids_hide() {
        let mk = MasterKey::from_bytes([4; 32]);
        let prefix = |key: [u8; 32]| u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
        let keys: Vec<String> = (0..4).map(|_| mk.new_key()).collect();
        let ids: Vec<String> = (0..4).map(|_| mk.new_id()).collect();
        let sequences: Vec<u32> = keys.iter().chain(&ids).map(|k| prefix(mk.store_key(k))).collect();
        for pair in sequences.windows(2) {
            assert_eq!(pair[1], pair[0].wrapping_add(1), "{sequences:?}");
        }
        // The rest of the store key is the id's SHA-256, so two ids never share a key.
        assert_eq!(mk.store_key(&keys[0])[4..], sha256(keys[0].as_bytes())[..28]);
        // The sequence is masked: without the master key the ids' leading bytes are not in order.
        let other = MasterKey::from_bytes([5; 32]);
        let unmasked: Vec<u32> = keys.iter().map(|k| prefix(other.store_key(k))).collect();
        assert!(unmasked.windows(2).any(|p| p[1] != p[0].wrapping_add(1)), "{unmasked:?}");
        // Anything else still has a key, which no record is stored under.
        assert_eq!(mk.store_key("not an id")[..4], [0; 4]);
        assert_eq!(mk.store_key(&"z".repeat(KEY_LEN))[..4], [0; 4]);
    }

    #[test]
    fn sealing_is_bound_to_purpose_and_id() {
        let mk = MasterKey::from_bytes([7; 32]);
        let sealed = mk.seal(Purpose::SecretValue, b"id-1", b"hello");
        assert_eq!(mk.open(Purpose::SecretValue, b"id-1", &sealed).unwrap(), b"hello");
        assert!(mk.open(Purpose::SecretValue, b"id-2", &sealed).is_err());
        assert!(mk.open(Purpose::MetadataSecretKey, b"id-1", &sealed).is_err());
        assert!(mk.open(Purpose::ClientSecret, b"id-1", &sealed).is_err());
        let record = mk.seal(Purpose::Request, b"id-1", b"hello");
        assert_eq!(mk.open(Purpose::Request, b"id-1", &record).unwrap(), b"hello");
        assert!(mk.open(Purpose::ClientSecret, b"id-1", &record).is_err());
        assert!(MasterKey::from_bytes([8; 32]).open(Purpose::SecretValue, b"id-1", &sealed).is_err());
        assert!(mk.open(Purpose::SecretValue, b"id-1", &sealed[..10]).is_err());
    }

    #[test]
    fn master_key_file_is_created_private_and_refused_when_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let first = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(first.id_hash("x"), again.id_hash("x"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, b"short").unwrap();
        assert!(matches!(MasterKey::load_or_create(&path), Err(CryptoError::KeyFileLength { .. })));
    }

    #[test]
    fn id_hashes_are_short_keyed_and_stable() {
        let mk = MasterKey::from_bytes([1; 32]);
        assert_eq!(mk.id_hash("abc").len(), 12);
        assert_eq!(mk.id_hash("abc"), mk.id_hash("abc"));
        assert_ne!(mk.id_hash("abc"), MasterKey::from_bytes([2; 32]).id_hash("abc"));
    }

    #[test]
    fn digest_comparison() {
        assert!(digests_equal(&sha256(b"a"), &sha256(b"a")));
        assert!(!digests_equal(&sha256(b"a"), &sha256(b"b")));
    }
}
