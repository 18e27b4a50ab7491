//! A TCP proxy a test puts between nodes and a service (PostgreSQL) to take the service away and bring it
//! back: `cut` closes every connection through it and refuses new ones (accepted and closed at once, as a
//! restarting server would); `drop_packets` keeps every connection open but carries nothing either way,
//! new ones included (a link that loses packets: nothing fails, nothing answers); `restore` lets
//! connections through again. It runs on a thread of its own, so
//! it serves whatever runtime the test uses, and stops with the test.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};

struct ProxyState {
    target: String,
    up: AtomicBool,
    /// Bytes are read and thrown away instead of forwarded.
    dropping: Arc<AtomicBool>,
    connections: Mutex<Vec<tokio::task::AbortHandle>>,
}

/// A proxy to one service.
pub struct OutageProxy {
    pub address: SocketAddr,
    state: Arc<ProxyState>,
    _runtime: std::thread::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl OutageProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `target` (`host:port`).
    pub fn start(target: &str) -> OutageProxy {
        let state = Arc::new(ProxyState {
            target: target.to_string(),
            up: AtomicBool::new(true),
            dropping: Arc::new(AtomicBool::new(false)),
            connections: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = state.clone();
        let runtime = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let accept = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        if !serving.up.load(Ordering::SeqCst) {
                            drop(client);
                            continue;
                        }
                        let target = serving.target.clone();
                        let dropping = serving.dropping.clone();
                        let task = tokio::spawn(async move {
                            let Ok(server) = TcpStream::connect(&target).await else {
                                return;
                            };
                            let (client_reads, client_writes) = client.into_split();
                            let (server_reads, server_writes) = server.into_split();
                            tokio::select! {
                                () = pump(client_reads, server_writes, dropping.clone()) => {}
                                () = pump(server_reads, client_writes, dropping) => {}
                            }
                        });
                        serving
                            .connections
                            .lock()
                            .unwrap()
                            .push(task.abort_handle());
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
        });
        OutageProxy {
            address,
            state,
            _runtime: runtime,
            stop: Some(stop),
        }
    }

    /// The service is gone: every connection through the proxy is closed, new ones are closed at once.
    pub fn cut(&self) {
        self.state.up.store(false, Ordering::SeqCst);
        for connection in self.state.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// The link loses every packet: connections stay open, nothing goes through either way.
    pub fn drop_packets(&self) {
        self.state.dropping.store(true, Ordering::SeqCst);
    }

    /// The service is back.
    pub fn restore(&self) {
        self.state.dropping.store(false, Ordering::SeqCst);
        self.state.up.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either closes, throwing bytes away while `dropping`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dropping: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if dropping.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

impl Drop for OutageProxy {
    fn drop(&mut self) {
        self.cut();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
