//! Drives the real GnuPG (`gpg`, 2.2 or later) in a throwaway home directory, to make keys and
//! messages exactly as users' tools make them. Each `Gpg` owns its home; dropping it stops the
//! gpg-agent started for that home and deletes the directory, so nothing outlives a test.
//!
//! Keys are made without a passphrase (`--passphrase ''` with loopback pinentry), so no prompt can
//! ever block a test. Every call panics with gpg's stderr on failure: a test fixture that cannot be
//! made is a broken test environment, not a case to handle.
//!
//! The unit tests of `src/crypto/openpgp.rs` include this same file.

#![allow(dead_code)] // a shared helper: each test binary uses a different subset

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use tempfile::TempDir;

#[derive(Debug)]
pub struct Gpg {
    home: TempDir,
}

impl Gpg {
    pub fn new() -> Gpg {
        let home = tempfile::Builder::new().prefix("gpg").tempdir().expect("create GNUPGHOME");
        // gpg warns (and some versions refuse) when the home is readable by others.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700))
                .expect("chmod GNUPGHOME");
        }
        Gpg { home }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Runs gpg with `args`, feeding `stdin`; returns stdout. Panics with stderr on failure.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let mut child = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--no-tty", "--quiet", "--pinentry-mode", "loopback"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gpg (is GnuPG installed?)");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin).expect("write to gpg");
        }
        let out = child.wait_with_output().expect("wait for gpg");
        assert!(out.status.success(), "gpg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    fn run_text(&self, args: &[&str], stdin: &[u8]) -> String {
        String::from_utf8(self.run(args, stdin)).expect("gpg armored output is UTF-8")
    }

    /// A new key with an encryption subkey; returns its fingerprint (uppercase hex, as gpg prints
    /// it). `algo` is "future-default" (ed25519 + cv25519), "ed25519", "rsa3072", ...; `expire` is
    /// what gpg takes: "never", "1d", "seconds=N", an ISO date.
    pub fn gen_key(&self, uid: &str, algo: &str, expire: &str) -> String {
        if algo == "future-default" || algo == "default" {
            return self.gen_key_with_usage(uid, algo, "default", expire);
        }
        // For an explicit algorithm gpg makes the primary key only; add the encryption subkey.
        let fpr = self.gen_key_with_usage(uid, algo, "sign,cert", expire);
        let sub_algo = if algo == "ed25519" { "cv25519" } else { algo };
        self.run(&["--passphrase", "", "--quick-add-key", &fpr, sub_algo, "encr", expire], b"");
        fpr
    }

    /// As [`Gpg::gen_key`] with an explicit usage ("default", "sign", "cert", ...); with "sign" gpg
    /// makes a primary key only, no encryption subkey.
    pub fn gen_key_with_usage(&self, uid: &str, algo: &str, usage: &str, expire: &str) -> String {
        let status = self.run_text(
            &["--passphrase", "", "--status-fd", "1", "--quick-gen-key", uid, algo, usage, expire],
            b"",
        );
        status
            .lines()
            .find_map(|l| l.strip_prefix("[GNUPG:] KEY_CREATED "))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .expect("gpg reported no KEY_CREATED")
            .to_string()
    }

    pub fn export_public(&self, fpr: &str) -> String {
        self.run_text(&["--armor", "--export", fpr], b"")
    }

    /// Several certificates in one armor block, as `gpg --export a b` writes a keyring.
    pub fn export_public_many(&self, fprs: &[&str]) -> String {
        let mut args = vec!["--armor", "--export"];
        args.extend_from_slice(fprs);
        self.run_text(&args, b"")
    }

    pub fn export_secret(&self, fpr: &str) -> String {
        self.run_text(&["--passphrase", "", "--armor", "--export-secret-keys", fpr], b"")
    }

    /// Armored message to `fpr`'s encryption subkey.
    pub fn encrypt_to(&self, fpr: &str, plaintext: &[u8]) -> String {
        self.run_text(&["--trust-model", "always", "--armor", "--encrypt", "-r", fpr], plaintext)
    }

    /// Binary message to `fpr`'s encryption subkey (what `/create/file` receives).
    pub fn encrypt_to_binary(&self, fpr: &str, plaintext: &[u8]) -> Vec<u8> {
        self.run(&["--trust-model", "always", "--encrypt", "-r", fpr], plaintext)
    }

    /// Armored message whose PKESK carries the wildcard key id (`--throw-keyids`).
    pub fn encrypt_to_hidden(&self, fpr: &str, plaintext: &[u8]) -> String {
        self.run_text(
            &["--trust-model", "always", "--throw-keyids", "--armor", "--encrypt", "-r", fpr],
            plaintext,
        )
    }

    /// Armored password-encrypted message (`gpg -c`).
    pub fn encrypt_symmetric(&self, password: &str, plaintext: &[u8]) -> String {
        self.run_text(&["--passphrase", password, "--armor", "--symmetric"], plaintext)
    }

    /// Armored signed (not encrypted) message, signed by the default key.
    pub fn sign(&self, plaintext: &[u8]) -> String {
        self.run_text(&["--passphrase", "", "--armor", "--sign"], plaintext)
    }

    pub fn decrypt(&self, armored: &str) -> Vec<u8> {
        self.run(&["--passphrase", "", "--decrypt"], armored.as_bytes())
    }

    /// Revokes the whole key with the revocation certificate gpg stored at generation time.
    pub fn revoke_key(&self, fpr: &str) {
        let path = self.home.path().join("openpgp-revocs.d").join(format!("{fpr}.rev"));
        let cert = std::fs::read_to_string(path).expect("read stored revocation certificate");
        // gpg prefixes the armor line with ':' so that an accidental import does nothing.
        let cert = cert.replace(":-----BEGIN PGP PUBLIC KEY BLOCK", "-----BEGIN PGP PUBLIC KEY BLOCK");
        self.run(&["--import"], cert.as_bytes());
    }

    /// Revokes the first subkey, through `--edit-key` driven on `--command-fd`.
    pub fn revoke_first_subkey(&self, fpr: &str) {
        self.run(
            &["--passphrase", "", "--command-fd", "0", "--edit-key", fpr],
            b"key 1\nrevkey\ny\n0\n\ny\nsave\n",
        );
    }
}

impl Default for Gpg {
    fn default() -> Self {
        Gpg::new()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // Best effort: the agent exits by itself once its socket directory is gone, but not at once.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "gpg-agent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A keyring with one ed25519 + cv25519 key that never expires.
pub struct Keys {
    pub gpg: Gpg,
    /// The key's fingerprint.
    pub key: String,
}

/// One key for every test module that needs a valid key and nothing particular about it: generating
/// keys is the slow part of the suite, and gpg does not like two processes generating keys in one home
/// at the same time.
pub fn shared_keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let gpg = Gpg::new();
        let key = gpg.gen_key("Test Key <test@example.com>", "future-default", "never");
        Keys { gpg, key }
    })
}
