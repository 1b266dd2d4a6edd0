//! The `network` section: sockets, datagram size, I/O backend and steering.

use std::net::{AddrParseError, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::check::Checker;

/// Largest `recvmmsg`/`sendmmsg` batch the kernel takes in one call
/// (`UIO_MAXIOV`); io_uring batches are held to the same bound.
const MAX_BATCH: u16 = 1024;

/// Sockets and datagram I/O.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// UDP address every core's `SO_REUSEPORT` socket binds, such as
    /// `"0.0.0.0:3565"` or `"[::]:3565"`.
    pub bind: String,
    /// Largest UDP payload the server sends or accepts, in bytes. 1200 stays
    /// under every common path MTU, tunnels included, so packets are never
    /// fragmented by IP.
    pub mtu: u16,
    /// `SO_RCVBUF` asked for on each socket, in bytes (the kernel caps it at
    /// `net.core.rmem_max`).
    pub recv_buffer_bytes: u32,
    /// `SO_SNDBUF` asked for on each socket, in bytes (capped at
    /// `net.core.wmem_max`).
    pub send_buffer_bytes: u32,
    /// How datagrams move between the kernel and the server.
    pub io_backend: IoBackend,
    /// How an incoming datagram reaches the core that owns its connection.
    pub steering: Steering,
    /// Address of the plain-text admin and metrics endpoint, normally on
    /// loopback; `None` disables it.
    pub metrics_addr: Option<String>,
    /// Most datagrams taken from the kernel in one receive call.
    pub recv_batch: u16,
    /// Most datagrams handed to the kernel in one send call.
    pub send_batch: u16,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            bind: "0.0.0.0:3565".to_owned(),
            mtu: 1200,
            recv_buffer_bytes: 512 * 1024,
            send_buffer_bytes: 512 * 1024,
            io_backend: IoBackend::Auto,
            steering: Steering::Auto,
            metrics_addr: Some("127.0.0.1:9100".to_owned()),
            recv_batch: 64,
            send_batch: 64,
        }
    }
}

impl NetworkConfig {
    /// [`NetworkConfig::bind`] as a socket address (always `Ok` once
    /// validated).
    pub fn bind_addr(&self) -> Result<SocketAddr, AddrParseError> {
        self.bind.parse()
    }

    /// [`NetworkConfig::metrics_addr`] as a socket address: `None` when the
    /// endpoint is disabled.
    pub fn metrics_socket_addr(&self) -> Option<Result<SocketAddr, AddrParseError>> {
        self.metrics_addr.as_deref().map(str::parse)
    }

    pub(crate) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        check.socket_addr("network.bind", &self.bind)?;
        // 576 is the smallest datagram every IPv4 host must accept; 1472 is
        // a 1500-byte Ethernet frame less the IPv4 and UDP headers.
        check.in_range("network.mtu", self.mtu, 576, 1472)?;
        let mtu = u32::from(self.mtu);
        check.require(
            self.recv_buffer_bytes >= mtu,
            "network.recv_buffer_bytes",
            format!("at least one datagram (network.mtu = {mtu})"),
            self.recv_buffer_bytes,
        )?;
        check.require(
            self.send_buffer_bytes >= mtu,
            "network.send_buffer_bytes",
            format!("at least one datagram (network.mtu = {mtu})"),
            self.send_buffer_bytes,
        )?;
        if let Some(addr) = &self.metrics_addr {
            check.socket_addr("network.metrics_addr", addr)?;
        }
        check.in_range("network.recv_batch", self.recv_batch, 1, MAX_BATCH)?;
        check.in_range("network.send_batch", self.send_batch, 1, MAX_BATCH)?;
        Ok(())
    }
}

/// How datagrams move between the kernel and the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum IoBackend {
    /// io_uring where the kernel allows it, else `recvmmsg`/`sendmmsg`; the
    /// engine logs which one it chose.
    #[default]
    Auto,
    /// io_uring with multishot receive; fails at start if unavailable.
    IoUring,
    /// `recvmmsg`/`sendmmsg` batches; works everywhere, including
    /// containers that block io_uring.
    Mmsg,
}

/// How an incoming datagram reaches the core that owns its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Steering {
    /// A reuseport cBPF program where the kernel accepts it, else software
    /// forwarding; the engine logs which one it chose.
    #[default]
    Auto,
    /// `SO_ATTACH_REUSEPORT_CBPF`: the kernel picks the socket from the low
    /// byte of the connection id; fails at start if refused.
    Cbpf,
    /// The kernel spreads datagrams by address hash and the receiving core
    /// forwards each one to its owner over a channel (one extra hop).
    Software,
}
