//! The admin socket: how `lethe account …` reaches a running daemon, since redb lets only one process
//! open the database file.
//!
//! A Unix socket `admin.sock` in the data directory (the directory is 0700, the socket 0600), one JSON
//! request line in, one JSON reply line out. Whoever can open it can manage accounts, exactly like
//! whoever can read the database file; no network listener ever serves these commands.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as TokioBufReader};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::App;
use crate::audit::{AuditSink, Event, EventName, Outcome};
use crate::domain::Domain;
use crate::domain::accounts::AccountError;
use crate::domain::team::TeamError;
use crate::domain::team::users::NewUser;
use crate::store;

pub const SOCKET_FILE: &str = "admin.sock";

/// Longest request line accepted; commands are tiny.
const MAX_LINE: u64 = 64 * 1024;

/// How long a client may take to send its request line. The CLI sends it at once; a client that
/// connects and says nothing would otherwise hold a task and a descriptor for ever.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Command {
    AccountAdd {
        name: String,
    },
    AccountList,
    AccountRotateToken {
        name: String,
    },
    AccountRemove {
        name: String,
    },
    /// Write a consistent snapshot of the store to `out` (an absolute path on the daemon's machine).
    Backup {
        out: PathBuf,
    },
    /// Register a team user with their armored public key.
    TeamUserAdd {
        name: String,
        key: String,
        admin: bool,
        first_name: Option<String>,
        last_name: Option<String>,
    },
    TeamUserList,
    TeamUserDisable {
        name: String,
    },
    TeamUserEnable {
        name: String,
    },
    /// The team server key's fingerprint.
    TeamServerKey,
}

/// One team user as `lethe team user list` shows it: never key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamUserRow {
    pub id: String,
    pub name: String,
    pub admin: bool,
    pub fingerprint: String,
    pub disabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    Exists,
    Unknown,
    Invalid,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    Token {
        token: String,
    },
    Accounts {
        accounts: Vec<(String, u64)>,
    },
    Done,
    BackedUp {
        path: PathBuf,
        bytes: u64,
    },
    /// One value printed alone on a line: a new team user's id, the server key's fingerprint.
    Line {
        line: String,
    },
    TeamUsers {
        users: Vec<TeamUserRow>,
    },
    Error {
        failure: Failure,
        message: String,
    },
}

impl From<AccountError> for Reply {
    fn from(err: AccountError) -> Reply {
        let failure = match &err {
            AccountError::Exists => Failure::Exists,
            AccountError::Unknown => Failure::Unknown,
            AccountError::InvalidName => Failure::Invalid,
            AccountError::BadCredentials | AccountError::Contention | AccountError::Store(_) => {
                Failure::Internal
            }
        };
        Reply::Error { failure, message: err.to_string() }
    }
}

impl From<TeamError> for Reply {
    fn from(err: TeamError) -> Reply {
        let failure = match &err {
            TeamError::NameTaken | TeamError::KeyTaken => Failure::Exists,
            TeamError::UnknownUser => Failure::Unknown,
            TeamError::InvalidName | TeamError::Key(_) | TeamError::KeyVersion => Failure::Invalid,
            TeamError::Contention | TeamError::Store(_) => Failure::Internal,
        };
        Reply::Error { failure, message: err.to_string() }
    }
}

async fn execute_team(domain: &Domain, audit: &AuditSink, command: Command) -> Result<Reply, TeamError> {
    let team = &domain.team;
    match command {
        Command::TeamUserAdd { name, key, admin, first_name, last_name } => {
            let new = NewUser {
                username: &name,
                armored_key: &key,
                admin,
                first_name: first_name.as_deref(),
                last_name: last_name.as_deref(),
            };
            let added = team.add_user(new).await;
            admin_audit(domain, audit, EventName::TeamUserCreated, added.as_ref().map(|u| u.id.as_str()));
            added.map(|user| Reply::Line { line: user.id })
        }
        Command::TeamUserList => team.list_users().await.map(|users| Reply::TeamUsers {
            users: users
                .into_iter()
                .map(|u| TeamUserRow {
                    id: u.id,
                    name: u.username,
                    admin: u.admin,
                    fingerprint: u.fingerprint,
                    disabled: u.disabled.is_some(),
                })
                .collect(),
        }),
        Command::TeamUserDisable { name } => {
            let changed = team.set_disabled(&name, true).await;
            admin_audit(domain, audit, EventName::TeamUserDisabled, changed.as_ref().map(|u| u.id.as_str()));
            changed.map(|_| Reply::Done)
        }
        Command::TeamUserEnable { name } => {
            let changed = team.set_disabled(&name, false).await;
            admin_audit(domain, audit, EventName::TeamUserEnabled, changed.as_ref().map(|u| u.id.as_str()));
            changed.map(|_| Reply::Done)
        }
        Command::TeamServerKey => Ok(Reply::Line { line: team.server_key().fingerprint().to_owned() }),
        // `execute` hands only the team commands here.
        _ => Ok(Reply::Error { failure: Failure::Internal, message: "not a team command".into() }),
    }
}

/// The audit line of an operator's change to a team user, made through this socket or the CLI: the
/// operator is not a network client, so the line's client is `admin`.
fn admin_audit<E>(domain: &Domain, audit: &AuditSink, event: EventName, result: Result<&str, &E>) {
    let (outcome, id) = match result {
        Ok(id) => (Outcome::Success, Some(id)),
        Err(_) => (Outcome::Failure, None),
    };
    let mut line = Event::about(domain.now(), event, outcome, "admin".to_owned());
    line.id_hash = id.map(|id| domain.keys.id_hash(id));
    audit.record(&line);
}

/// Runs one command against the domain; used by the socket and by the CLI when no daemon runs. Team
/// user changes are written to `audit`.
pub async fn execute(domain: &Domain, audit: &AuditSink, command: Command) -> Reply {
    let result = match command {
        team @ (Command::TeamUserAdd { .. }
        | Command::TeamUserList
        | Command::TeamUserDisable { .. }
        | Command::TeamUserEnable { .. }
        | Command::TeamServerKey) => {
            return execute_team(domain, audit, team).await.unwrap_or_else(Reply::from);
        }
        Command::AccountAdd { name } => domain.accounts.add(&name).await.map(|token| Reply::Token { token }),
        Command::AccountList => domain.accounts.list().await.map(|accounts| Reply::Accounts {
            accounts: accounts.into_iter().map(|a| (a.name, a.created)).collect(),
        }),
        Command::AccountRotateToken { name } => {
            domain.accounts.rotate_token(&name).await.map(|token| Reply::Token { token })
        }
        Command::AccountRemove { name } => domain.accounts.remove(&name).await.map(|()| Reply::Done),
        // A relative path would be resolved against the daemon's working directory, which the caller
        // neither knows nor chose; the CLI always sends an absolute one.
        Command::Backup { out } if !out.is_absolute() => {
            return Reply::Error {
                failure: Failure::Invalid,
                message: format!("backup path {} is not absolute", out.display()),
            };
        }
        Command::Backup { out } => {
            let (store, now) = (domain.store().clone(), domain.now());
            let path = out.clone();
            let done = tokio::task::spawn_blocking(move || {
                store::backup(store.blocking(), crate::domain::KEYSPACES, &path, now)
            })
            .await;
            return match done {
                Ok(Ok(bytes)) => Reply::BackedUp { path: out, bytes },
                Ok(Err(err)) => {
                    Reply::Error { failure: Failure::Internal, message: format!("backup failed: {err}") }
                }
                Err(err) => {
                    Reply::Error { failure: Failure::Internal, message: format!("backup failed: {err}") }
                }
            };
        }
    };
    result.unwrap_or_else(Reply::from)
}

/// Binds the socket and serves it until shutdown. A stale socket file from a crashed daemon is
/// replaced: the store is already open, so no other daemon owns this data directory.
pub async fn start(app: Arc<App>, shutdown: watch::Receiver<bool>) -> io::Result<JoinHandle<()>> {
    let path = socket_path(&app.domain.settings.data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        let stop = crate::shutdown::wait_for(shutdown);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let app = Arc::clone(&app);
                        tokio::spawn(async move {
                            if let Err(err) = serve_one(&app, stream).await {
                                tracing::debug!(error = %err, "admin connection failed");
                            }
                        });
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = &mut stop => break,
            }
        }
        let _ = std::fs::remove_file(&path);
    }))
}

async fn serve_one(app: &App, stream: tokio::net::UnixStream) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut limited = tokio::io::AsyncReadExt::take(TokioBufReader::new(read), MAX_LINE);
    let reading = limited.read_line(&mut line);
    match tokio::time::timeout(REQUEST_DEADLINE, reading).await {
        Ok(read) => read?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no request line in time")),
    };
    let reply = match serde_json::from_str::<Command>(&line) {
        Ok(command) => {
            let op = match &command {
                Command::AccountAdd { .. } => "account-add",
                Command::AccountList => "account-list",
                Command::AccountRotateToken { .. } => "account-rotate-token",
                Command::AccountRemove { .. } => "account-remove",
                Command::Backup { .. } => "backup",
                Command::TeamUserAdd { .. } => "team-user-add",
                Command::TeamUserList => "team-user-list",
                Command::TeamUserDisable { .. } => "team-user-disable",
                Command::TeamUserEnable { .. } => "team-user-enable",
                Command::TeamServerKey => "team-server-key",
            };
            tracing::info!(op, "admin command");
            execute(&app.domain, &app.audit, command).await
        }
        Err(err) => Reply::Error { failure: Failure::Invalid, message: format!("bad admin request: {err}") },
    };
    let mut out = serde_json::to_vec(&reply).map_err(io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

/// Sends a command to a running daemon. `Ok(None)` when no daemon listens on this data directory.
pub fn call(data_dir: &Path, command: &Command) -> io::Result<Option<Reply>> {
    let stream = match StdUnixStream::connect(socket_path(data_dir)) {
        Ok(stream) => stream,
        Err(err) if matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(err) => return Err(err),
    };
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = serde_json::to_vec(command).map_err(io::Error::other)?;
    request.push(b'\n');
    (&stream).write_all(&request)?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    serde_json::from_str(&line).map(Some).map_err(io::Error::other)
}
