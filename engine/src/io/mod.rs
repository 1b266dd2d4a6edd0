//! Low-level per-core UDP I/O: sockets, steering and two batched backends.
//!
//! # Map
//!
//! - [`socket`]: `SO_REUSEPORT` binding ([`bind_reuseport`]) and the
//!   connection-id steering program ([`attach_steering_cbpf`]).
//! - `uring` ([`UringIo`]): io_uring with a multishot `RecvMsgMulti` on a
//!   kernel-registered provided-buffer ring and `SendMsg` SQEs from
//!   preallocated slots.
//! - `mmsg` ([`MmsgIo`]): the `recvmmsg`/`sendmmsg` fallback for hosts that
//!   forbid io_uring (containers often do).
//! - `raw`: the preallocated kernel-shared memory both use.
//! - [`select_backend`] picks one ([`BackendChoice::Auto`]: io_uring, else
//!   mmsg) and logs which and why; [`Backend`] dispatches to it without `dyn`.
//!
//! # Ownership and the loop
//!
//! A backend is owned by one core's thread and is deliberately not `Send`:
//! build it *on* that thread (the io_uring ring is created single-issuer and
//! its memory is first touched there). Bind the sockets on one thread in core
//! order (see [`socket`]) and move each [`std::net::UdpSocket`] to its core.
//!
//! One loop turn is:
//!
//! ```text
//! io.recv_batch(|from, data| ...)?;  // harvest arrived datagrams (io_uring: no syscall)
//! ... game/protocol work, io.queue_send(to, bytes) (flush() first if SendError::Full) ...
//! io.flush()?;                       // ONE io_uring_enter / sendmmsg for all queued sends
//! io.wait(until_next_tick)?;         // only when idle: block until a datagram or the deadline
//! ```
//!
//! All buffers are allocated at construction; the steady state allocates
//! nothing per packet. Received payloads are lent to the callback as
//! `&mut [u8]` (the protocol may decrypt in place) and recycled as soon as it
//! returns. Datagrams larger than [`IoConfig::max_datagram`] are dropped and
//! counted in [`IoStats::truncated`], identically in both backends.

pub mod socket;

mod mmsg;
mod raw;
mod uring;

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

pub use mmsg::MmsgIo;
pub use socket::{attach_steering_cbpf, bind_reuseport, buffer_sizes};
pub use uring::UringIo;

/// Bytes of each io_uring receive buffer taken by the kernel's
/// `io_uring_recvmsg_out` header (16) and the source address (28, room for a
/// `sockaddr_in6`). The mmsg backend reserves the same so both deliver the
/// same maximum datagram for one [`IoConfig::buffer_size`].
pub const RECV_BUFFER_OVERHEAD: usize = 16 + socket::SOCKADDR_STORAGE_LEN as usize;

/// Sizes of a backend's preallocated buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoConfig {
    /// Bytes per receive buffer, [`RECV_BUFFER_OVERHEAD`] included; also the
    /// size of each send slot. Default 2048 (a 2004-byte maximum datagram,
    /// well above the protocol's 1200-byte MTU).
    pub buffer_size: usize,
    /// io_uring: buffers in the provided-buffer ring (a power of two, at most
    /// 32768). It bounds the datagrams the kernel can hand over before the
    /// loop recycles them; when it runs dry the multishot receive ends with
    /// `ENOBUFS` (datagrams wait in the socket buffer) and is re-armed.
    /// Default 1024.
    pub recv_buffers: u16,
    /// mmsg: datagrams per `recvmmsg` call. Default 64.
    pub recv_batch: usize,
    /// Most datagrams one `recv_batch` call delivers (both backends), so one
    /// turn cannot starve the tick. Default 1024.
    pub recv_budget: usize,
    /// Send slots: datagrams that can be queued before [`DatagramIo::flush`]
    /// (io_uring: also in flight until their completion). Default 64.
    pub send_batch: usize,
}

impl Default for IoConfig {
    fn default() -> Self {
        Self {
            buffer_size: 2048,
            recv_buffers: 1024,
            recv_batch: 64,
            recv_budget: 1024,
            send_batch: 64,
        }
    }
}

impl IoConfig {
    /// Largest datagram delivered whole; larger ones are counted as
    /// truncated and dropped. Also the largest datagram `queue_send` takes.
    pub fn max_datagram(&self) -> usize {
        self.buffer_size.saturating_sub(RECV_BUFFER_OVERHEAD)
    }

    fn validate(&self) -> io::Result<()> {
        let bad = |what: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, what.to_owned()));
        if self.max_datagram() == 0 || self.buffer_size > u32::MAX as usize {
            return bad("IoConfig::buffer_size must exceed RECV_BUFFER_OVERHEAD");
        }
        if !self.recv_buffers.is_power_of_two() || self.recv_buffers > 32768 {
            return bad("IoConfig::recv_buffers must be a power of two <= 32768");
        }
        if self.recv_batch == 0 || self.recv_batch > 1024 {
            return bad("IoConfig::recv_batch must be in 1..=1024");
        }
        if self.send_batch == 0 || self.send_batch > 1024 {
            return bad("IoConfig::send_batch must be in 1..=1024");
        }
        if self.recv_budget == 0 {
            return bad("IoConfig::recv_budget must be positive");
        }
        Ok(())
    }
}

/// Which backend is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// io_uring multishot receive + `SendMsg` SQEs.
    IoUring,
    /// `recvmmsg`/`sendmmsg` + `ppoll`.
    Mmsg,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::IoUring => "io_uring",
            BackendKind::Mmsg => "recvmmsg/sendmmsg",
        })
    }
}

/// What the operator asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendChoice {
    /// io_uring if the kernel and sandbox allow it, else mmsg.
    #[default]
    Auto,
    /// io_uring or an error.
    IoUring,
    /// Always mmsg.
    Mmsg,
}

/// Counters kept by a backend (per core, plain integers, never reset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Datagrams delivered to the `recv_batch` callback.
    pub datagrams_in: u64,
    /// Payload bytes delivered to the callback.
    pub bytes_in: u64,
    /// Datagrams the kernel accepted for sending.
    pub datagrams_out: u64,
    /// Payload bytes the kernel accepted for sending.
    pub bytes_out: u64,
    /// System calls made (`io_uring_enter`, `recvmmsg`, `sendmmsg`, `ppoll`).
    pub syscalls: u64,
    /// Calls to `wait` that blocked in the kernel.
    pub waits: u64,
    /// Datagrams the kernel refused to send (the error is logged at debug).
    pub send_errors: u64,
    /// `queue_send` calls rejected with [`SendError::Full`].
    pub send_queue_full: u64,
    /// Received datagrams larger than [`IoConfig::max_datagram`], dropped.
    pub truncated: u64,
    /// Receive errors (other than `ENOBUFS` / `EAGAIN`) and unparsable
    /// completions.
    pub recv_errors: u64,
    /// io_uring: the provided-buffer ring ran dry (`ENOBUFS` ended the
    /// multishot receive).
    pub recv_buffer_exhausted: u64,
    /// io_uring: times the multishot receive was re-armed after it ended.
    pub multishot_rearms: u64,
}

/// Why [`DatagramIo::queue_send`] refused a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Every send slot is queued or in flight: call `flush` and retry.
    Full,
    /// The datagram is longer than [`IoConfig::max_datagram`].
    TooLarge,
    /// The destination's address family differs from the socket's.
    AddressFamily,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Full => "send queue full; flush first",
            SendError::TooLarge => "datagram larger than the send slot",
            SendError::AddressFamily => "destination address family differs from the socket's",
        })
    }
}

impl std::error::Error for SendError {}

/// The interface the engine loop drives; identical for both backends.
pub trait DatagramIo {
    /// Delivers the datagrams that have already arrived, without blocking,
    /// calling `f(source, payload)` once per datagram (at most
    /// [`IoConfig::recv_budget`] per call). The payload buffer is recycled
    /// when `f` returns. Returns how many datagrams were delivered.
    ///
    /// io_uring makes no system call here: completions that arrived since
    /// the last `flush`/`wait` are read from the shared completion ring.
    fn recv_batch<F: FnMut(SocketAddr, &mut [u8])>(&mut self, f: F) -> io::Result<usize>;

    /// Copies `data` into a free send slot addressed to `to`; nothing is sent
    /// until [`flush`](Self::flush).
    fn queue_send(&mut self, to: SocketAddr, data: &[u8]) -> Result<(), SendError>;

    /// Submits every queued datagram with one system call (`io_uring_enter`
    /// or `sendmmsg`; a `sendmmsg` that stops at a failing datagram is
    /// resumed after it). Returns how many datagrams were submitted. Send
    /// failures are counted in [`IoStats::send_errors`], not returned:
    /// UDP gives no delivery guarantee either way.
    fn flush(&mut self) -> io::Result<usize>;

    /// Blocks until a datagram may be ready or `timeout` passes (may return
    /// early). Also submits anything queued. Interrupted waits return `Ok`.
    fn wait(&mut self, timeout: Duration) -> io::Result<()>;

    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// The counters.
    fn stats(&self) -> &IoStats;

    /// The configuration the buffers were sized with.
    fn config(&self) -> &IoConfig;

    /// The socket this backend drives.
    fn socket(&self) -> &UdpSocket;
}

/// Either backend, dispatched with a `match` (no `dyn` on the hot path).
///
/// Owned by one thread (not `Send`):
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<tos_engine::io::Backend>();
/// ```
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per core thread, built once and never moved on the hot path; boxing would add an indirection to every call"
)]
pub enum Backend {
    /// See [`UringIo`].
    Uring(UringIo),
    /// See [`MmsgIo`].
    Mmsg(MmsgIo),
}

macro_rules! dispatch {
    ($self:ident, $io:ident => $e:expr) => {
        match $self {
            Backend::Uring($io) => $e,
            Backend::Mmsg($io) => $e,
        }
    };
}

impl DatagramIo for Backend {
    #[inline]
    fn recv_batch<F: FnMut(SocketAddr, &mut [u8])>(&mut self, f: F) -> io::Result<usize> {
        dispatch!(self, io => io.recv_batch(f))
    }
    #[inline]
    fn queue_send(&mut self, to: SocketAddr, data: &[u8]) -> Result<(), SendError> {
        dispatch!(self, io => io.queue_send(to, data))
    }
    #[inline]
    fn flush(&mut self) -> io::Result<usize> {
        dispatch!(self, io => io.flush())
    }
    #[inline]
    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        dispatch!(self, io => io.wait(timeout))
    }
    fn kind(&self) -> BackendKind {
        dispatch!(self, io => io.kind())
    }
    fn stats(&self) -> &IoStats {
        dispatch!(self, io => io.stats())
    }
    fn config(&self) -> &IoConfig {
        dispatch!(self, io => io.config())
    }
    fn socket(&self) -> &UdpSocket {
        dispatch!(self, io => io.socket())
    }
}

/// Builds the backend `choice` asks for around `socket`, on the calling
/// (owning) thread.
///
/// [`BackendChoice::Auto`] tries io_uring and falls back to mmsg when the
/// ring cannot be built (seccomp `EPERM`, `ENOSYS`, a kernel without
/// provided-buffer rings or multishot `recvmsg`, a locked-memory limit),
/// logging the choice and the reason. [`BackendChoice::IoUring`] returns the
/// io_uring error instead of falling back.
pub fn select_backend(
    choice: BackendChoice,
    socket: UdpSocket,
    config: &IoConfig,
) -> io::Result<Backend> {
    match choice {
        BackendChoice::Mmsg => {
            tracing::info!("I/O backend: recvmmsg/sendmmsg (configured)");
            MmsgIo::new(socket, config).map(Backend::Mmsg)
        }
        BackendChoice::IoUring => {
            let io = UringIo::new(socket, config).map_err(|(e, _sock)| e)?;
            tracing::info!("I/O backend: io_uring (configured)");
            Ok(Backend::Uring(io))
        }
        BackendChoice::Auto => match UringIo::new(socket, config) {
            Ok(io) => {
                tracing::info!("I/O backend: io_uring (auto)");
                Ok(Backend::Uring(io))
            }
            Err((e, socket)) => {
                tracing::warn!(
                    error = %e,
                    "io_uring unavailable, falling back to recvmmsg/sendmmsg"
                );
                MmsgIo::new(socket, config).map(Backend::Mmsg)
            }
        },
    }
}
