//! TEMP untracked stub with the agreed signatures; replaced by the pgp branch.
#![allow(dead_code, unused_variables)]
pub const MAX_PUBLIC_KEY_BYTES: usize = 16 * 1024;
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    pub fingerprint: String,
    pub expires_at: Option<u64>,
    pub encryption_keys: Vec<([u8; 8], Vec<u8>)>,
}
impl PublicKeyInfo {
    pub fn fp16(&self) -> &str {
        &self.fingerprint[self.fingerprint.len().saturating_sub(16)..]
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    TooLarge,
    Malformed(String),
    NotArmoredPublicKey,
    SecretKeyMaterial,
    NotExactlyOnePrimaryKey,
    NoEncryptionSubkey,
    Expired,
    Revoked,
}
impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
pub fn validate_public_key(armored: &str, now: u64) -> Result<PublicKeyInfo, KeyError> {
    if armored.contains("PUBLIC KEY") {
        Ok(PublicKeyInfo {
            fingerprint: "0123456789abcdef0123456789abcdef01234567".into(),
            expires_at: None,
            encryption_keys: vec![([1; 8], vec![1; 20])],
        })
    } else {
        Err(KeyError::NotArmoredPublicKey)
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    pub recipients: Vec<Vec<u8>>,
    pub anonymous_recipients: usize,
    pub password_encrypted: bool,
}
impl MessageInfo {
    pub fn is_encrypted_to(&self, key: &PublicKeyInfo) -> bool {
        self.recipients
            .iter()
            .any(|r| key.encryption_keys.iter().any(|(id, fp)| r.as_slice() == id || r == fp))
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    TooLarge,
    NotEncrypted,
}
pub fn inspect_message(armored: &str, max_bytes: usize) -> Result<MessageInfo, MessageError> {
    if armored.len() > max_bytes {
        return Err(MessageError::TooLarge);
    }
    if armored.contains("PGP MESSAGE") {
        Ok(MessageInfo { recipients: vec![vec![1; 8]], anonymous_recipients: 0, password_encrypted: true })
    } else {
        Err(MessageError::NotEncrypted)
    }
}
pub fn inspect_binary_message(bytes: &[u8], max_bytes: usize) -> Result<MessageInfo, MessageError> {
    if bytes.len() > max_bytes {
        return Err(MessageError::TooLarge);
    }
    if bytes.first() == Some(&0xc3) {
        Ok(MessageInfo { recipients: vec![], anonymous_recipients: 0, password_encrypted: true })
    } else {
        Err(MessageError::NotEncrypted)
    }
}
