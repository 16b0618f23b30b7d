//! The request directory: one file per request, `lethe-request-<id>.json`, in the web UI's export
//! format (`web-ui.md` §7.3), so a file from here imports in a browser and a browser's export is
//! collected here. The directory is 0700 and every file 0600: they hold private keys and tokens.
//!
//! Files are replaced whole (written beside, then renamed), so a crash leaves the old entry or the new
//! one, never half of either. Fields this client does not know are kept on rewrite, as the web UI does.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::links::is_id;

pub const EXPORT_FORMAT: &str = "lethe-secret-request";
pub const STATES: [&str; 5] = ["pending", "fulfilled", "collected", "revoked", "expired"];
pub const FINAL_STATES: [&str; 3] = ["collected", "revoked", "expired"];
/// Far above any real entry (two armored ed25519 keys and a label); bounds what a file may make us read.
const MAX_ENTRY_BYTES: u64 = 256 * 1024;

/// One stored request, the fields of §7.1.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub id: String,
    pub token: String,
    pub label: String,
    pub private_key: String,
    pub public_key: String,
    pub fingerprint: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub state: String,
    /// Fields from other versions or clients, kept on rewrite. This client adds `server` (the base URL
    /// the request was made on); the web UI keeps it and ignores it.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("state", &self.state).finish_non_exhaustive()
    }
}

impl Entry {
    pub fn server(&self) -> Option<&str> {
        self.extra.get("server").and_then(Value::as_str)
    }

    pub fn is_final(&self) -> bool {
        FINAL_STATES.contains(&self.state.as_str())
    }

    /// Why this entry is not a valid stored request (the web UI's `entryProblem`), or `None`.
    pub fn problem(&self) -> Option<&'static str> {
        let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !is_id(&self.id) {
            return Some("id is not an id");
        }
        if !hex(&self.fingerprint) || !matches!(self.fingerprint.len(), 40 | 64) {
            return Some("fingerprint is not a fingerprint");
        }
        if !STATES.contains(&self.state.as_str()) {
            return Some("state is not a known state");
        }
        None
    }

    /// The export file's text: the entry and the two marker fields, pretty-printed.
    pub fn export_text(&self) -> String {
        #[derive(Serialize)]
        struct Export<'a> {
            format: &'static str,
            version: u32,
            #[serde(flatten)]
            entry: &'a Entry,
        }
        let text = serde_json::to_string_pretty(&Export { format: EXPORT_FORMAT, version: 1, entry: self })
            .unwrap_or_default();
        format!("{text}\n")
    }
}

/// The structural half of an import check: the entry, or why the text is not an export.
pub fn parse_export(text: &str) -> Result<Entry, &'static str> {
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(text) else {
        return Err("not a JSON object");
    };
    if obj.remove("format") != Some(Value::from(EXPORT_FORMAT))
        || obj.remove("version") != Some(Value::from(1))
    {
        return Err("wrong format");
    }
    obj.entry("state").or_insert_with(|| Value::from("pending"));
    let entry: Entry =
        serde_json::from_value(Value::Object(obj)).map_err(|_| "a field is missing or has the wrong type")?;
    match entry.problem() {
        Some(problem) => Err(problem),
        None => Ok(entry),
    }
}

/// The directory of this client's requests.
#[derive(Debug, Clone)]
pub struct RequestDir {
    dir: PathBuf,
}

impl RequestDir {
    pub fn new(dir: PathBuf) -> RequestDir {
        RequestDir { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, id: &str) -> PathBuf {
        self.dir.join(format!("lethe-request-{id}.json"))
    }

    /// Writes (or replaces) an entry's file.
    pub fn save(&self, entry: &Entry) -> std::io::Result<()> {
        DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        // A directory made earlier by something else may be looser than ours.
        let mode = fs::metadata(&self.dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))?;
        }
        let target = self.file(&entry.id);
        let temp = self.dir.join(format!(".lethe-request-{}.json.tmp", entry.id));
        let _ = fs::remove_file(&temp);
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
        f.write_all(entry.export_text().as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&temp, &target)
    }

    /// Deletes an entry's file.
    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        fs::remove_file(self.file(id))
    }

    /// The entry with this id, `Ok(None)` when there is no such file.
    pub fn load(&self, id: &str) -> Result<Option<Entry>, String> {
        if !is_id(id) {
            return Ok(None);
        }
        let path = self.file(id);
        match read_capped(&path) {
            Ok(text) => {
                parse_export(&text).map(Some).map_err(|why| format!("the stored request is damaged ({why})"))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(format!("cannot read the stored request: {err}")),
        }
    }

    /// Every valid entry, newest first, and the number of files that did not parse.
    pub fn list(&self) -> std::io::Result<(Vec<Entry>, usize)> {
        let mut entries = Vec::new();
        let mut damaged = 0;
        let dir = match fs::read_dir(&self.dir) {
            Ok(dir) => dir,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok((entries, 0)),
            Err(err) => return Err(err),
        };
        for item in dir {
            let path = item?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if !(name.starts_with("lethe-request-") && name.ends_with(".json")) {
                continue;
            }
            match read_capped(&path).ok().and_then(|t| parse_export(&t).ok()) {
                Some(entry) if self.file(&entry.id) == path => entries.push(entry),
                _ => damaged += 1,
            }
        }
        entries.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok((entries, damaged))
    }
}

pub fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    fs::File::open(path)?.take(MAX_ENTRY_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_ENTRY_BYTES {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "too large"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        parse_export(
            r#"{"format":"lethe-secret-request","version":1,"id":"abc","token":"t","label":"L",
                "privateKey":"p","publicKey":"q","fingerprint":"90669e1e07dc8e468fc577b7bc061e1c19e3716d",
                "createdAt":1,"expiresAt":2,"future":{"x":1}}"#,
        )
        .unwrap()
    }

    #[test]
    fn an_export_parses_with_a_default_state_and_keeps_unknown_fields() {
        let e = entry();
        assert_eq!(e.state, "pending");
        let again = parse_export(&e.export_text()).unwrap();
        assert_eq!(again.extra.get("future"), Some(&serde_json::json!({"x": 1})));
        assert!(e.export_text().starts_with("{\n  \"format\": \"lethe-secret-request\",\n  \"version\": 1,"));
    }

    #[test]
    fn exports_of_another_shape_are_refused() {
        let ok = entry().export_text();
        assert_eq!(parse_export("[]").unwrap_err(), "not a JSON object");
        assert_eq!(
            parse_export(&ok.replace("\"version\": 1", "\"version\": 2")).unwrap_err(),
            "wrong format"
        );
        assert_eq!(
            parse_export(&ok.replace("\"createdAt\": 1", "\"createdAt\": \"1\"")).unwrap_err(),
            "a field is missing or has the wrong type"
        );
        assert_eq!(
            parse_export(&ok.replace("\"id\": \"abc\"", "\"id\": \"../x\"")).unwrap_err(),
            "id is not an id"
        );
        assert_eq!(
            parse_export(&ok.replace("\"state\": \"pending\"", "\"state\": \"odd\"")).unwrap_err(),
            "state is not a known state"
        );
        assert_eq!(parse_export(r#"{"yopassSecretRequest":1}"#).unwrap_err(), "wrong format");
    }

    #[test]
    fn saved_entries_are_private_files_listed_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = RequestDir::new(dir.path().join("requests"));
        let mut a = entry();
        store.save(&a).unwrap();
        a.id = "newer".into();
        a.created_at = 5;
        store.save(&a).unwrap();
        fs::write(dir.path().join("requests/lethe-request-junk.json"), "nope").unwrap();
        let (list, damaged) = store.list().unwrap();
        assert_eq!(list.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["newer", "abc"]);
        assert_eq!(damaged, 1);
        let mode = fs::metadata(store.file("abc")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(store.load("missing").unwrap().is_none());
        assert!(store.load("../etc").unwrap().is_none());
    }
}
