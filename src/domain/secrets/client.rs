//! Client-encrypted one-time secrets and files: the server holds ciphertext it cannot read, checks
//! only that it is an OpenPGP message within limits, and hands it back once. Its records share
//! `SecretRecord` with the v1 lifecycle, so an id belongs to exactly one kind.

use super::*;

/// A secret the client encrypted: the server holds ciphertext it cannot read. Its record is stored
/// sealed as a whole under the secret's id ([`codec::SEALED_VERSION`]), so no byte the client chose
/// reaches the database file; records written in clear before that still decode.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct ClientSecret {
    payload: Payload,
    data: Vec<u8>,
    /// The expiration given at creation, in seconds; clients expect it back, not the time left.
    expiration: u64,
    one_time: bool,
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSecret")
            .field("payload", &self.payload)
            .field("bytes", &self.data.len())
            .field("one_time", &self.one_time)
            .finish()
    }
}

/// The client-encrypted secret in a stored [`SecretRecord`] if it carries `payload`: sealed under its
/// id, or in clear as databases written before sealing hold it. `None` for any other record.
pub(super) fn open_client(
    value: &[u8],
    opener: &Opener,
    payload: Payload,
) -> Result<Option<ClientSecret>, StoreError> {
    let open = |sealed: &[u8]| opener.open(sealed).map_err(|err| StoreError::Corrupt(err.to_string()));
    match codec::decode_sealed::<SecretRecord>(value, open)? {
        SecretRecord::Client(secret) if secret.payload == payload => Ok(Some(secret)),
        _ => Ok(None),
    }
}

/// A client-encrypted secret as handed back.
pub struct ClientOpened {
    pub data: Vec<u8>,
    pub expiration: u64,
    pub one_time: bool,
}

impl fmt::Debug for ClientOpened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOpened").field("one_time", &self.one_time).finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub enum ClientError {
    /// Not one of the allowed expirations.
    InvalidExpiration,
    /// Over the size limit.
    TooLong,
    /// Not an OpenPGP message: armor, session-key packet, encrypted data.
    NotEncrypted,
    /// Unknown, consumed, deleted or expired, or an id of another kind.
    NotFound,
    /// A record kept changing under concurrent writers until the retries were spent
    /// (`CAS_RETRIES`); nothing was changed. Trying again later may succeed.
    Contention,
    /// A newly made id's store key was already taken. With 128 random bits that means the random
    /// source is broken; nothing was stored.
    Collision,
    Store(StoreError),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::InvalidExpiration => f.write_str("expiration not allowed"),
            ClientError::TooLong => f.write_str("ciphertext over the size limit"),
            ClientError::NotEncrypted => f.write_str("not an OpenPGP encrypted message"),
            ClientError::NotFound => f.write_str("secret not found"),
            ClientError::Contention => f.write_str("record changed concurrently too often"),
            ClientError::Collision => f.write_str("id collision"),
            ClientError::Store(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<StoreError> for ClientError {
    fn from(err: StoreError) -> ClientError {
        ClientError::Store(err)
    }
}

impl ClientSecrets {
    /// Stores a client-encrypted secret after checking that it is OpenPGP ciphertext within limits.
    pub async fn create(
        &self,
        payload: Payload,
        data: Vec<u8>,
        expiration: u64,
        one_time: bool,
    ) -> Result<String, ClientError> {
        if !self.settings.expirations.contains(&expiration) {
            return Err(ClientError::InvalidExpiration);
        }
        let limits = &self.settings.limits;
        let checked = match payload {
            Payload::Message => {
                let text = std::str::from_utf8(&data).map_err(|_| ClientError::NotEncrypted)?;
                openpgp::inspect_message(text, limits.max_message_bytes)
            }
            Payload::File => openpgp::inspect_binary_message(&data, limits.max_file_bytes),
        };
        match checked {
            Ok(_) => {}
            Err(MessageError::TooLarge) => return Err(ClientError::TooLong),
            Err(MessageError::NotEncrypted) => return Err(ClientError::NotEncrypted),
        }
        let now = self.now();
        let id = self.keys.new_id();
        let hash = self.keys.store_key(&id);
        let expires_at = now + expiration;
        let record = self.seal_client(&id, ClientSecret { payload, data, expiration, one_time });
        let batch = Batch::new().require_absent(SECRET, hash).put(SECRET, hash, record, Some(expires_at));
        match self.store.apply(batch, now).await? {
            Outcome::Applied(_) => Ok(id),
            Outcome::Conflict(_) => Err(ClientError::Collision),
        }
    }

    /// Hands back a client-encrypted secret; a one-time secret is taken in the same step, so of
    /// concurrent reads exactly one gets it.
    ///
    /// It is planned (one trip to the store writer) because most client secrets are one-time. A
    /// reusable one's plan writes nothing, so redb answers it before the commit unless a write came
    /// before it in its group; then it waits for that commit, which only adds the commit's latency.
    pub async fn read(&self, id: &str, payload: Payload) -> Result<ClientOpened, ClientError> {
        let hash = self.keys.store_key(id);
        // Derived here, so the plan on the store's writer only decrypts; opened before the take, so a
        // record that cannot be opened is left in place.
        let opener = Arc::new(self.keys.opener(Purpose::ClientSecret, id.as_bytes()));
        for _ in 0..CAS_RETRIES {
            let opener = Arc::clone(&opener);
            let (found, outcome) = self
                .store
                .apply_planned(self.now(), move |lookup| {
                    let Some(entry) = lookup.get(SECRET, &hash)? else { return Ok((None, None)) };
                    let Some(secret) = open_client(&entry.value, &opener, payload)? else {
                        return Ok((None, None));
                    };
                    let batch = secret.one_time.then(|| consume(hash, entry.version));
                    let opened = ClientOpened {
                        data: secret.data,
                        expiration: secret.expiration,
                        one_time: secret.one_time,
                    };
                    Ok((batch, Some(opened)))
                })
                .await?;
            let Some(opened) = found else {
                return Err(ClientError::NotFound);
            };
            match outcome {
                // Consumed by this read, or not one-time (nothing to consume).
                Some(Outcome::Applied(_)) | None => return Ok(opened),
                Some(Outcome::Conflict(_)) => continue,
            }
        }
        Err(ClientError::Contention)
    }

    /// Whether a client-encrypted secret is one-time; never consumes.
    pub async fn status(&self, id: &str, payload: Payload) -> Result<bool, ClientError> {
        match self.read_client(id, payload).await? {
            Some((secret, _)) => Ok(secret.one_time),
            None => Err(ClientError::NotFound),
        }
    }

    pub async fn delete(&self, id: &str, payload: Payload) -> Result<(), ClientError> {
        let hash = self.keys.store_key(id);
        let Some((_, version)) = self.read_client(id, payload).await? else {
            return Err(ClientError::NotFound);
        };
        let batch = Batch::new().require_version(SECRET, hash, version).delete(SECRET, hash);
        match self.store.apply(batch, self.now()).await? {
            Outcome::Applied(_) => Ok(()),
            Outcome::Conflict(_) => Err(ClientError::NotFound),
        }
    }
}
