//! The command line: `lethe serve`, `lethe account …`, `lethe config`, `lethe bench`, and the client
//! commands `lethe send`, `receive` and `request …` (in [`crate::client`]). Flags are
//! `Option`s merged last over the file and environment, so they always win.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::admin::{self, Command, Failure, Reply};
use crate::audit::AuditSink;
use crate::clock::{SystemClock, rfc3339};
use crate::config::{self, Overrides, Settings, Sources};
use crate::server;
use crate::store::Engine;

#[derive(Debug, Parser)]
#[command(name = "lethe", version, about = "Hand a secret from one person to another exactly once")]
pub struct Cli {
    /// Configuration file (TOML). Default: /etc/lethe/lethe.toml when it exists.
    #[arg(long, global = true, env = "LETHE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the store, the master key and the admin socket. Default: ./lethe-data, or
    /// $STATE_DIRECTORY under systemd.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the server until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Manage API accounts (works whether or not the daemon is running).
    #[command(subcommand)]
    Account(AccountCmd),
    /// Print the resolved configuration as TOML, secrets redacted.
    Config(ServeArgs),
    /// Write a consistent snapshot of the database while the daemon serves (or of the stopped
    /// store); `lethe serve` runs on it together with the same master key.
    Backup {
        /// Where to write the snapshot (a new file; an existing one is never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Load-test a server (its own in-process one, or --url) and print throughput, latency and a
    /// capacity estimate.
    Bench(crate::bench::BenchArgs),
    /// Encrypt a secret here (stdin, or --file) and print its link, as the web UI makes them.
    Send(crate::client::SendArgs),
    /// Open a secret link: fetch, decrypt here, print the text or save the file.
    Receive(crate::client::ReceiveArgs),
    /// Request a secret end-to-end encrypted to a key made here, answer a request, manage requests.
    Request(crate::client::RequestArgs),
    /// Manage team users and show the team server key (works whether or not the daemon is running).
    #[command(subcommand)]
    Team(TeamCmd),
}

#[derive(Debug, Subcommand)]
pub enum TeamCmd {
    /// Manage team users: people who log in with their OpenPGP key.
    #[command(subcommand)]
    User(TeamUserCmd),
    /// Print the team server key's fingerprint, alone on one line (creating the key if absent).
    ServerKey,
}

#[derive(Debug, Subcommand)]
pub enum TeamUserCmd {
    /// Register a user with their armored public key; prints the new user's id, alone on one line.
    /// Compare the key's fingerprint with its owner out of band first.
    Add {
        /// Username: 1 to 255 characters, no whitespace; unique regardless of case.
        name: String,
        /// File holding the user's armored OpenPGP public key.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Make the user a team admin (may add users over the API).
        #[arg(long)]
        admin: bool,
        /// First name shown by clients. Default: the username.
        #[arg(long, value_name = "F")]
        first_name: Option<String>,
        /// Last name shown by clients. Default: empty.
        #[arg(long, value_name = "L")]
        last_name: Option<String>,
    },
    /// List users: id, name, role, fingerprint, active or disabled; never key material.
    List,
    /// Disable a user: they cannot log in and their sessions end at once; nothing else is lost.
    Disable {
        /// Username.
        name: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// Username.
        name: String,
    },
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on in full mode, e.g. 127.0.0.1:8080; repeat for several. Replaces the
    /// configured listeners.
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Storage engine: redb (durable file in the data directory), memory (lost on restart) or redis
    /// (a Redis or Valkey server that several nodes share; see --redis-url).
    #[arg(long, value_name = "ENGINE")]
    pub storage: Option<String>,
    /// Base URL of every link handed out, e.g. https://secrets.example.com.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Make every listener read-only: no creation routes.
    #[arg(long)]
    pub read_only: bool,
    /// Turn secret requests off.
    #[arg(long)]
    pub disable_secret_requests: bool,
    /// Redis server for --storage redis, e.g. redis://127.0.0.1:6379/0; repeat for cluster seeds.
    #[arg(long = "redis-url", value_name = "URL")]
    pub redis_urls: Vec<String>,
    /// Redis Cluster mode.
    #[arg(long)]
    pub redis_cluster: bool,
}

#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Create an account; prints its API token, alone on one line.
    Add {
        /// Account name, usually an email address.
        name: String,
    },
    /// List accounts: name and creation time, one per line. Never shows tokens.
    List,
    /// Remove an account.
    Remove {
        /// Account name.
        name: String,
    },
    /// Issue a new token; the old one stops working at once. Prints the new token.
    RotateToken {
        /// Account name.
        name: String,
    },
}

fn load(cli: &Cli, args: &ServeArgs) -> Result<Settings, ExitCode> {
    let sources = Sources {
        file: cli.config.clone(),
        overrides: Overrides {
            data_dir: cli.data_dir.clone(),
            storage: args.storage.clone(),
            public_url: args.public_url.clone(),
            listen: args.listen.clone(),
            read_only: args.read_only,
            disable_secret_requests: args.disable_secret_requests,
            redis_urls: args.redis_urls.clone(),
            redis_cluster: args.redis_cluster,
        },
    };
    config::load(&sources).map_err(|err| {
        eprintln!("lethe: invalid configuration: {err}");
        ExitCode::from(1)
    })
}

/// Runs a parsed command line; the exit code follows `api/operations.md`.
pub fn run(cli: Cli) -> ExitCode {
    let settings = match &cli.command {
        Cmd::Serve(args) | Cmd::Config(args) => load(&cli, args),
        Cmd::Account(_) | Cmd::Backup { .. } | Cmd::Team(_) => load(&cli, &ServeArgs::default()),
        // The load generator reads no configuration: it starts its own server or targets --url.
        Cmd::Bench(args) => return crate::bench::main(args),
        Cmd::Send(_) | Cmd::Receive(_) | Cmd::Request(_) => {
            load(&cli, &ServeArgs::default()).map_err(|_| ExitCode::from(crate::client::EXIT_USAGE))
        }
    };
    let settings = match settings {
        Ok(s) => Arc::new(s),
        Err(code) => return code,
    };
    match &cli.command {
        Cmd::Config(_) => {
            for variable in &settings.ignored_environment {
                eprintln!("lethe: ignoring {variable}: it names no configuration key");
            }
            print!("{}", settings.to_toml());
            ExitCode::SUCCESS
        }
        Cmd::Serve(_) => {
            crate::telemetry::init(Some(&settings));
            for variable in &settings.ignored_environment {
                tracing::warn!(variable = %variable, "ignoring an environment variable that names no configuration key");
            }
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(err) => {
                    eprintln!("lethe: cannot start the runtime: {err}");
                    return ExitCode::from(1);
                }
            };
            match runtime.block_on(server::daemon(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!("{err}");
                    eprintln!("lethe: {err}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Backup { out } => {
            // The daemon may run elsewhere in the file system: send it an absolute path.
            let out = match std::path::absolute(out) {
                Ok(out) => out,
                Err(err) => {
                    eprintln!("lethe: {}: {err}", out.display());
                    return ExitCode::from(1);
                }
            };
            match admin_command(&settings, Command::Backup { out }) {
                Ok(reply) => print_reply(reply),
                Err(message) => {
                    eprintln!("lethe: {message}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Bench(args) => crate::bench::main(args),
        Cmd::Send(_) | Cmd::Receive(_) | Cmd::Request(_) => crate::client::run(&cli.command, &settings),
        Cmd::Team(cmd) => {
            let command = match team_command(cmd) {
                Ok(command) => command,
                Err(message) => {
                    eprintln!("lethe: {message}");
                    return ExitCode::from(1);
                }
            };
            match admin_command(&settings, command) {
                Ok(reply) => print_reply(reply),
                Err(message) => {
                    eprintln!("lethe: {message}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Account(cmd) => {
            let command = match cmd {
                AccountCmd::Add { name } => Command::AccountAdd { name: name.clone() },
                AccountCmd::List => Command::AccountList,
                AccountCmd::Remove { name } => Command::AccountRemove { name: name.clone() },
                AccountCmd::RotateToken { name } => Command::AccountRotateToken { name: name.clone() },
            };
            match admin_command(&settings, command) {
                Ok(reply) => print_reply(reply),
                Err(message) => {
                    eprintln!("lethe: {message}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// The admin command for a `lethe team …` command line; reads the key file here, so the daemon never
/// opens a path the caller named.
fn team_command(cmd: &TeamCmd) -> Result<Command, String> {
    Ok(match cmd {
        TeamCmd::ServerKey => Command::TeamServerKey,
        TeamCmd::User(TeamUserCmd::List) => Command::TeamUserList,
        TeamCmd::User(TeamUserCmd::Disable { name }) => Command::TeamUserDisable { name: name.clone() },
        TeamCmd::User(TeamUserCmd::Enable { name }) => Command::TeamUserEnable { name: name.clone() },
        TeamCmd::User(TeamUserCmd::Add { name, key, admin, first_name, last_name }) => {
            use std::io::Read;
            // One byte over the key limit is enough for the domain to say "too large".
            let cap = crate::crypto::openpgp::MAX_PUBLIC_KEY_BYTES as u64 + 1;
            let mut text = String::new();
            std::fs::File::open(key)
                .and_then(|f| f.take(cap).read_to_string(&mut text))
                .map_err(|err| format!("{}: {err}", key.display()))?;
            Command::TeamUserAdd {
                name: name.clone(),
                key: text,
                admin: *admin,
                first_name: first_name.clone(),
                last_name: last_name.clone(),
            }
        }
    })
}

/// Through the running daemon's admin socket, or on the store directly when none runs.
fn admin_command(settings: &Arc<Settings>, command: Command) -> Result<Reply, String> {
    match admin::call(&settings.data_dir, &command) {
        Ok(Some(reply)) => return Ok(reply),
        Ok(None) => {}
        Err(err) => return Err(format!("cannot reach the running daemon's admin socket: {err}")),
    }
    if settings.storage == Engine::Memory {
        return Err(
            "no daemon is running and the memory store keeps nothing between runs; start `lethe serve` first"
                .into(),
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    runtime.block_on(async {
        let domain =
            server::open_domain(Arc::clone(settings), Arc::new(SystemClock)).map_err(|e| e.to_string())?;
        // The daemon's trail when it goes to a file; with the trail on stdout (the journal), the
        // lines go to stderr here, so stdout keeps only the command's answer.
        let mut audit = match (&settings.audit.enabled, &settings.audit.file) {
            (false, _) => AuditSink::disabled(),
            (true, None) => AuditSink::to_writer(Box::new(std::io::stderr())),
            (true, Some(path)) => AuditSink::file(path).map_err(|e| format!("audit.file: {e}"))?,
        };
        let reply = admin::execute(&domain, &audit, command).await;
        audit.close();
        Ok(reply)
    })
}

fn print_reply(reply: Reply) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let written = match reply {
        Reply::Token { token } => writeln!(out, "{token}"),
        Reply::Accounts { accounts } => {
            accounts.iter().try_for_each(|(name, created)| writeln!(out, "{name}\t{}", rfc3339(*created)))
        }
        Reply::Done => Ok(()),
        Reply::BackedUp { path, bytes } => writeln!(out, "{}\t{bytes} bytes", path.display()),
        Reply::Line { line } => writeln!(out, "{line}"),
        Reply::TeamUsers { users } => users.iter().try_for_each(|u| {
            let role = if u.admin { "admin" } else { "user" };
            let state = if u.disabled { "disabled" } else { "active" };
            writeln!(out, "{}\t{}\t{role}\t{}\t{state}", u.id, u.name, u.fingerprint)
        }),
        Reply::Error { failure, message } => {
            eprintln!("lethe: {message}");
            return match failure {
                Failure::Exists | Failure::Unknown | Failure::Invalid | Failure::Internal => {
                    ExitCode::from(1)
                }
            };
        }
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}
