//! The HTTP/1.1 server around [`crate::app`]: connections with limits, and Keen-style answers even for
//! what fails below the router.
//!
//! - **Header read timeout** ([`HttpLimits::header_read_timeout`]): a request's line and headers must
//!   arrive within it, and an idle keep-alive connection is closed after it (hyper starts the same timer
//!   while it waits for the next request).
//! - **Body deadline** ([`HttpLimits::body_timeout`]): a request body must be complete within it,
//!   counted from its headers (a client trickling one byte at a time, or an unfinished chunked body,
//!   cannot hold a connection and a handler forever); a late body is answered `408`.
//! - **Connection cap** ([`HttpLimits::max_connections`]): past it, a new connection is answered `503`
//!   with `Retry-After` and closed.
//! - **Header size** ([`HttpLimits::max_header_bytes`]): larger request heads are refused with `431`.
//!
//! Design: hyper answers requests it cannot parse (bad header bytes, a huge URL) itself, with an empty
//! body. [`KeenErrorIo`] sits between hyper and the socket and gives exactly those answers — a 4xx/5xx
//! head with `content-length: 0` and no `content-type`, which no route of ours produces — a Keen-style
//! JSON body, so every error a client sees has `message` and `error_code`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::errors::{ApiError, ErrorCode};

/// Connection limits; see the module docs. ARCHITECTURE.md lists the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client has to send a request's headers; also how long an idle connection stays open.
    pub header_read_timeout: Duration,
    /// How long a client has to send a request's whole body once its headers arrived.
    pub body_timeout: Duration,
    /// Open connections at most; more are answered 503 and closed.
    pub max_connections: usize,
    /// Most bytes of a request's line and headers.
    pub max_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tokio::spawn(refuse_over_capacity(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let body_timeout = limits.body_timeout;
        let service = app
            .clone()
            .map_request(move |request: hyper::Request<Incoming>| {
                let (mut parts, body) = request.into_parts();
                parts.extensions.insert(ConnectInfo(peer));
                let body = axum::body::Body::new(DeadlineBody::new(body, body_timeout));
                hyper::Request::from_parts(parts, body)
            });
        let connection = http1_builder(&limits).serve_connection(
            TokioIo::new(KeenErrorIo::new(stream)),
            TowerToHyperService::new(service),
        );
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(error) = watched.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn http1_builder(limits: &HttpLimits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .writev(false);
    builder
}

/// Answers a connection past the cap with a Keen-style `503` and closes it.
async fn refuse_over_capacity(mut stream: TcpStream) {
    let error = ApiError::new(
        ErrorCode::ServiceUnavailable,
        "The server has too many open connections; retry shortly.",
    );
    let body = error.body().to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
}

/// The error a body past its deadline fails with.
#[derive(Debug)]
pub(crate) struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

/// A request body that fails once its deadline passes. The timer is armed only when the body is not
/// already there: most bodies arrive with their headers, and a write should not pay for a timer it never
/// waits on.
struct DeadlineBody {
    body: Incoming,
    deadline: tokio::time::Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl DeadlineBody {
    fn new(body: Incoming, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            body,
            deadline: tokio::time::Instant::now() + timeout,
            timer: None,
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Reads a whole request body of at most `limit` bytes. A body over the limit is `too_large`; one that
/// missed its deadline is `408`; one the client broke off is a plain `400`.
pub(crate) async fn read_body(
    mut body: axum::body::Body,
    limit: usize,
    too_large: impl FnOnce() -> ApiError,
) -> Result<Bytes, ApiError> {
    use axum::body::HttpBody;
    use http_body_util::BodyExt;
    // With a Content-Length, the body is read into one buffer of exactly its size: a request's memory
    // is then its body once, not the frames and a doubling buffer.
    let announced = body.size_hint().exact().unwrap_or(0);
    // A body announced too large is still read up to the limit, without keeping it, so a client that is
    // still sending hears the 413 rather than a reset connection.
    let keep = announced <= limit as u64;
    let mut bytes = Vec::with_capacity(if keep { announced as usize } else { 0 });
    let mut received = 0;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => return Err(unreadable_body(&error)),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received += data.len();
        if received > limit {
            return Err(too_large());
        }
        if keep {
            bytes.extend_from_slice(&data);
        }
    }
    if !keep {
        return Err(too_large());
    }
    Ok(Bytes::from(bytes))
}

/// The answer to a body that could not be read: too slow, or cut off.
fn unreadable_body(error: &axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<BodyTimedOut>() {
            return ApiError::new(
                ErrorCode::RequestTimeout,
                "The request body did not arrive in time.",
            );
        }
        source = cause.source();
    }
    ApiError::new(
        ErrorCode::InvalidRequest,
        "The request body could not be read.",
    )
}

/// The socket as hyper sees it; see the module docs for why it rewrites some answers.
pub(crate) struct KeenErrorIo<T> {
    inner: T,
    /// Bytes of a rewritten answer not yet written to `inner`.
    pending: Vec<u8>,
    written: usize,
}

impl<T> KeenErrorIo<T> {
    pub(crate) fn new(inner: T) -> KeenErrorIo<T> {
        KeenErrorIo {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// hyper's own answer to an unparseable request rewritten with a Keen-style body, or `None` when `head`
/// is not such an answer.
pub(crate) fn rewrite_bare_error(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let (status_line, rest) = text.split_once("\r\n")?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?
        .get(..3)?
        .parse()
        .ok()?;
    if status < 400 {
        return None;
    }
    let (headers, after) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    let lines: Vec<&str> = headers.split("\r\n").collect();
    let is_bare = lines
        .iter()
        .any(|line| line.eq_ignore_ascii_case("content-length: 0"))
        && !lines
            .iter()
            .any(|line| line.to_ascii_lowercase().starts_with("content-type:"));
    if !is_bare || !after.is_empty() {
        return None;
    }
    let (code, message) = match status {
        414 => (ErrorCode::UriTooLong, "The request URL is too long."),
        431 => (
            ErrorCode::HeadersTooLarge,
            "The request line and headers are too large.",
        ),
        _ => (
            ErrorCode::InvalidRequest,
            "The request could not be parsed: its request line or headers are malformed.",
        ),
    };
    let body = ApiError::new(code, message).body().to_string();
    let mut rewritten = format!("{status_line}\r\n");
    for line in lines {
        if line.eq_ignore_ascii_case("content-length: 0") {
            rewritten.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            ));
        } else {
            rewritten.push_str(line);
            rewritten.push_str("\r\n");
        }
    }
    rewritten.push_str("\r\n");
    rewritten.push_str(&body);
    Some(rewritten.into_bytes())
}

impl<T: AsyncWrite + Unpin> KeenErrorIo<T> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let written = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..])
            )?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += written;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for KeenErrorIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for KeenErrorIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if buf.starts_with(b"HTTP/1.")
            && let Some(rewritten) = rewrite_bare_error(buf)
        {
            self.pending = rewritten;
            self.written = 0;
            // The caller's bytes are taken; the rewritten answer goes out on this and later polls.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// A list's `limit` query parameter: a whole number from 1 to `max`, or the message saying so.
pub(crate) fn parse_page_limit(value: &str, max: usize) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|limit| (1..=max).contains(limit))
        .ok_or_else(|| format!("limit must be a whole number from 1 to {max}."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_parse_errors_get_keen_bodies_and_app_answers_do_not() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Sun, 29 Nov 2026 10:00:00 GMT\r\n\r\n";
        let rewritten = String::from_utf8(rewrite_bare_error(bare).unwrap()).unwrap();
        let (head, body) = rewritten.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error_code"], "InvalidRequestError");
        let too_large =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert!(
            String::from_utf8(rewrite_bare_error(too_large).unwrap())
                .unwrap()
                .contains("\"message\"")
        );
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n";
        assert!(rewrite_bare_error(ours).is_none());
        let ok = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert!(rewrite_bare_error(ok).is_none());
    }
}
