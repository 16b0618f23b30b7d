//! The web UI's link shapes (`web-ui.md` §2): `<base>/#/s/<id>/<key>` (text), `<base>/#/f/<id>/<key>`
//! (file), the key optional; `<base>/#/r/<id>/<fp16>` (a request). Parsing only: a link that does not
//! have one of these shapes is refused before anything touches the network.

use zeroize::Zeroizing;

/// What a link names.
#[derive(PartialEq, Eq)]
pub enum Link {
    Secret { base: String, file: bool, id: String, key: Option<Zeroizing<String>> },
    Request { base: String, id: String, fp16: String },
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A link is a bearer credential: its parts never reach a log or an error.
        match self {
            Link::Secret { file, .. } => f.debug_struct("Secret").field("file", file).finish_non_exhaustive(),
            Link::Request { .. } => f.debug_struct("Request").finish_non_exhaustive(),
        }
    }
}

/// Why a link was refused. Never quotes the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// No `#/s/`, `#/f/` or `#/r/` part, or a base that is not a URL.
    Shape,
    /// An id that is not URL-safe as issued.
    Id,
    /// A request link whose fingerprint part is not 16 hex digits.
    Fingerprint,
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LinkError::Shape => "not a lethe link (expected <server>/#/s/…, #/f/… or #/r/…)",
            LinkError::Id => "the link's id is not valid",
            LinkError::Fingerprint => "the link's key fingerprint is not 16 hex digits",
        })
    }
}

pub fn is_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn is_fp16(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `decodeURIComponent` for the key part: the web UI decodes it, so a percent-escaped key opens.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub fn parse(link: &str) -> Result<Link, LinkError> {
    let link = link.trim();
    let (base, route) = link.split_once("/#/").ok_or(LinkError::Shape)?;
    if !(base.starts_with("http://") || base.starts_with("https://")) || base.contains('#') {
        return Err(LinkError::Shape);
    }
    let base = base.trim_end_matches('/').to_owned();
    let parts: Vec<&str> = route.split('/').collect();
    match parts.as_slice() {
        [kind @ ("s" | "f"), id, rest @ ..] if rest.len() <= 1 => {
            if !is_id(id) {
                return Err(LinkError::Id);
            }
            let key = match rest.first() {
                None | Some(&"") => None,
                Some(k) => Some(Zeroizing::new(percent_decode(k).ok_or(LinkError::Shape)?)),
            };
            Ok(Link::Secret { base, file: *kind == "f", id: (*id).to_owned(), key })
        }
        ["r", id, fp16] => {
            if !is_id(id) {
                return Err(LinkError::Id);
            }
            if !is_fp16(fp16) {
                return Err(LinkError::Fingerprint);
            }
            Ok(Link::Request { base, id: (*id).to_owned(), fp16: fp16.to_ascii_lowercase() })
        }
        ["r", id] if is_id(id) => Err(LinkError::Fingerprint),
        _ => Err(LinkError::Shape),
    }
}

pub fn secret_link(base: &str, file: bool, id: &str, key: &str) -> String {
    format!("{base}/#/{}/{id}/{key}", if file { "f" } else { "s" })
}

pub fn request_link(base: &str, id: &str, fingerprint: &str) -> String {
    let fp = fingerprint.to_ascii_lowercase();
    format!("{base}/#/r/{id}/{}", &fp[fp.len().saturating_sub(16)..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_uis_shapes_parse_and_others_are_refused() {
        let l = parse("http://h:1/#/s/abc_D-9/KeyKeyKeyKeyKeyKeyKey1").unwrap();
        assert_eq!(
            l,
            Link::Secret {
                base: "http://h:1".into(),
                file: false,
                id: "abc_D-9".into(),
                key: Some(Zeroizing::new("KeyKeyKeyKeyKeyKeyKey1".into()))
            }
        );
        assert!(matches!(parse("https://h/x/#/f/id").unwrap(), Link::Secret { file: true, key: None, .. }));
        assert!(
            matches!(parse("http://h/#/s/id/a%20b").unwrap(), Link::Secret { key: Some(k), .. } if k.as_str() == "a b")
        );
        assert_eq!(
            parse("http://h/#/r/id/0123456789ABCDEF").unwrap(),
            Link::Request { base: "http://h".into(), id: "id".into(), fp16: "0123456789abcdef".into() }
        );
        assert_eq!(parse("http://h/#/r/id/0123").unwrap_err(), LinkError::Fingerprint);
        assert_eq!(parse("http://h/#/r/id").unwrap_err(), LinkError::Fingerprint);
        assert_eq!(parse("http://h/#/s/a.b/k").unwrap_err(), LinkError::Id);
        for bad in [
            "",
            "http://h/#/x/id/k",
            "http://h/#/s/id/k/more",
            "ftp://h/#/s/id/k",
            "http://h/s/id/k",
            "http://h/#/s/id/%zz",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            request_link("http://h", "id", &"ab".repeat(20)),
            format!("http://h/#/r/id/{}", "ab".repeat(8))
        );
    }
}
