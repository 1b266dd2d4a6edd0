//! The `recvmmsg`/`sendmmsg` backend: the fallback where io_uring is
//! unavailable, and the raw floor that benchmarks compare against.
//!
//! Everything is preallocated at construction: for each direction an array of
//! `mmsghdr`s, their `iovec`s, address slots and one contiguous payload
//! region, wired together once. The kernel touches this memory only during
//! our own system calls, so there is nothing in flight between calls.
//!
//! - `recv_batch`: `recvmmsg(MSG_DONTWAIT)` of up to `recv_batch` datagrams,
//!   repeated while batches come back full, up to `recv_budget`.
//! - `flush`: one `sendmmsg` for everything queued; if the kernel stops at a
//!   failing datagram, that one is counted and skipped and the rest resumed.
//! - `wait`: `ppoll` for `POLLIN` with a nanosecond timeout.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use super::raw::RawArray;
use super::socket::{RawSockAddr, SOCKADDR_STORAGE_LEN, sockaddr_from_bytes};
use super::{BackendKind, DatagramIo, IoConfig, IoStats, SendError};

/// One direction's preallocated message array.
struct MsgArray {
    hdrs: RawArray<libc::mmsghdr>,
    iovs: RawArray<libc::iovec>,
    names: RawArray<libc::sockaddr_in6>,
    bufs: RawArray<u8>,
    buf_size: usize,
}

impl MsgArray {
    fn new(count: usize, buf_size: usize) -> Self {
        let arr = Self {
            hdrs: RawArray::zeroed(count, 64),
            iovs: RawArray::zeroed(count, 64),
            names: RawArray::zeroed(count, 64),
            bufs: RawArray::zeroed(count * buf_size, 4096),
            buf_size,
        };
        for i in 0..count {
            let iov = arr.iovs.ptr(i);
            let hdr = arr.hdrs.ptr(i);
            // SAFETY: `i < count` for all three arrays, the memory is ours
            // and zero-initialised, and no reference to it exists.
            unsafe {
                (*iov).iov_base = arr.bufs.ptr(i * buf_size).cast();
                (*iov).iov_len = buf_size;
                (*hdr).msg_hdr.msg_name = arr.names.ptr(i).cast();
                (*hdr).msg_hdr.msg_namelen = SOCKADDR_STORAGE_LEN;
                (*hdr).msg_hdr.msg_iov = iov;
                (*hdr).msg_hdr.msg_iovlen = 1;
            }
        }
        arr
    }
}

/// `recvmmsg`/`sendmmsg` backend. See the module docs.
///
/// Not `Send`: owned by one core's thread.
pub struct MmsgIo {
    socket: UdpSocket,
    fd: RawFd,
    is_v6: bool,
    config: IoConfig,
    recv: MsgArray,
    send: MsgArray,
    /// Datagrams queued in `send[..queued]`.
    queued: usize,
    stats: IoStats,
}

impl std::fmt::Debug for MmsgIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmsgIo")
            .field("socket", &self.socket)
            .field("config", &self.config)
            .field("queued", &self.queued)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn errno() -> io::Error {
    io::Error::last_os_error()
}

impl MmsgIo {
    /// Wraps `socket` (bound, ideally with [`super::bind_reuseport`]) and
    /// preallocates `config.recv_batch` receive and `config.send_batch` send
    /// slots of `config.max_datagram()` bytes each.
    pub fn new(socket: UdpSocket, config: &IoConfig) -> io::Result<Self> {
        config.validate()?;
        let is_v6 = socket.local_addr()?.is_ipv6();
        let max = config.max_datagram();
        Ok(Self {
            fd: socket.as_raw_fd(),
            socket,
            is_v6,
            config: *config,
            recv: MsgArray::new(config.recv_batch, max),
            send: MsgArray::new(config.send_batch, max),
            queued: 0,
            stats: IoStats::default(),
        })
    }

    /// Datagrams queued and not yet flushed.
    pub fn queued(&self) -> usize {
        self.queued
    }
}

impl DatagramIo for MmsgIo {
    fn recv_batch<F: FnMut(SocketAddr, &mut [u8])>(&mut self, mut f: F) -> io::Result<usize> {
        let mut delivered = 0;
        let mut budget = self.config.recv_budget;
        while budget > 0 {
            let want = budget.min(self.recv.hdrs.len());
            for i in 0..want {
                let hdr = self.recv.hdrs.ptr(i);
                // SAFETY: `i < len`; the header is ours between syscalls and
                // no reference to it is live.
                unsafe {
                    (*hdr).msg_hdr.msg_namelen = SOCKADDR_STORAGE_LEN;
                    (*hdr).msg_hdr.msg_flags = 0;
                    (*hdr).msg_len = 0;
                }
            }
            // SAFETY: `hdrs` holds `want` initialised headers whose name,
            // iovec and buffer pointers all point into live arrays of ours
            // of the advertised sizes; the kernel writes them only during
            // the call.
            let n = unsafe {
                libc::recvmmsg(
                    self.fd,
                    self.recv.hdrs.base(),
                    want as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            self.stats.syscalls += 1;
            if n < 0 {
                let err = errno();
                match err.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    _ if err.raw_os_error() == Some(libc::ECONNREFUSED) => {
                        // A queued ICMP error (only with IP_RECVERR or a
                        // connected socket); nothing to deliver.
                        self.stats.recv_errors += 1;
                        break;
                    }
                    _ => return Err(err),
                }
            }
            let n = n as usize;
            for i in 0..n {
                let hdr = self.recv.hdrs.ptr(i);
                // SAFETY: the kernel filled headers `..n` during the call,
                // which has returned; we only read plain fields.
                let (len, flags, namelen) = unsafe {
                    (
                        (*hdr).msg_len as usize,
                        (*hdr).msg_hdr.msg_flags,
                        (*hdr).msg_hdr.msg_namelen as usize,
                    )
                };
                if flags & libc::MSG_TRUNC != 0 {
                    self.stats.truncated += 1;
                    continue;
                }
                let namelen = namelen.min(SOCKADDR_STORAGE_LEN as usize);
                // SAFETY: the name slot is `SOCKADDR_STORAGE_LEN` bytes of
                // zero-initialised memory of ours, no longer used by the
                // kernel, and `namelen` is clamped to it.
                let name = unsafe {
                    std::slice::from_raw_parts(self.recv.names.ptr(i).cast::<u8>(), namelen)
                };
                let Some(from) = sockaddr_from_bytes(name) else {
                    self.stats.recv_errors += 1;
                    continue;
                };
                let len = len.min(self.recv.buf_size);
                // SAFETY: buffer `i` is `buf_size` bytes of ours, initialised
                // (zeroed, then partly written by the kernel); the kernel is
                // done with it and this is the only reference until `f`
                // returns.
                let data = unsafe {
                    std::slice::from_raw_parts_mut(self.recv.bufs.ptr(i * self.recv.buf_size), len)
                };
                self.stats.datagrams_in += 1;
                self.stats.bytes_in += len as u64;
                delivered += 1;
                f(from, data);
            }
            budget -= n.min(budget);
            if n < want {
                break;
            }
        }
        Ok(delivered)
    }

    fn queue_send(&mut self, to: SocketAddr, data: &[u8]) -> Result<(), SendError> {
        if to.is_ipv6() != self.is_v6 {
            return Err(SendError::AddressFamily);
        }
        if data.len() > self.send.buf_size {
            return Err(SendError::TooLarge);
        }
        if self.queued == self.send.hdrs.len() {
            self.stats.send_queue_full += 1;
            return Err(SendError::Full);
        }
        let i = self.queued;
        let (addr, addr_len) = RawSockAddr::new(&to);
        // SAFETY: slot `i` is free (not queued) and the kernel only touches
        // it during our own `sendmmsg`; the buffer is `buf_size >=
        // data.len()` bytes; `RawSockAddr` is at most as large as the
        // `sockaddr_in6` name slot.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.send.bufs.ptr(i * self.send.buf_size),
                data.len(),
            );
            self.send.names.ptr(i).cast::<RawSockAddr>().write(addr);
            (*self.send.iovs.ptr(i)).iov_len = data.len();
            let hdr = self.send.hdrs.ptr(i);
            (*hdr).msg_hdr.msg_namelen = addr_len;
            (*hdr).msg_len = 0;
        }
        self.queued += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<usize> {
        let total = self.queued;
        let mut off = 0;
        while off < total {
            // SAFETY: headers `off..total` are initialised and point into
            // our live arrays; the kernel reads them only during the call.
            let n = unsafe {
                libc::sendmmsg(
                    self.fd,
                    self.send.hdrs.ptr(off),
                    (total - off) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            self.stats.syscalls += 1;
            if n < 0 {
                let err = errno();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The datagram at `off` failed: count it and go on with the
                // next one (ICMP errors, an unroutable destination, a full
                // socket buffer: UDP drops either way).
                tracing::debug!(error = %err, "sendmmsg: datagram dropped");
                self.stats.send_errors += 1;
                off += 1;
                continue;
            }
            for i in off..off + n as usize {
                // SAFETY: the kernel wrote `msg_len` of these headers during
                // the call, which has returned.
                let len = unsafe { (*self.send.hdrs.ptr(i)).msg_len };
                self.stats.bytes_out += u64::from(len);
            }
            self.stats.datagrams_out += n as u64;
            off += n as usize;
        }
        self.queued = 0;
        Ok(total)
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        if self.queued > 0 {
            self.flush()?;
        }
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
        };
        // SAFETY: `pfd` and `ts` are live locals; a null sigmask keeps the
        // current one.
        let r = unsafe { libc::ppoll(&raw mut pfd, 1, &raw const ts, std::ptr::null()) };
        self.stats.syscalls += 1;
        self.stats.waits += 1;
        if r < 0 {
            let err = errno();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Ok(())
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Mmsg
    }

    fn stats(&self) -> &IoStats {
        &self.stats
    }

    fn config(&self) -> &IoConfig {
        &self.config
    }

    fn socket(&self) -> &UdpSocket {
        &self.socket
    }
}
