//! Embeds the web UI's built output (`web/dist/`, committed) into the binary: a table of
//! `(name, bytes, content type)` that `src/api/app.rs` serves. It never runs Node: a fresh clone builds
//! with `cargo build` alone; `web/build.mjs` makes `web/dist/` and CI checks it matches the sources.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let dist = root.join("web").join("dist");
    println!("cargo:rerun-if-changed=web/dist");
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    assert!(
        files.iter().any(|(name, _)| name == "index.html"),
        "web/dist/index.html is missing: build the web UI with `cd web && npm ci --ignore-scripts && npm run build`"
    );
    let mut table = String::from("&[\n");
    for (name, path) in &files {
        let Some(content_type) = content_type(name) else {
            panic!("web/dist/{name}: no content type is known for this file; add one in build.rs");
        };
        writeln!(table, "    ({name:?}, include_bytes!({path:?}), {content_type:?}),").expect("a String");
    }
    table.push(']');
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("web_assets.rs");
    std::fs::write(out, table).expect("write web_assets.rs");
}

/// Every file under `dir`, as (path relative to `root` with `/` separators, absolute path).
fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.expect("read web/dist").path();
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).expect("under web/dist");
            let name =
                rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            out.push((name, path.to_string_lossy().into_owned()));
        }
    }
}

fn content_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.').map(|(_, ext)| ext)?;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        _ => return None,
    })
}
