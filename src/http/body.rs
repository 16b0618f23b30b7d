//! Reading request bodies through a hard limit and the request's deadline, and decoding the small
//! formats the surfaces share (query strings and form bodies, HTTP Basic credentials).
//!
//! The HTTP layer runs each request inside a [`scoped`] section that carries what `read` needs to know
//! but the surfaces do not: when the body must have arrived, and whether the client is waiting for
//! `100 Continue`. Surfaces keep calling `read(body, limit)` and stay unaware of both.

use std::cell::Cell;
use std::future::Future;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes};
use hyper::header::{self, HeaderMap};
use tokio::time::Instant;

use base64::Engine as _;

#[derive(Debug)]
pub enum BodyError {
    /// Over the limit; counted on the bytes actually received, or declared by a client that waits for
    /// `100 Continue` and so has sent nothing yet.
    TooLarge,
    /// The client went away, sent a malformed body, or did not finish it before the request deadline.
    Read(String),
}

/// How much past the limit is read and thrown away before answering. A client still sending when the
/// server answers and closes sees a broken pipe instead of the error; draining a bounded amount lets
/// ordinary clients read the refusal.
const DRAIN_PAST_LIMIT: usize = 1024 * 1024;

/// What the HTTP layer knows about the request being handled on this task.
struct Scope {
    /// When the whole body must have arrived.
    deadline: Instant,
    /// The client sent `Expect: 100-continue`: hyper sends `100 Continue` on the first poll of the body,
    /// so an oversized declaration must be refused before that poll.
    expects_continue: bool,
    /// Set by [`read`] when the deadline cut the body off, so the HTTP layer answers 408 whatever the
    /// surface made of the error. A `Cell`: the scope is only ever touched from its own task.
    timed_out: Cell<bool>,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Runs one request's handling with its body deadline; returns the handler's output and whether the
/// deadline cut the body off.
pub async fn scoped<F: Future>(deadline: Instant, expects_continue: bool, handler: F) -> (F::Output, bool) {
    let scope = Scope { deadline, expects_continue, timed_out: Cell::new(false) };
    SCOPE
        .scope(scope, async {
            let output = handler.await;
            (output, SCOPE.with(|s| s.timed_out.get()))
        })
        .await
}

/// The bytes kept of a body: never more than `limit`, and never a buffer larger than that either (a
/// plain `Vec` doubles past it).
struct Kept {
    buf: Vec<u8>,
    limit: usize,
}

impl Kept {
    /// Pre-sized from a declared length only when the limit allows it, so a lying `Content-Length`
    /// cannot make the server reserve more than the route accepts.
    fn new(declared: u64, limit: usize) -> Kept {
        let size = usize::try_from(declared).ok().filter(|&n| n <= limit).unwrap_or(0);
        Kept { buf: Vec::with_capacity(size), limit }
    }

    /// Appends `data`; the caller has checked that the total stays within the limit.
    fn push(&mut self, data: &[u8]) {
        let needed = self.buf.len() + data.len();
        if needed > self.buf.capacity() {
            let target = needed.max(self.buf.capacity().saturating_mul(2)).min(self.limit).max(needed);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(data);
    }
}

/// Reads the whole body, keeping at most `limit` bytes, counted on the bytes received (never trusting
/// `Content-Length`). Inside a [`scoped`] request, the body must arrive before the request's deadline,
/// and a client waiting for `100 Continue` with a declared length over `limit` is refused without it.
pub async fn read<B>(mut body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let (deadline, expects_continue) =
        SCOPE.try_with(|s| (Some(s.deadline), s.expects_continue)).unwrap_or((None, false));
    let declared = body.size_hint().lower();
    let over = usize::try_from(declared).map_or(true, |n| n > limit);
    if over && expects_continue {
        // Nothing was sent yet, so nothing needs draining: the refusal goes out instead of 100 Continue.
        return Err(BodyError::TooLarge);
    }
    // A body declared over the limit is refused anyway; only drain it.
    let mut kept = Kept::new(if over { 0 } else { declared }, limit);
    let mut seen = 0usize;
    loop {
        let next = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(next) => next,
                Err(_) => {
                    let _ = SCOPE.try_with(|s| s.timed_out.set(true));
                    return Err(BodyError::Read("the request body did not arrive in time".into()));
                }
            },
            None => body.frame().await,
        };
        let Some(frame) = next else { break };
        let frame = frame.map_err(|err| BodyError::Read(err.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen > limit || over {
            if seen > limit.saturating_add(DRAIN_PAST_LIMIT) {
                break;
            }
            continue;
        }
        kept.push(&data);
    }
    if seen > limit || over { Err(BodyError::TooLarge) } else { Ok(Bytes::from(kept.buf)) }
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

    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use hyper::body::{Frame, SizeHint};

    /// A body in chunks, with a declared length or none (as a chunked upload); once the chunks are
    /// out it ends, or stalls forever when `stall`. `poisoned` fails the test if it is polled at all.
    struct TestBody {
        chunks: VecDeque<&'static [u8]>,
        declared: Option<u64>,
        stall: bool,
        poisoned: bool,
    }

    fn body(chunks: &[&'static [u8]]) -> TestBody {
        TestBody { chunks: chunks.iter().copied().collect(), declared: None, stall: false, poisoned: false }
    }

    impl Body for TestBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            assert!(!self.poisoned, "a body that must stay unread was polled");
            match self.chunks.pop_front() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(chunk))))),
                None if self.stall => Poll::Pending,
                None => Poll::Ready(None),
            }
        }

        fn size_hint(&self) -> SizeHint {
            self.declared.map_or_else(SizeHint::default, SizeHint::with_exact)
        }
    }

    #[test]
    fn kept_bytes_never_reserve_past_the_limit() {
        let mut kept = Kept::new(0, 1000);
        for _ in 0..100 {
            kept.push(&[7u8; 10]);
            assert!(kept.buf.capacity() <= 1000, "{}", kept.buf.capacity());
        }
        assert_eq!(kept.buf.len(), 1000);
        // A declared length within the limit sizes the buffer once; one over it sizes nothing.
        assert_eq!(Kept::new(600, 1000).buf.capacity(), 600);
        assert_eq!(Kept::new(1001, 1000).buf.capacity(), 0);
        assert_eq!(Kept::new(u64::MAX, 1000).buf.capacity(), 0);
    }

    #[tokio::test]
    async fn bodies_are_read_through_the_limit() {
        assert_eq!(read(body(&[b"ab", b"cd", b"e"]), 5).await.unwrap(), "abcde");
        assert!(matches!(read(body(&[b"ab", b"cd", b"ef"]), 5).await, Err(BodyError::TooLarge)));
        let declared = TestBody { declared: Some(5), ..body(&[b"hello"]) };
        assert_eq!(read(declared, 5).await.unwrap(), "hello");
        // Declared over the limit without waiting for 100 Continue: drained, then refused.
        let declared = TestBody { declared: Some(6), ..body(&[b"hello!"]) };
        assert!(matches!(read(declared, 5).await, Err(BodyError::TooLarge)));
    }

    #[tokio::test]
    async fn a_client_waiting_for_continue_is_refused_on_its_declared_length_alone() {
        let later = Instant::now() + std::time::Duration::from_secs(3600);
        let oversized = TestBody { declared: Some(6), poisoned: true, ..body(&[b"123456"]) };
        let (out, timed_out) = scoped(later, true, read(oversized, 5)).await;
        assert!(matches!(out, Err(BodyError::TooLarge)));
        assert!(!timed_out);
        let fits = TestBody { declared: Some(5), ..body(&[b"12345"]) };
        let (out, _) = scoped(later, true, read(fits, 5)).await;
        assert_eq!(out.unwrap(), "12345");
    }

    #[tokio::test]
    async fn a_body_that_stalls_is_cut_off_at_the_deadline() {
        let stalled = TestBody { stall: true, ..body(&[b"1"]) };
        let (out, timed_out) = scoped(Instant::now(), false, read(stalled, 5)).await;
        assert!(matches!(out, Err(BodyError::Read(_))));
        assert!(timed_out);
        // Outside a request scope there is no deadline to miss.
        assert_eq!(read(body(&[b"ok"]), 5).await.unwrap(), "ok");
    }
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
