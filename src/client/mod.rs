//! The command-line client: `lethe send`, `lethe receive` and `lethe request …`. It encrypts and
//! decrypts locally exactly as the web UI does (`web-ui.md` §2, §6, §7.3), so links and request
//! exports move freely between a terminal and a browser, and the server only ever sees ciphertext.
//!
//! It owns the commands' flow and what the user is told; [`crypto`] owns OpenPGP, [`http`] the wire,
//! [`links`] the link shapes and [`store`] the request directory. It talks to a server over HTTP only
//! and uses none of the server's layers (http, router, api, domain, store, crypto), so it is the same
//! client any other machine would run; it shares only the configuration loader, `clock::rfc3339` and
//! the outgoing TLS set-up (`tls`).
//!
//! Secrets come from stdin or a file, never from argv; on a terminal they are read without echo.
//! Nothing here logs. Errors name what happened, never a secret, key, token, id or link.
//!
//! Exit codes: 0 done; 1 failed (network, server, file system); 2 usage or verification failure
//! (bad arguments or input, a wrong decryption key, a key that does not match its request link, a
//! token the server refuses); 3 gone or not found (already viewed, revoked, collected, expired, or a
//! request that already has its secret); 4 not yet (`collect` before anyone has responded).

mod crypto;
mod http;
mod links;
mod store;

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::{Args, Subcommand};
use hyper::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use self::crypto::{Ciphertext, CryptoError};
use self::http::{MAX_RESPONSE_BYTES, Server, Tls};
use self::links::Link;
use self::store::{Entry, RequestDir};
use crate::cli::Cmd;
use crate::config::Settings;

/// What a failed command tells the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The network, the server or the file system failed.
    Failed = 1,
    /// Bad arguments or input, or a verification failure: nothing was sent or revealed to anyone else.
    Usage = 2,
    /// The secret or request is gone or was never there.
    Gone = 3,
    /// Nothing to collect yet.
    NotYet = 4,
}

/// The exit codes, as `--help` of every client command shows them.
const EXIT_CODES: &str = "Exit codes: 0 done; 1 failed (network, server, file system); 2 usage or verification \
failure (bad arguments or input, wrong decryption key, a key that does not match its link); 3 gone or \
not found (viewed, revoked, collected, expired, already answered); 4 not yet (nothing to collect).";

/// The exit code of an invalid configuration for the client commands.
pub const EXIT_USAGE: u8 = Exit::Usage as u8;

/// A command's failure: its exit code and a sentence for stderr, free of secrets.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure { exit, message: message.into() }
    }
}

impl From<CryptoError> for Failure {
    fn from(err: CryptoError) -> Failure {
        let exit = match err {
            CryptoError::WrongKey
            | CryptoError::NotAMessage
            | CryptoError::TooLarge
            | CryptoError::Key(_) => Exit::Usage,
            CryptoError::Random | CryptoError::Build(_) => Exit::Failed,
        };
        Failure::new(exit, err.to_string())
    }
}

/// `--url`: the server, when the configuration's `client.url` is not the one.
#[derive(Debug, Clone, Default, Args)]
pub struct UrlArg {
    /// Server base URL, http:// or https:// (default: client.url, env LETHE_CLIENT__URL; for `receive`
    /// and `respond`, the link's own address).
    #[arg(long, value_name = "URL", global = true)]
    pub url: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct SendArgs {
    /// Send this file instead of text read from stdin; the link opens as a download.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// How long the link works: 1h, 1d, 1w or seconds (default: the server's default).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub expiration: Option<u64>,
    /// Let the link be opened until it expires (default: deleted after the first view).
    #[arg(long)]
    pub reusable: bool,
    #[command(flatten)]
    pub server: UrlArg,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct ReceiveArgs {
    /// The link (`<server>/#/s/…` or `#/f/…`); read from stdin when absent or `-`, which keeps it out
    /// of the process list. A link without its key asks for the key on stdin.
    #[arg(value_name = "LINK")]
    pub link: Option<String>,
    /// Write the secret to this file (a file secret defaults to its own name in the current directory;
    /// a text secret to stdout).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Replace the file (--out, or the file's own name) when it exists.
    #[arg(long)]
    pub force: bool,
    /// Fetch from this server instead of the link's own address (e.g. the plain http:// one behind a
    /// TLS proxy).
    #[command(flatten)]
    pub server: UrlArg,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct RequestArgs {
    #[command(subcommand)]
    pub command: RequestCmd,
    #[command(flatten)]
    pub server: UrlArg,
}

#[derive(Debug, Subcommand)]
pub enum RequestCmd {
    /// Make a key pair here, create a request for a secret and print its link. The request (with its
    /// private key) is kept in client.requests_dir.
    New {
        /// Shown to the person asked; it must not hold secrets (at most 100 bytes).
        #[arg(long, default_value = "")]
        label: String,
        /// How long the request stays open: 1h, 1d or 1w (default: the server's default).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expiration: Option<u64>,
    },
    /// This machine's requests with their refreshed states: id, state, expiry, label (tab-separated).
    List,
    /// Fetch and decrypt the secret provided for a request; prints it to stdout. The server deletes it.
    Collect {
        /// The request's id (from `lethe request list`).
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Withdraw a request; a secret already provided is deleted too.
    Revoke {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Delete a collected, revoked or expired request (its private key and token) from this machine.
    Remove {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Replace a pending request's key pair; prints the new link (the old one stops verifying).
    Rotate {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Add a request exported from the web UI (or another machine).
    Import {
        /// A `lethe-request-<id>.json` export file.
        file: PathBuf,
    },
    /// Print a request in the web UI's export format (it holds the private key and token: treat it as
    /// a secret).
    Export {
        // Request ids are base64url: one in 64 starts with `-`, which must still read as the id.
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// Write it to this new file (mode 0600) instead of stdout.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Answer a request link: check that its key matches the link, read the secret from stdin,
    /// encrypt it to the requester's key and send it.
    Respond {
        /// The request link, `<server>/#/r/<id>/<fingerprint>`.
        link: String,
    },
}

/// `1h`, `1d`, `1w` or a number of seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let seconds = match s {
        "1h" => Some(3600),
        "1d" => Some(86_400),
        "1w" => Some(604_800),
        _ => s.parse::<u64>().ok().filter(|&n| n > 0),
    };
    seconds.ok_or_else(|| "expected 1h, 1d, 1w or a positive number of seconds".to_owned())
}

/// Runs a client command and returns its exit code.
pub fn run(command: &Cmd, settings: &Settings) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(_) => {
            eprintln!("lethe: cannot start the runtime");
            return ExitCode::from(Exit::Failed as u8);
        }
    };
    let result = runtime.block_on(async {
        match command {
            Cmd::Send(args) => send(args, settings).await,
            Cmd::Receive(args) => receive(args, settings).await,
            Cmd::Request(args) => request(args, settings).await,
            _ => Err(Failure::new(Exit::Usage, "not a client command")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("lethe: {}", failure.message);
            ExitCode::from(failure.exit as u8)
        }
    }
}

/// The server at `url`; an `https://` one must prove itself against the roots and `client.ca_file`.
fn server_at(url: &str, settings: &Settings) -> Result<Server, Failure> {
    Server::parse(url, &Tls::new(settings.raw.client.ca_file.as_deref())?)
}

fn configured_server(flag: &UrlArg, settings: &Settings) -> Result<Server, Failure> {
    match flag.url.as_deref().or(settings.raw.client.url.as_deref()) {
        Some(url) => server_at(url, settings),
        None => Err(Failure::new(Exit::Usage, "no server: give --url or set client.url (LETHE_CLIENT__URL)")),
    }
}

/// `client.requests_dir`, else the XDG data directory.
fn request_dir(settings: &Settings) -> Result<RequestDir, Failure> {
    if let Some(dir) = &settings.raw.client.requests_dir {
        return Ok(RequestDir::new(dir.clone()));
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    match data {
        Some(data) => Ok(RequestDir::new(data.join("lethe/requests"))),
        None => Err(Failure::new(Exit::Usage, "no request directory: set client.requests_dir or HOME")),
    }
}

/// What this client reads from `/config`; absent or wrongly typed values are absent.
#[derive(Debug, Default)]
struct ServerConfig {
    public_url: Option<String>,
    default_expiry: Option<u64>,
    max_length: Option<u64>,
    max_file_size: Option<u64>,
    read_only: bool,
    secret_requests: bool,
}

async fn server_config(server: &Server) -> Result<ServerConfig, Failure> {
    let resp = server.get("/config", &[]).await?;
    if resp.status != 200 {
        return Err(Failure::new(Exit::Failed, format!("the server's /config failed: {}", resp.message())));
    }
    let v: Value = resp.json()?;
    Ok(ServerConfig {
        // Printed as the start of every link: a value that could carry terminal escapes is not a URL.
        public_url: v["PUBLIC_URL"]
            .as_str()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()))
            .map(|s| s.trim_end_matches('/').to_owned()),
        default_expiry: v["DEFAULT_EXPIRY"].as_u64(),
        max_length: v["MAX_LENGTH"].as_u64(),
        max_file_size: v["MAX_FILE_SIZE"].as_u64(),
        read_only: v["READ_ONLY"].as_bool().unwrap_or(false),
        secret_requests: v["SECRET_REQUESTS"].as_bool().unwrap_or(true),
    })
}

/// The base of links: the server's `PUBLIC_URL`, else the address talked to (as the web UI does).
fn link_base(config: &ServerConfig, server: &Server) -> String {
    config.public_url.clone().unwrap_or_else(|| server.base.clone())
}

/// Prompts on the terminal without echo, through `stty` so that no terminal crate is needed. Echo is
/// turned back on before returning, whatever the read did.
fn prompt_hidden(prompt: &str) -> Result<Zeroizing<String>, Failure> {
    let stty = |arg: &str| {
        Command::new("stty")
            .arg(arg)
            .stdin(Stdio::inherit())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // Echo goes off before the prompt shows, so nothing typed after the prompt can be echoed.
    if !stty("-echo") {
        return Err(Failure::new(
            Exit::Failed,
            "cannot turn off echo on this terminal; pipe the secret in instead",
        ));
    }
    eprint!("{prompt}: ");
    let mut line = Zeroizing::new(String::new());
    let read = std::io::stdin().read_line(&mut line);
    stty("echo");
    eprintln!();
    read.map_err(|_| Failure::new(Exit::Failed, "cannot read from the terminal"))?;
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(line)
}

/// A secret from stdin: one line typed without echo on a terminal, or every byte of a pipe or file
/// (at most `max`).
fn read_secret(prompt: &str, max: usize) -> Result<Zeroizing<Vec<u8>>, Failure> {
    if std::io::stdin().is_terminal() {
        let line = prompt_hidden(prompt)?;
        return Ok(Zeroizing::new(line.as_bytes().to_vec()));
    }
    let mut data = Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .take(max as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|_| Failure::new(Exit::Failed, "cannot read the secret from stdin"))?;
    if data.len() > max {
        return Err(Failure::new(Exit::Usage, "the secret is too long for this server"));
    }
    Ok(data)
}

/// One line from stdin (a link or a key), without echo on a terminal.
fn read_line(prompt: &str) -> Result<Zeroizing<String>, Failure> {
    if std::io::stdin().is_terminal() {
        return prompt_hidden(prompt);
    }
    let mut line = Zeroizing::new(String::new());
    std::io::BufRead::read_line(&mut std::io::stdin().lock().take(64 * 1024), &mut line)
        .map_err(|_| Failure::new(Exit::Usage, "cannot read a line of text from stdin"))?;
    let trimmed = line.trim().to_owned();
    Ok(Zeroizing::new(trimmed))
}

fn text_of(bytes: &[u8]) -> Result<&str, Failure> {
    if bytes.is_empty() {
        return Err(Failure::new(Exit::Usage, "nothing to send: the secret is empty"));
    }
    std::str::from_utf8(bytes)
        .map_err(|_| Failure::new(Exit::Usage, "the secret is not UTF-8 text; send it with --file"))
}

fn id_of(resp: &http::Response) -> Result<String, Failure> {
    #[derive(Deserialize)]
    struct Created {
        message: String,
    }
    let created: Created = resp.json()?;
    if !links::is_id(&created.message) {
        return Err(Failure::new(Exit::Failed, "the server's answer is not what lethe sends"));
    }
    Ok(created.message)
}

/// A refusal by the server: its own words, with the exit code its status means.
fn refused(resp: &http::Response) -> Failure {
    let exit = match resp.status {
        400 | 401 | 413 | 422 => Exit::Usage,
        404 | 410 => Exit::Gone,
        _ => Exit::Failed,
    };
    Failure::new(exit, format!("the server refused: {}", resp.message()))
}

async fn send(args: &SendArgs, settings: &Settings) -> Result<(), Failure> {
    let server = configured_server(&args.server, settings)?;
    let config = server_config(&server).await?;
    if config.read_only {
        return Err(Failure::new(
            Exit::Failed,
            "This server only opens links; secrets are created elsewhere.",
        ));
    }
    let expiration = args.expiration.or(config.default_expiry).unwrap_or(3600);
    let key = crypto::new_key()?;
    let one_time = !args.reusable;
    let (resp, file) = if let Some(path) = &args.file {
        let max = config.max_file_size.map_or(MAX_RESPONSE_BYTES, |m| m as usize);
        let too_large = || Failure::new(Exit::Usage, "The file is too large.");
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Failure::new(Exit::Usage, "--file names no file"))?;
        let meta = std::fs::metadata(path)
            .map_err(|e| Failure::new(Exit::Usage, format!("cannot read --file: {e}")))?;
        if !meta.is_file() {
            return Err(Failure::new(Exit::Usage, "--file is not a regular file"));
        }
        if meta.len() > max as u64 {
            return Err(too_large());
        }
        let bytes = Zeroizing::new(
            std::fs::read(path).map_err(|e| Failure::new(Exit::Usage, format!("cannot read --file: {e}")))?,
        );
        let message = crypto::encrypt_file(&bytes, &name, &key)?;
        if message.len() > max {
            return Err(too_large());
        }
        let expiration = expiration.to_string();
        let headers = [
            ("content-type", "application/octet-stream"),
            ("x-lethe-expiration", expiration.as_str()),
            ("x-lethe-onetime", if one_time { "true" } else { "false" }),
        ];
        (server.call(Method::POST, "/create/file", &headers, message).await?, true)
    } else {
        let max = config.max_length.map_or(MAX_RESPONSE_BYTES, |m| m as usize);
        let secret = read_secret("Secret", max)?;
        let message = crypto::encrypt_text(text_of(&secret)?, &key)?;
        if message.len() > max {
            return Err(Failure::new(
                Exit::Usage,
                "the secret is too long: its encrypted form exceeds the server's MAX_LENGTH",
            ));
        }
        let body = json!({"message": message, "expiration": expiration, "one_time": one_time});
        (server.post_json("/create/secret", &body).await?, false)
    };
    if resp.status != 200 {
        return Err(refused(&resp));
    }
    let id = id_of(&resp)?;
    println!("{}", links::secret_link(&link_base(&config, &server), file, &id, &key));
    Ok(())
}

/// A file name from inside a ciphertext made safe for the current directory: its last component, no
/// control characters, no leading dot, not empty.
fn sanitise_file_name(name: Option<&str>) -> String {
    let last = name.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    let mut out = String::new();
    for c in cleaned.chars() {
        if out.len() + c.len_utf8() > 200 {
            break;
        }
        out.push(c);
    }
    if out.is_empty() { "secret".to_owned() } else { out }
}

/// Creates `path` (mode 0600): a new file, or a replaced one when `replace`.
fn write_private(path: &Path, data: &[u8], replace: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut f = options.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Saves a received file under its own name in the current directory; an existing file is never
/// replaced: the name gets " (1)", " (2)"… as a browser's downloads do, because the secret is already
/// gone from the server and refusing would lose it.
fn save_as_own_name(name: &str, data: &[u8]) -> Result<PathBuf, Failure> {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    for n in 0..1000 {
        let candidate =
            if n == 0 { PathBuf::from(name) } else { PathBuf::from(format!("{stem} ({n}){ext}")) };
        match write_private(&candidate, data, false) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Failure::new(Exit::Failed, format!("cannot save the file: {e}"))),
        }
    }
    Err(Failure::new(Exit::Failed, "cannot save the file: too many files of that name"))
}

async fn receive(args: &ReceiveArgs, settings: &Settings) -> Result<(), Failure> {
    let text = match args.link.as_deref() {
        Some(link) if link != "-" => Zeroizing::new(link.to_owned()),
        _ => read_line("Link")?,
    };
    let link = links::parse(&text).map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
    let Link::Secret { base, file, id, key } = link else {
        return Err(Failure::new(
            Exit::Usage,
            "this is a request link: answer it with `lethe request respond`",
        ));
    };
    // Checked before anything is fetched: a one-time secret must not be taken only to be refused.
    if let Some(out) = &args.out
        && !args.force
        && out.symlink_metadata().is_ok()
    {
        return Err(Failure::new(
            Exit::Usage,
            format!("{} exists; add --force to replace it", out.display()),
        ));
    }
    let server = server_at(args.server.url.as_deref().unwrap_or(&base), settings)?;
    let mut key = match key {
        Some(key) => key,
        None => read_line("Decryption key")?,
    };
    let kind = if file { "file" } else { "secret" };
    let gone = || {
        Failure::new(
            Exit::Gone,
            "Secret not available: it may have been viewed already, deleted, or it expired.",
        )
    };
    let status = server.get(&format!("/{kind}/{id}/status"), &[]).await?;
    match status.status {
        200 => {}
        404 => return Err(gone()),
        _ => return Err(refused(&status)),
    }
    #[derive(Deserialize)]
    struct Status {
        #[serde(rename = "oneTime")]
        one_time: bool,
    }
    let one_time = status.json::<Status>()?.one_time;
    let resp = server.get(&format!("/{kind}/{id}"), &[]).await?;
    match resp.status {
        200 => {}
        404 => return Err(gone()),
        _ => return Err(refused(&resp)),
    }
    #[derive(Deserialize)]
    struct Fetched {
        message: String,
    }
    let armored;
    let ciphertext = if file {
        Ciphertext::Binary(&resp.body)
    } else {
        armored = resp.json::<Fetched>()?.message;
        Ciphertext::Armored(&armored)
    };
    // The ciphertext stays in memory: a one-time secret is already deleted, so a mistyped key gets
    // more tries on a terminal instead of a second fetch (the web UI's rule, Yopass #672).
    let mut tries = 0;
    let opened = loop {
        match crypto::decrypt_with_password(ciphertext, &key, MAX_RESPONSE_BYTES) {
            Ok(opened) => break opened,
            Err(CryptoError::WrongKey) if tries < 3 && std::io::stdin().is_terminal() => {
                tries += 1;
                eprintln!("lethe: wrong decryption key; try again");
                key = prompt_hidden("Decryption key")?;
            }
            Err(CryptoError::WrongKey) => {
                let lost =
                    if one_time { " The one-time secret has been deleted from the server." } else { "" };
                return Err(Failure::new(
                    Exit::Usage,
                    format!("Wrong decryption key, or the secret was altered.{lost}"),
                ));
            }
            Err(other) => return Err(other.into()),
        }
    };
    match (&args.out, file) {
        (Some(out), _) => {
            write_private(out, &opened.data, args.force)
                .map_err(|e| Failure::new(Exit::Failed, format!("cannot write {}: {e}", out.display())))?;
            eprintln!("Saved {}.", out.display());
        }
        (None, false) => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&opened.data)
                .and_then(|()| stdout.flush())
                .map_err(|_| Failure::new(Exit::Failed, "cannot write to stdout"))?;
        }
        (None, true) => {
            let name = sanitise_file_name(opened.file_name.as_deref());
            let path = if args.force {
                write_private(Path::new(&name), &opened.data, true)
                    .map_err(|e| Failure::new(Exit::Failed, format!("cannot save the file: {e}")))?;
                PathBuf::from(name)
            } else {
                save_as_own_name(&name, &opened.data)?
            };
            eprintln!("Saved {}.", path.display());
        }
    }
    if one_time {
        eprintln!("This secret has been deleted from the server.");
    }
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The server of a stored request: `--url`, else the one it was made on, else `client.url`.
fn entry_server(flag: &UrlArg, entry: &Entry, settings: &Settings) -> Result<Server, Failure> {
    match (&flag.url, entry.server()) {
        (None, Some(url)) => server_at(url, settings),
        _ => configured_server(flag, settings),
    }
}

fn token_header(entry: &Entry) -> [(&str, &str); 1] {
    [("x-lethe-request-token", entry.token.as_str())]
}

/// A token route's 401 or 404: a token the server does not take is a usage failure; a request the
/// server no longer has is gone, and this machine's copy is marked revoked so `list` says so.
fn token_refusal(dir: &RequestDir, entry: &mut Entry, status: u16, gone: &str) -> Failure {
    if status == 401 {
        return Failure::new(Exit::Usage, "This client's token is not valid for this request.");
    }
    entry.state = "revoked".into();
    match save_entry(dir, entry) {
        Ok(()) => Failure::new(Exit::Gone, gone),
        Err(failure) => failure,
    }
}

fn load_entry(dir: &RequestDir, id: &str) -> Result<Entry, Failure> {
    match dir.load(id) {
        Ok(Some(entry)) => Ok(entry),
        Ok(None) => Err(Failure::new(
            Exit::Usage,
            format!("no stored request with that id in {} (see `lethe request list`)", dir.path().display()),
        )),
        Err(message) => Err(Failure::new(Exit::Failed, message)),
    }
}

fn save_entry(dir: &RequestDir, entry: &Entry) -> Result<(), Failure> {
    dir.save(entry).map_err(|e| {
        Failure::new(Exit::Failed, format!("cannot store the request in {}: {e}", dir.path().display()))
    })
}

const VERIFY_FAILED: &str = "Key verification failed: the encryption key from the server does not match this \
                             link. Nothing was encrypted or sent. Ask the person who sent you the link for a new one.";

async fn request(args: &RequestArgs, settings: &Settings) -> Result<(), Failure> {
    match &args.command {
        RequestCmd::New { label, expiration } => {
            request_new(&args.server, settings, label, *expiration).await
        }
        RequestCmd::List => request_list(&args.server, settings).await,
        RequestCmd::Collect { id } => request_collect(&args.server, settings, id).await,
        RequestCmd::Revoke { id } => request_revoke(&args.server, settings, id).await,
        RequestCmd::Remove { id } => request_remove(settings, id),
        RequestCmd::Rotate { id } => request_rotate(&args.server, settings, id).await,
        RequestCmd::Import { file } => request_import(settings, file),
        RequestCmd::Export { id, out } => request_export(settings, id, out.as_deref()),
        RequestCmd::Respond { link } => request_respond(&args.server, settings, link).await,
    }
}

#[derive(Deserialize)]
struct Created {
    id: String,
    token: String,
    expires_at: i64,
    fingerprint: String,
}

async fn request_new(
    flag: &UrlArg,
    settings: &Settings,
    label: &str,
    expiration: Option<u64>,
) -> Result<(), Failure> {
    let label = label.trim();
    if label.len() > 100 {
        return Err(Failure::new(Exit::Usage, "Label is too long (at most 100 bytes)"));
    }
    if label.chars().any(char::is_control) {
        return Err(Failure::new(Exit::Usage, "the label must be one line of text"));
    }
    let dir = request_dir(settings)?;
    let server = configured_server(flag, settings)?;
    let config = server_config(&server).await?;
    if config.read_only || !config.secret_requests {
        return Err(Failure::new(Exit::Failed, "Secret requests are not available on this server."));
    }
    let expiration = expiration.or(config.default_expiry).unwrap_or(86_400);
    let key = crypto::generate_request_key(label)?;
    let mut body = json!({"public_key": key.public_key, "expiration": expiration});
    if !label.is_empty() {
        body["label"] = json!(label);
    }
    let resp = server.post_json("/request", &body).await?;
    if resp.status != 200 {
        return Err(refused(&resp));
    }
    let created: Created = resp.json()?;
    if !links::is_id(&created.id) {
        return Err(Failure::new(Exit::Failed, "the server's answer is not what lethe sends"));
    }
    let revoke = || async {
        let _ = server
            .call(
                Method::DELETE,
                &format!("/request/{}", created.id),
                &[("x-lethe-request-token", &created.token)],
                Vec::new(),
            )
            .await;
    };
    if created.fingerprint.to_ascii_lowercase() != key.fingerprint {
        revoke().await;
        return Err(Failure::new(
            Exit::Failed,
            "The server reported a different key fingerprint. The request was revoked.",
        ));
    }
    let mut extra = serde_json::Map::new();
    extra.insert("server".into(), json!(server.base));
    let entry = Entry {
        id: created.id.clone(),
        token: created.token.clone(),
        label: label.to_owned(),
        private_key: key.private_key.to_string(),
        public_key: key.public_key.clone(),
        fingerprint: key.fingerprint.clone(),
        created_at: now(),
        expires_at: created.expires_at,
        state: "pending".into(),
        extra,
    };
    if let Err(failure) = save_entry(&dir, &entry) {
        // Without its private key nobody could ever read what is sent to it.
        revoke().await;
        return Err(failure);
    }
    println!("{}", links::request_link(&link_base(&config, &server), &entry.id, &entry.fingerprint));
    Ok(())
}

/// The state the server knows for a stored request (`web-ui.md` §7.2); a network error keeps it.
async fn refreshed_state(server: &Server, entry: &Entry) -> String {
    if entry.is_final() {
        return entry.state.clone();
    }
    if now() >= entry.expires_at {
        return "expired".into();
    }
    match server.get(&format!("/request/{}", entry.id), &token_header(entry)).await {
        Ok(resp) if resp.status == 200 => match resp.json::<Value>() {
            Ok(v) if matches!(v["state"].as_str(), Some("pending" | "fulfilled")) => {
                v["state"].as_str().unwrap_or("pending").to_owned()
            }
            _ => entry.state.clone(),
        },
        Ok(resp) if resp.status == 404 => "revoked".into(),
        _ => entry.state.clone(),
    }
}

async fn request_list(flag: &UrlArg, settings: &Settings) -> Result<(), Failure> {
    let dir = request_dir(settings)?;
    let (entries, damaged) = dir
        .list()
        .map_err(|e| Failure::new(Exit::Failed, format!("cannot read {}: {e}", dir.path().display())))?;
    if damaged > 0 {
        eprintln!("lethe: {damaged} file(s) in {} are not requests and were skipped", dir.path().display());
    }
    if entries.is_empty() {
        eprintln!("No requests in {}.", dir.path().display());
    }
    let mut out = std::io::stdout().lock();
    for mut entry in entries {
        if !entry.is_final()
            && let Ok(server) = entry_server(flag, &entry, settings)
        {
            let state = refreshed_state(&server, &entry).await;
            if state != entry.state {
                entry.state = state;
                save_entry(&dir, &entry)?;
            }
        }
        let label: String = entry.label.chars().filter(|c| !c.is_control()).collect();
        let expires = u64::try_from(entry.expires_at).map(crate::clock::rfc3339).unwrap_or_default();
        writeln!(out, "{}\t{}\t{}\t{}", entry.id, entry.state, expires, label)
            .map_err(|_| Failure::new(Exit::Failed, "cannot write to stdout"))?;
    }
    Ok(())
}

fn already(entry: &Entry) -> Failure {
    Failure::new(Exit::Gone, format!("This request is {}.", entry.state))
}

async fn request_collect(flag: &UrlArg, settings: &Settings, id: &str) -> Result<(), Failure> {
    let dir = request_dir(settings)?;
    let mut entry = load_entry(&dir, id)?;
    if entry.is_final() {
        return Err(already(&entry));
    }
    let server = entry_server(flag, &entry, settings)?;
    let resp = server.get(&format!("/request/{}/secret", entry.id), &token_header(&entry)).await?;
    match resp.status {
        200 => {}
        401 | 404 => {
            let gone = "Request not available: it may have been revoked, collected elsewhere, or it expired.";
            return Err(token_refusal(&dir, &mut entry, resp.status, gone));
        }
        409 => return Err(Failure::new(Exit::NotYet, "No secret has been provided yet.")),
        _ => return Err(refused(&resp)),
    }
    #[derive(Deserialize)]
    struct Secret {
        message: String,
    }
    let message = resp.json::<Secret>()?.message;
    // The server has deleted it: the entry says so before anything else can fail.
    entry.state = "collected".into();
    save_entry(&dir, &entry)?;
    match crypto::decrypt_with_private_key(&message, &entry.private_key, MAX_RESPONSE_BYTES) {
        Ok(opened) => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&opened.data)
                .and_then(|()| stdout.flush())
                .map_err(|_| Failure::new(Exit::Failed, "cannot write to stdout"))
        }
        Err(_) => {
            // Nothing is lost: the encrypted message goes out for another tool to try.
            print!("{message}");
            Err(Failure::new(
                Exit::Failed,
                "cannot decrypt the secret with this request's key; the encrypted message was written to stdout",
            ))
        }
    }
}

async fn request_revoke(flag: &UrlArg, settings: &Settings, id: &str) -> Result<(), Failure> {
    let dir = request_dir(settings)?;
    let mut entry = load_entry(&dir, id)?;
    let server = entry_server(flag, &entry, settings)?;
    let resp = server
        .call(Method::DELETE, &format!("/request/{}", entry.id), &token_header(&entry), Vec::new())
        .await?;
    match resp.status {
        204 | 404 => {
            entry.state = "revoked".into();
            save_entry(&dir, &entry)?;
            eprintln!("Revoked.");
            Ok(())
        }
        401 => Err(Failure::new(Exit::Usage, "This client's token is not valid for this request.")),
        _ => Err(refused(&resp)),
    }
}

async fn request_rotate(flag: &UrlArg, settings: &Settings, id: &str) -> Result<(), Failure> {
    let dir = request_dir(settings)?;
    let mut entry = load_entry(&dir, id)?;
    if entry.is_final() {
        return Err(already(&entry));
    }
    let server = entry_server(flag, &entry, settings)?;
    let config = server_config(&server).await?;
    let key = crypto::generate_request_key(&entry.label)?;
    let body = serde_json::to_vec(&json!({"public_key": key.public_key}))
        .map_err(|_| Failure::new(Exit::Failed, "cannot encode the request"))?;
    let headers = [("x-lethe-request-token", entry.token.as_str()), ("content-type", "application/json")];
    let resp = server.call(Method::PUT, &format!("/request/{}/key", entry.id), &headers, body).await?;
    match resp.status {
        200 => {}
        401 | 404 => {
            let gone = "Request not available: it may have been revoked or it expired.";
            return Err(token_refusal(&dir, &mut entry, resp.status, gone));
        }
        409 => {
            return Err(Failure::new(
                Exit::Failed,
                "A secret was provided meanwhile, so the key pair stays: collect it with `lethe request collect`.",
            ));
        }
        _ => return Err(refused(&resp)),
    }
    entry.private_key = key.private_key.to_string();
    entry.public_key = key.public_key.clone();
    entry.fingerprint = key.fingerprint.clone();
    save_entry(&dir, &entry)?;
    eprintln!("Key pair replaced. Send the new link.");
    println!("{}", links::request_link(&link_base(&config, &server), &entry.id, &entry.fingerprint));
    Ok(())
}

fn request_remove(settings: &Settings, id: &str) -> Result<(), Failure> {
    let dir = request_dir(settings)?;
    let entry = load_entry(&dir, id)?;
    if !entry.is_final() {
        return Err(Failure::new(
            Exit::Usage,
            "This request may still receive or hold a secret: revoke it first (`lethe request revoke`).",
        ));
    }
    dir.remove(&entry.id)
        .map_err(|e| Failure::new(Exit::Failed, format!("cannot remove the stored request: {e}")))?;
    eprintln!("Removed.");
    Ok(())
}

fn request_import(settings: &Settings, file: &Path) -> Result<(), Failure> {
    let dir = request_dir(settings)?;
    let text = store::read_capped(file)
        .map_err(|e| Failure::new(Exit::Usage, format!("cannot read {}: {e}", file.display())))?;
    let refuse = |why: &str| {
        Failure::new(Exit::Usage, format!("Not a lethe request export: {} ({why})", file.display()))
    };
    let entry = store::parse_export(&text).map_err(refuse)?;
    crypto::check_entry_keys(&entry.private_key, &entry.public_key, &entry.fingerprint)
        .map_err(|e| refuse(&e.to_string()))?;
    save_entry(&dir, &entry)?;
    eprintln!("Imported 1 request.");
    Ok(())
}

fn request_export(settings: &Settings, id: &str, out: Option<&Path>) -> Result<(), Failure> {
    let dir = request_dir(settings)?;
    let entry = load_entry(&dir, id)?;
    let text = entry.export_text();
    match out {
        Some(path) => {
            write_private(path, text.as_bytes(), false)
                .map_err(|e| Failure::new(Exit::Failed, format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "Exported to {}; it holds the private key and token: treat it as a secret.",
                path.display()
            );
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|_| Failure::new(Exit::Failed, "cannot write to stdout"))?;
        }
    }
    Ok(())
}

async fn request_respond(flag: &UrlArg, settings: &Settings, link: &str) -> Result<(), Failure> {
    let (base, id, fp16) = match links::parse(link) {
        Ok(Link::Request { base, id, fp16 }) => (base, id, fp16),
        // The web UI's rule: a link without a usable fingerprint fails verification at once.
        Err(links::LinkError::Fingerprint) => return Err(Failure::new(Exit::Usage, VERIFY_FAILED)),
        Err(e) => return Err(Failure::new(Exit::Usage, e.to_string())),
        Ok(Link::Secret { .. }) => {
            return Err(Failure::new(Exit::Usage, "this is a secret link: open it with `lethe receive`"));
        }
    };
    let server = server_at(flag.url.as_deref().unwrap_or(&base), settings)?;
    let resp = server.get(&format!("/request/{id}"), &[]).await?;
    let not_available = || {
        Failure::new(Exit::Gone, "Request not available: it may have been revoked, collected, or it expired.")
    };
    match resp.status {
        200 => {}
        404 => return Err(not_available()),
        _ => return Err(refused(&resp)),
    }
    #[derive(Deserialize)]
    struct Fetched {
        public_key: String,
        #[serde(default)]
        label: Option<String>,
        state: String,
    }
    let fetched: Fetched = resp.json()?;
    if fetched.state == "fulfilled" {
        return Err(Failure::new(Exit::Gone, "Secret already provided."));
    }
    let label = fetched.label.unwrap_or_default();
    let key = crypto::verify_request_key(&fetched.public_key, &fp16, &label)
        .map_err(|_| Failure::new(Exit::Usage, VERIFY_FAILED))?;
    let shown: String = label.chars().filter(|c| !c.is_control()).collect();
    eprintln!("Someone requests a secret.");
    eprintln!("Label: {}", if shown.is_empty() { "(none)" } else { &shown });
    eprintln!("Key fingerprint: {fp16} (verified against this link)");
    let secret = read_secret("Secret", MAX_RESPONSE_BYTES)?;
    let message = crypto::encrypt_to_key(text_of(&secret)?, &key)?;
    let resp = server.post_json(&format!("/request/{id}/secret"), &json!({"message": message})).await?;
    match resp.status {
        200 => {
            eprintln!("Secret sent. Only the person who asked can decrypt it.");
            Ok(())
        }
        404 => Err(not_available()),
        409 => Err(Failure::new(Exit::Gone, "Secret already provided.")),
        _ => Err(refused(&resp)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: request ids are base64url, so one in 64 starts with `-`, and clap read such an id
    /// as an unknown flag (a flaky `client_cli` test found it).
    #[test]
    fn a_request_id_that_starts_with_a_hyphen_is_an_id() {
        use clap::Parser;
        let id = "-6Qx2bKp0aZ4yWc8dTf1uG";
        for op in ["collect", "revoke", "remove", "rotate", "export"] {
            let parsed = crate::cli::Cli::try_parse_from(["lethe", "request", op, id]);
            assert!(parsed.is_ok(), "{op}: {:?}", parsed.err().map(|e| e.to_string()));
            assert!(format!("{parsed:?}").contains(id), "{op}");
        }
    }

    #[test]
    fn durations_are_the_web_uis_or_seconds() {
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("1w"), Ok(604_800));
        assert_eq!(parse_duration("90"), Ok(90));
        for bad in ["0", "-1", "2h", "1.5", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_names_from_a_ciphertext_stay_in_the_current_directory() {
        assert_eq!(sanitise_file_name(Some("report.pdf")), "report.pdf");
        assert_eq!(sanitise_file_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(sanitise_file_name(Some("..\\..\\boot.ini")), "boot.ini");
        assert_eq!(sanitise_file_name(Some(".bashrc")), "bashrc");
        assert_eq!(sanitise_file_name(Some("a\u{1b}[2Jb")), "a[2Jb");
        assert_eq!(sanitise_file_name(Some("..")), "secret");
        assert_eq!(sanitise_file_name(None), "secret");
        assert!(sanitise_file_name(Some(&"x".repeat(500))).len() <= 200);
    }
}
