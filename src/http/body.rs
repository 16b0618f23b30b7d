//! Reading request bodies through a hard limit, and decoding the small formats the surfaces share
//! (query strings and form bodies, HTTP Basic credentials).

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap};

use base64::Engine as _;

#[derive(Debug)]
pub enum BodyError {
    /// Over the limit; counted on the bytes actually received, not on `Content-Length`.
    TooLarge,
    /// The client went away or sent a malformed body.
    Read(String),
}

/// How much past the limit is read and thrown away before answering. A client still sending when the
/// server answers and closes sees a broken pipe instead of the error; draining a bounded amount lets
/// ordinary clients read the refusal.
const DRAIN_PAST_LIMIT: usize = 1024 * 1024;

/// Reads the whole body, keeping at most `limit` bytes, counted on the bytes received (never on
/// `Content-Length`).
pub async fn read(mut body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| BodyError::Read(err.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen > limit {
            if seen > limit.saturating_add(DRAIN_PAST_LIMIT) {
                break;
            }
            continue;
        }
        kept.extend_from_slice(&data);
    }
    if seen > limit { Err(BodyError::TooLarge) } else { Ok(Bytes::from(kept)) }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A form or query component whose bytes are not UTF-8. Refused, never repaired: a lossy decode would
/// store a secret other than the one sent, and make any two invalid passphrases of one length equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, `%XX` a byte; a stray `%`
/// stays as it is.
pub fn percent_decode(s: &[u8]) -> Result<String, NotUtf8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match (s.get(i + 1).copied().and_then(hex_value), s.get(i + 2).copied().and_then(hex_value)) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| NotUtf8)
}

/// Splits `a=1&b=2` into decoded pairs, in order; empty segments are skipped. Any name or value that
/// does not decode to UTF-8 refuses the whole form.
pub fn parse_form(s: &[u8]) -> Result<Vec<(String, String)>, NotUtf8> {
    s.split(|&b| b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = match part.iter().position(|&b| b == b'=') {
                Some(at) => (&part[..at], &part[at + 1..]),
                None => (part, &part[part.len()..]),
            };
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// Credentials from `Authorization: Basic`. `None` when the header is absent; `Some(Err)` when it is
/// present but unreadable, which must fail the request rather than fall back to anonymous.
pub fn basic_auth(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?;
    let parsed = (|| {
        let value = value.to_str().ok()?;
        let (scheme, encoded) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, pass) = decoded.split_once(':')?;
        Some((user.to_owned(), pass.to_owned()))
    })();
    Some(parsed.ok_or(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(percent_decode(b"a+b%20c%2Fd"), Ok("a b c/d".into()));
        assert_eq!(percent_decode(b"100%"), Ok("100%".into()));
        assert_eq!(percent_decode(b"%zz%4"), Ok("%zz%4".into()));
        assert_eq!(percent_decode(b"%e2%9c%93"), Ok("✓".into()));
        assert_eq!(
            parse_form(b"secret=x%3Dy&ttl=&&recipient%5B%5D=a"),
            Ok(vec![
                ("secret".into(), "x=y".into()),
                ("ttl".into(), "".into()),
                ("recipient[]".into(), "a".into())
            ])
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_refuse_the_form() {
        assert_eq!(percent_decode(b"%ff%fe"), Err(NotUtf8));
        assert_eq!(percent_decode(b"%e2%9c"), Err(NotUtf8));
        assert_eq!(parse_form(b"secret=ok&passphrase=%C3"), Err(NotUtf8));
        assert_eq!(parse_form(&[b's', b'=', 0xff]), Err(NotUtf8));
        assert_eq!(parse_form("s=✓".as_bytes()), Ok(vec![("s".into(), "✓".into())]));
    }

    #[test]
    fn basic_credentials() {
        let mut h = HeaderMap::new();
        assert!(basic_auth(&h).is_none());
        h.insert(header::AUTHORIZATION, "Basic YWxpY2VAZXhhbXBsZS5jb206dG9rOmVu".parse().unwrap());
        assert_eq!(basic_auth(&h), Some(Ok(("alice@example.com".into(), "tok:en".into()))));
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(basic_auth(&h), Some(Err(())));
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(basic_auth(&h), Some(Err(())));
    }
}
