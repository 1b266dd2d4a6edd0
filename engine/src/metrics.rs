//! The Prometheus text endpoint on the admin address: a tiny blocking HTTP
//! server on its own thread, off every core's hot path.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::stats::{CoreStats, render_prometheus};

/// Writes metrics of other parts of the server (game layer, store, auth
/// workers) after the cores' own.
pub(crate) type ExtraMetrics = Arc<dyn Fn(&mut String) + Send + Sync>;

/// Serves `GET /metrics` until `stop` is set.
pub(crate) fn serve(
    listener: TcpListener,
    cores: Arc<Vec<Arc<CoreStats>>>,
    extra: Option<ExtraMetrics>,
    stop: Arc<AtomicBool>,
) {
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => answer(stream, &cores, extra.as_ref()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn answer(mut stream: TcpStream, cores: &[Arc<CoreStats>], extra: Option<&ExtraMetrics>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut request = [0u8; 1024];
    let n = stream.read(&mut request).unwrap_or(0);
    let line = String::from_utf8_lossy(&request[..n]);
    let response = if line.starts_with("GET /metrics") || line.starts_with("GET / ") {
        let mut body = render_prometheus(&cores.iter().map(|c| c.snapshot()).collect::<Vec<_>>());
        if let Some(extra) = extra {
            extra(&mut body);
        }
        format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
    };
    let _ = stream.write_all(response.as_bytes());
}

/// Binds the admin address; an error names it.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}
