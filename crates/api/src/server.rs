//! The HTTP/1.1 server loop. `axum::serve` sets no timeouts: a client that
//! sends half a header, or a body one byte a minute, or that just connects
//! and waits, holds a connection and a task forever (slowloris). Here every
//! connection has a header-read timeout (which also closes idle keep-alive
//! connections) and request bodies an idle timeout between frames.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::ApiState;

/// Connection and body timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest wait for a whole request head, and for the next request on an idle connection.
    pub header_timeout: Duration,
    /// Longest pause between two chunks of a request body.
    pub body_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { header_timeout: Duration::from_secs(10), body_idle_timeout: Duration::from_secs(30) }
    }
}

/// Connections the kernel completes and queues before `accept` takes them
/// (capped by `net.core.somaxconn`). `TcpListener::bind` asks for 128 here,
/// and a burst of thousands of clients connecting at once then overflows the
/// queue: the kernel drops their SYNs and they retry after 1 s, 3 s, 7 s ...,
/// which load generators report as connect timeouts.
pub const BACKLOG: u32 = 4096;

/// Binds `addr` (`host:port`) for [`serve`] with a [`BACKLOG`]-deep accept queue.
pub async fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        match socket.bind(a) {
            Ok(()) => return socket.listen(BACKLOG),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr} names no address"))))
}

/// Open requests get this long to finish at shutdown; endless ones (`/live`) are then cut.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves on `listener` until `shutdown` resolves, then drains open requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "HTTP API listening.");
    let app = crate::router(state).layer(RequestBodyTimeoutLayer::new(limits.body_idle_timeout));
    let service = TowerToHyperService::new(app);
    let stop = CancellationToken::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait for connections to close.
                    tracing::warn!(error = %e, "Accept failed; pausing.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let (service, stop) = (service.clone(), stop.clone());
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "Connection ended with an error.");
                    }
                }
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    stop.cancel();
    let drained = tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::info!(open = connections.len(), "Cutting connections still open after the drain.");
    }
    connections.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[tokio::test]
    async fn the_accept_queue_holds_a_burst_of_connections() {
        let listener = super::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("address");
        // Nobody accepts: the kernel alone completes these handshakes, and only
        // as many as the accept queue holds (128 with a plain bind).
        let mut held = Vec::new();
        for i in 0..1000 {
            let connect = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await;
            match connect {
                Ok(Ok(s)) => held.push(s),
                other => panic!("connection {i} was not queued: {other:?}"),
            }
        }
        assert_eq!(held.len(), 1000);
        assert!(super::bind(&addr.to_string()).await.is_err(), "the port is taken");
    }
}
