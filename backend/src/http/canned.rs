//! hyper answers a request it cannot read — a URI beyond 64 KiB (414), headers beyond its
//! buffer (431), a malformed request line (400) — itself, before any handler runs, with an
//! empty body. [`ProblemIo`] wraps each connection so that such an answer leaves as
//! problem+json like every other error of the API (clients parse one error format).
//!
//! It recognises hyper's own answers by their shape: one of those statuses, `content-length:
//! 0` and no `content-type` (every handler's error has one). Vectored writes are declined
//! so that hyper hands over the head of a response in one buffer.
//!
//! It also closes gently. A connection closed while the client is still sending (a body
//! over the limit, answered 413 before it was read) would be reset, and the reset destroys
//! the answer in flight: the client sees a broken connection instead of the 413. So after
//! its own side is shut, the connection reads and discards what still comes, briefly
//! (a lingering close, as nginx does).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::problem_type;

pub struct ProblemIo<T> {
    inner: T,
    /// A rewritten answer being written: its bytes, how many are out, and the length of
    /// the write it stands for.
    rewriting: Option<(Vec<u8>, usize, usize)>,
    /// Once shut: until when, and how much more, to read and discard.
    lingering: Option<(Pin<Box<tokio::time::Sleep>>, usize)>,
}

/// How long a closing connection goes on reading what the client still sends, and how much.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_BYTES: usize = 8 << 20;

impl<T> ProblemIo<T> {
    pub fn new(inner: T) -> Self {
        ProblemIo { inner, rewriting: None, lingering: None }
    }
}

/// hyper's answer in `head` as problem+json, if it is one.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status: u16 =
        text.strip_prefix("HTTP/1.1 ").or_else(|| text.strip_prefix("HTTP/1.0 "))?.get(..3)?.parse().ok()?;
    let (code, title, detail) = match status {
        400 => ("invalid-request", "The request could not be read", "the request line or a header is malformed"),
        414 => ("uri-too-long", "URI too long", "the request's URI is longer than 65,534 bytes"),
        431 => ("headers-too-large", "Request headers too large", "the request's headers are too large"),
        _ => return None,
    };
    let lines: Vec<&str> = head.split("\r\n").collect();
    let empty = lines.iter().any(|l| l.eq_ignore_ascii_case("content-length: 0"));
    let typed = lines.iter().any(|l| l.to_ascii_lowercase().starts_with("content-type:"));
    if !empty || typed || !rest.is_empty() {
        return None;
    }
    let body = serde_json::json!({"type": problem_type(code), "title": title, "status": status, "detail": detail});
    let body = body.to_string();
    let mut out = String::with_capacity(head.len() + body.len() + 80);
    for line in lines.iter().filter(|l| !l.eq_ignore_ascii_case("content-length: 0")) {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("content-type: application/problem+json\r\ncontent-length: {}\r\n\r\n", body.len()));
    out.push_str(&body);
    Some(out.into_bytes())
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ProblemIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.rewriting.is_none()
            && buf.starts_with(b"HTTP/1.")
            && let Some(rewritten) = rewrite(buf)
        {
            this.rewriting = Some((rewritten, 0, buf.len()));
        }
        let Some((bytes, written, stands_for)) = &mut this.rewriting else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        while *written < bytes.len() {
            *written += ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]))?;
        }
        let stands_for = *stands_for;
        this.rewriting = None;
        Poll::Ready(Ok(stands_for))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.lingering.is_none() {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.lingering = Some((Box::pin(tokio::time::sleep(LINGER)), LINGER_BYTES));
        }
        let (deadline, left) = this.lingering.as_mut().expect("set above");
        let mut scratch = [0u8; 16 * 1024];
        loop {
            if *left == 0 || deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => *left = left.saturating_sub(buf.filled().len()),
                // The client is done (or gone): nothing left to protect.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_hyper_s_own_empty_answers_are_rewritten() {
        let canned = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 00:00:00 GMT\r\n\r\n";
        let rewritten = String::from_utf8(super::rewrite(canned).unwrap()).unwrap();
        assert!(rewritten.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        assert!(rewritten.contains("date: Wed"));
        assert!(rewritten.contains("content-type: application/problem+json\r\n"));
        let (_, body) = rewritten.split_once("\r\n\r\n").unwrap();
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["type"], "urn:myscanner:problem:uri-too-long");
        assert!(rewritten.contains(&format!("content-length: {}\r\n", body.len())));
        // A handler's answer is left alone: typed, with a body, or another status.
        let typed = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n";
        assert!(super::rewrite(typed).is_none());
        assert!(super::rewrite(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(super::rewrite(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }
}
