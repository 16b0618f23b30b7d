//! The team surface's server key: the one private OpenPGP key the server holds, used only for the
//! GPGAuth login handshake (signing login challenges, decrypting a client's verify token). It never
//! decrypts a secret.
//!
//! It lives in its own armored file beside the master key, created 0600 on first start and refused
//! when group or others may read it, like the master key. The key made here is what GnuPG 2.2 and PGPy
//! 0.6 read: v4, EdDSA-legacy Ed25519 primary with an ECDH Curve25519 encryption subkey (never v6 keys
//! or the RFC 9580 algorithm ids, which those clients cannot parse). An operator may point the file at
//! an existing key (Passbolt's) so that clients which pinned it keep working.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pgp::composed::{
    ArmorOptions, Deserializable, EncryptionCaps, KeyType, Message, MessageBuilder, SecretKeyParamsBuilder,
    SignedPublicKey, SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::{KeyDetails, KeyVersion, Password};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

/// The user id of a key made here; clients show it when they pin the server key.
const USER_ID: &str = "lethe team server key";

/// Largest key file read; a real secret key with a few user ids is a few KiB.
const MAX_FILE_BYTES: u64 = 256 * 1024;

/// Why the server key could not be loaded or made. Never carries key material.
#[derive(Debug)]
pub enum ServerKeyError {
    /// The file could not be read or created.
    File { path: PathBuf, source: io::Error },
    /// Group or others may read the file.
    Permissions { path: PathBuf, mode: u32 },
    /// The file is not one armored OpenPGP secret key usable for the handshake.
    Unusable { path: PathBuf, reason: &'static str },
    /// Generating a key failed (the OS CSPRNG or rPGP).
    Generate,
}

impl fmt::Display for ServerKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerKeyError::File { path, source } => {
                write!(f, "team server key file {}: {source}", path.display())
            }
            ServerKeyError::Permissions { path, mode } => write!(
                f,
                "team server key file {} is readable by group or others (mode {mode:04o}); run chmod 600 on it",
                path.display()
            ),
            ServerKeyError::Unusable { path, reason } => {
                write!(f, "team server key file {}: {reason}", path.display())
            }
            ServerKeyError::Generate => f.write_str("cannot generate the team server key"),
        }
    }
}

impl std::error::Error for ServerKeyError {}

/// The loaded server key: the secret key for the handshake and its public half as clients fetch it.
pub struct ServerKey {
    secret: SignedSecretKey,
    public_armored: String,
    fingerprint: String,
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKey").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

impl ServerKey {
    /// Loads the key at `path`, or makes one there (0600, never replacing a file) when none exists.
    pub fn load_or_create(path: &Path) -> Result<ServerKey, ServerKeyError> {
        let io_err = |source| ServerKeyError::File { path: path.to_owned(), source };
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(mut file) => {
                let armored = generate()?;
                file.write_all(armored.as_bytes()).and_then(|()| file.sync_all()).map_err(io_err)?;
                return ServerKey::from_armored(&armored)
                    .map_err(|reason| ServerKeyError::Unusable { path: path.to_owned(), reason });
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(io_err(err)),
        }
        let mode = fs::metadata(path).map_err(io_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ServerKeyError::Permissions { path: path.to_owned(), mode });
        }
        let mut text = Zeroizing::new(String::new());
        fs::File::open(path)
            .and_then(|f| f.take(MAX_FILE_BYTES).read_to_string(&mut text))
            .map_err(io_err)?;
        ServerKey::from_armored(&text)
            .map_err(|reason| ServerKeyError::Unusable { path: path.to_owned(), reason })
    }

    fn from_armored(armored: &str) -> Result<ServerKey, &'static str> {
        let (secret, _) = SignedSecretKey::from_string(armored)
            .map_err(|_| "not an armored OpenPGP secret key (PGP PRIVATE KEY BLOCK)")?;
        if secret.primary_key.version() != KeyVersion::V4 {
            return Err("not a v4 key; the team clients read v4 keys only");
        }
        secret.verify_bindings().map_err(|_| "its self-signatures do not verify")?;
        let public: SignedPublicKey = secret.to_public_key();
        let public_armored = public
            .to_armored_string(ArmorOptions::default())
            .map_err(|_| "its public key cannot be armored")?;
        let fingerprint = super::hex(secret.fingerprint().as_bytes()).to_ascii_uppercase();
        Ok(ServerKey { secret, public_armored, fingerprint })
    }

    /// The primary key's fingerprint, 40 upper-case hex characters, as `/auth/verify.json` gives it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The armored public key, as `/auth/verify.json` gives it.
    pub fn public_armored(&self) -> &str {
        &self.public_armored
    }

    /// The secret key, for the handshake.
    pub fn secret(&self) -> &SignedSecretKey {
        &self.secret
    }
}

/// Largest verify token (stage 0) read: a nonce encrypted to this key is well under 2 KiB.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

impl ServerKey {
    /// Decrypts a client's stage-0 verify token with the server key; `None` for anything that is not
    /// a message to this key. The plaintext is at most `max` bytes.
    pub fn decrypt(&self, armored: &str, max: usize) -> Option<Zeroizing<Vec<u8>>> {
        if armored.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let (message, _) = Message::from_armor(std::io::BufReader::new(armored.as_bytes())).ok()?;
        let mut message = message.decrypt(&Password::empty(), &self.secret).ok()?;
        for _ in 0..4 {
            if !message.is_compressed() {
                break;
            }
            message = message.decompress().ok()?;
        }
        let mut data = Zeroizing::new(Vec::new());
        (&mut message).take(max as u64 + 1).read_to_end(&mut data).ok()?;
        (data.len() <= max).then_some(data)
    }

    /// The stage-1 challenge (`team.md` §3.5): `nonce` as a binary literal, signed by the server key,
    /// encrypted to the user's encryption subkey in a SEIPD v1 packet (what GnuPG 2.2 and PGPy read),
    /// armored with no headers. `None` when the user's key offers no encryption subkey.
    pub fn challenge(&self, nonce: &str, user_key: &str) -> Option<String> {
        let (key, _) = SignedPublicKey::from_string(user_key).ok()?;
        let subkey = key.public_subkeys.iter().find(|sub| {
            sub.verify_bindings(&key.primary_key).is_ok()
                && sub.signatures.iter().any(|s| {
                    let flags = s.key_flags();
                    flags.encrypt_comms() || flags.encrypt_storage()
                })
        })?;
        let mut builder = MessageBuilder::from_bytes("", nonce.as_bytes().to_vec())
            .seipd_v1(OsRng, SymmetricKeyAlgorithm::AES256);
        builder.sign(&self.secret.primary_key, Password::empty(), HashAlgorithm::Sha256);
        builder.encrypt_to_key(OsRng, subkey).ok()?;
        builder.to_armored_string(OsRng, ArmorOptions::default()).ok()
    }
}

/// A fresh unprotected v4 Ed25519 / Curve25519 key, armored. Unprotected because the daemon must use
/// it unattended; the file's mode is what protects it, as for the master key.
fn generate() -> Result<Zeroizing<String>, ServerKeyError> {
    let subkey = SubkeyParamsBuilder::default()
        .version(KeyVersion::V4)
        .key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
        .can_encrypt(EncryptionCaps::All)
        .build()
        .map_err(|_| ServerKeyError::Generate)?;
    let params = SecretKeyParamsBuilder::default()
        .version(KeyVersion::V4)
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(USER_ID.to_owned())
        .subkey(subkey)
        .build()
        .map_err(|_| ServerKeyError::Generate)?;
    let secret = params.generate(OsRng).map_err(|_| ServerKeyError::Generate)?;
    secret
        .to_armored_string(ArmorOptions::default())
        .map(Zeroizing::new)
        .map_err(|_| ServerKeyError::Generate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_made_0600_and_loads_again_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("team-server-key.asc");
        let made = ServerKey::load_or_create(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(made.fingerprint().len(), 40);
        assert!(made.fingerprint().bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
        let loaded = ServerKey::load_or_create(&path).unwrap();
        assert_eq!(made.fingerprint(), loaded.fingerprint());
        assert!(loaded.public_armored().contains("BEGIN PGP PUBLIC KEY BLOCK"));
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("team-server-key.asc");
        ServerKey::load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = ServerKey::load_or_create(&path).unwrap_err();
        assert!(matches!(err, ServerKeyError::Permissions { .. }), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_secret_key_is_refused_without_being_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("team-server-key.asc");
        fs::write(&path, "not a key").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = ServerKey::load_or_create(&path).unwrap_err();
        assert!(matches!(err, ServerKeyError::Unusable { .. }), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a key");
    }
}
