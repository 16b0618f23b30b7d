//! GPGAuth login (`team.md` §3.4–3.6): single-use login tokens and the sessions they open.
//!
//! A login token is a UUID v4 the server hands out inside the stage-1 challenge; it is stored only as
//! its SHA-256 with the user it was issued to, expires after `team.login_token_seconds`, and is used
//! up by the stage 2 that presents it — also by one under another user's key, since then someone else
//! holds it. A session is a random value in the `passbolt_session` cookie, stored as its SHA-256 with
//! its CSRF token; it ends after `team.session_idle_seconds` unused, `team.session_max_seconds` after
//! login, at logout, and at once when its user is disabled (checked on every use).

use serde::{Deserialize, Serialize};

use super::users::User;
use super::{Kind, TEAM, Team, TeamError, new_uuid, store_key};
use crate::crypto::{hex, new_token, random_bytes, sha256};
use crate::store::{Batch, Outcome, Timestamp};

/// Protocol marker on both ends of a nonce.
const NONCE_VERSION: &str = "gpgauthv1.3.0";

/// A session is written back on use only when its last-use mark is older than this, so a busy
/// client does not turn every read into a write; idle expiry is that much coarser.
const TOUCH_AFTER_SECONDS: u64 = 60;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoginToken {
    user_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionRecord {
    user_id: String,
    csrf_token: String,
    created: Timestamp,
    last_used: Timestamp,
}

/// A session just opened: the cookie value and its CSRF token, shown to the client once.
#[derive(Clone)]
pub struct NewSession {
    pub cookie: String,
    pub csrf_token: String,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewSession(<redacted>)")
    }
}

/// A live session's user and CSRF token.
#[derive(Clone)]
pub struct Session {
    pub user: User,
    pub csrf_token: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("user", &self.user.id).finish_non_exhaustive()
    }
}

/// Why a stage 2 failed; the audit reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    /// Not exactly a nonce.
    BadNonce,
    /// Never issued, expired or already used.
    UnknownToken,
    /// Issued to another user; it is used up now.
    OtherUser,
}

/// The token inside `gpgauthv1.3.0|36|<uuid>|gpgauthv1.3.0`, compared byte for byte (no trimming).
pub fn nonce_token(nonce: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(nonce).ok()?;
    let mut parts = text.split('|');
    let (v1, len, token, v2) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let ok = parts.next().is_none()
        && v1 == NONCE_VERSION
        && v2 == NONCE_VERSION
        && len == "36"
        && super::is_uuid(token);
    ok.then_some(token)
}

pub fn nonce(token: &str) -> String {
    format!("{NONCE_VERSION}|36|{token}|{NONCE_VERSION}")
}

fn token_key(token: &str) -> Vec<u8> {
    store_key(
        Kind::LoginToken,
        &sha256(format!("lethe/team/login/{}", token.to_ascii_lowercase()).as_bytes()),
    )
}

fn session_key(cookie: &str) -> Vec<u8> {
    store_key(Kind::Session, &sha256(format!("lethe/team/session/{cookie}").as_bytes()))
}

impl Team {
    /// Issues a stage-1 login token for `user`; returns the nonce that carries it.
    pub async fn issue_login_token(&self, user: &User) -> Result<String, TeamError> {
        let token = new_uuid();
        let now = self.now();
        let key = token_key(&token);
        let expires = now + self.settings.team.login_token_seconds;
        let record = LoginToken { user_id: user.id.clone() };
        let batch = Batch::new().require_absent(TEAM, key.clone()).put(
            TEAM,
            key.clone(),
            self.seal(&key, &record),
            Some(expires),
        );
        match self.store.apply(batch, now).await? {
            Outcome::Applied(_) => Ok(nonce(&token)),
            Outcome::Conflict(_) => Err(TeamError::Contention),
        }
    }

    /// Stage 2: uses up the token in `presented` and, when it was issued to `user`, opens a session in
    /// the same batch.
    pub async fn redeem(
        &self,
        user: &User,
        presented: &[u8],
    ) -> Result<Result<NewSession, LoginRefusal>, TeamError> {
        let Some(token) = nonce_token(presented) else {
            return Ok(Err(LoginRefusal::BadNonce));
        };
        let now = self.now();
        let key = token_key(token);
        let Some(entry) = self.store.get(TEAM, key.clone(), now).await? else {
            return Ok(Err(LoginRefusal::UnknownToken));
        };
        let record: LoginToken = self.open(&key, &entry.value)?;
        let mut batch = Batch::new().require_version(TEAM, key.clone(), entry.version).delete(TEAM, key);
        let opened = if record.user_id == user.id {
            let cookie = hex(&random_bytes::<32>());
            let csrf_token = new_token();
            let sk = session_key(&cookie);
            let session = SessionRecord {
                user_id: user.id.clone(),
                csrf_token: csrf_token.clone(),
                created: now,
                last_used: now,
            };
            let expires = now + self.settings.team.session_max_seconds;
            batch = batch.require_absent(TEAM, sk.clone()).put(
                TEAM,
                sk.clone(),
                self.seal(&sk, &session),
                Some(expires),
            );
            Some(NewSession { cookie, csrf_token })
        } else {
            None
        };
        match self.store.apply(batch, now).await? {
            // A concurrent stage 2 took the token first.
            Outcome::Conflict(_) => Ok(Err(LoginRefusal::UnknownToken)),
            Outcome::Applied(_) => Ok(opened.ok_or(LoginRefusal::OtherUser)),
        }
    }

    /// The live session behind a cookie value: not expired (idle or absolute), its user enabled.
    pub async fn session(&self, cookie: &str) -> Result<Option<Session>, TeamError> {
        let now = self.now();
        let key = session_key(cookie);
        let Some(entry) = self.store.get(TEAM, key.clone(), now).await? else {
            return Ok(None);
        };
        let mut record: SessionRecord = self.open(&key, &entry.value)?;
        if now.saturating_sub(record.last_used) >= self.settings.team.session_idle_seconds {
            return Ok(None);
        }
        let Some((user, _)) = self.user_by_id(&record.user_id).await? else {
            return Ok(None);
        };
        if user.disabled.is_some() {
            return Ok(None);
        }
        if now.saturating_sub(record.last_used) >= TOUCH_AFTER_SECONDS {
            record.last_used = now;
            let expires = record.created + self.settings.team.session_max_seconds;
            let batch = Batch::new().require_version(TEAM, key.clone(), entry.version).put(
                TEAM,
                key.clone(),
                self.seal(&key, &record),
                Some(expires),
            );
            // Losing the race to a concurrent use only means that one wrote the mark.
            self.store.apply(batch, now).await?;
        }
        Ok(Some(Session { user, csrf_token: record.csrf_token }))
    }

    /// Ends the session behind a cookie value, if any.
    pub async fn logout(&self, cookie: &str) -> Result<(), TeamError> {
        let key = session_key(cookie);
        self.store.apply(Batch::new().delete(TEAM, key), self.now()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_exactly_the_gpgauth_form() {
        let token = new_uuid();
        let good = nonce(&token);
        assert_eq!(nonce_token(good.as_bytes()), Some(token.as_str()));
        for bad in [
            format!("{good}\\n"),
            format!(" {good}"),
            format!("gpgauthv1.3.0|37|{token}|gpgauthv1.3.0"),
            format!("gpgauthv1.2.0|36|{token}|gpgauthv1.3.0"),
            format!("gpgauthv1.3.0|36|{token}|gpgauthv1.3.0|"),
            "gpgauthv1.3.0|36|not-a-uuid-at-all-not-a-uuid-at-all!|gpgauthv1.3.0".to_owned(),
        ] {
            assert_eq!(nonce_token(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
