//! The io_uring backend: one multishot receive on a provided-buffer ring, and
//! `SendMsg` SQEs from preallocated slots, all submitted with one
//! `io_uring_enter` per loop turn.
//!
//! # Receive
//!
//! At construction we register a *provided-buffer ring* (`buf_ring`, group
//! 0) of [`IoConfig::recv_buffers`] buffers of [`IoConfig::buffer_size`]
//! bytes and arm one `RecvMsgMulti`. For every datagram the kernel picks a
//! buffer from the ring, writes an `io_uring_recvmsg_out` header, the source
//! address and the payload into it, and posts a CQE naming the buffer id
//! (`IORING_CQE_F_BUFFER`) with `IORING_CQE_F_MORE` set while the multishot
//! stays armed. `recv_batch` reads those CQEs straight from the shared
//! completion ring (no system call), parses them with
//! [`io_uring::types::RecvMsgOut`], lends the payload to the callback and puts
//! the buffer back on the ring; the new ring tail is published once per call.
//!
//! When the ring runs dry the multishot completes with `-ENOBUFS` and without
//! `IORING_CQE_F_MORE`: it has ended. Datagrams that arrive meanwhile wait in
//! the socket's receive buffer (they are not lost unless that overflows).
//! Any CQE without `IORING_CQE_F_MORE` ends the multishot, so once every
//! buffer is back the backend re-arms it; the new SQE goes to the kernel with
//! the next `flush`/`wait`, and it immediately drains what queued up.
//!
//! # Send
//!
//! Each of the [`IoConfig::send_batch`] slots holds a `msghdr`, an `iovec`, a
//! destination address and a payload buffer, wired together at construction.
//! `queue_send` copies into a free slot and pushes a `SendMsg` SQE (shared
//! memory, no system call); `flush` submits them all with one
//! `io_uring_enter`. A slot returns to the free list when its completion is
//! reaped. UDP sends usually complete inline during that `io_uring_enter`, so
//! the slots are free again right after `flush`.
//!
//! # Completions and system calls
//!
//! The ring is created with `COOP_TASKRUN` (no inter-processor interrupt per
//! completion) and `TASKRUN_FLAG`: completions are posted when the thread
//! next enters the kernel, i.e. at `flush` or `wait`, and `recv_batch` sees
//! them after that. `flush` skips the system call when nothing is queued and
//! no completion work is pending. Receive completions reaped during `flush`
//! are kept (buffer id and length, in a preallocated queue) for the next
//! `recv_batch`, so ordering is preserved.
//!
//! # Teardown
//!
//! Drop cancels the multishot receive and any sends still in flight and waits
//! (up to a second) for the kernel to confirm, so it never frees memory the
//! kernel may still write. If confirmation does not come, the buffers are
//! leaked rather than risk a use-after-free.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

use super::raw::{RawArray, ZeroValid};
use super::socket::{RawSockAddr, SOCKADDR_STORAGE_LEN, sockaddr_from_bytes};
use super::{BackendKind, DatagramIo, IoConfig, IoStats, SendError};

/// `user_data` of the multishot receive.
const RECV_UD: u64 = u64::MAX;
/// `user_data` of the teardown cancellation.
const CANCEL_UD: u64 = u64::MAX - 1;
/// Provided-buffer group id.
const BGID: u16 = 0;

/// Mirror of the kernel's `struct io_uring_buf` (one buf_ring entry). The
/// ring's tail is the `resv` field of entry 0.
#[repr(C)]
struct RingBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(size_of::<RingBuf>() == size_of::<io_uring::types::BufRingEntry>());
const _: () = assert!(size_of::<RingBuf>() == 16);

// SAFETY: plain integers.
unsafe impl ZeroValid for RingBuf {}

/// One preallocated send: header, iovec and destination, wired to each
/// other and to the slot's payload buffer at construction.
#[repr(C)]
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_in6,
}

// SAFETY: C structs of integers and raw pointers; all-zero is valid.
unsafe impl ZeroValid for SendSlot {}

/// A receive completion kept for the next `recv_batch`.
#[derive(Clone, Copy, Default)]
struct PendingRecv {
    bid: u16,
    len: u32,
}

struct RecvState {
    /// The `msghdr` template of the multishot receive (name length only).
    hdr: RawArray<libc::msghdr>,
    /// The provided-buffer ring shared with the kernel (page aligned).
    ring: RawArray<RingBuf>,
    /// `recv_buffers * buffer_size` bytes of buffers.
    bufs: RawArray<u8>,
    buf_size: usize,
    mask: u16,
    /// Our copy of the ring tail (entries we have provided so far).
    tail: u16,
    /// Completed receives not yet delivered (FIFO), at most one per buffer.
    pending: Box<[PendingRecv]>,
    pend_head: usize,
    pend_len: usize,
    /// Whether a multishot receive is live in the kernel (or queued in the SQ).
    armed: bool,
}

impl RecvState {
    /// Puts buffer `bid` back on the ring (published by [`Self::publish`]).
    fn recycle(&mut self, bid: u16) {
        let entry = self.ring.ptr(usize::from(self.tail & self.mask));
        let addr = self.bufs.ptr(usize::from(bid) * self.buf_size) as u64;
        // SAFETY: `entry` is inside the ring. The kernel has consumed this
        // slot (we own exactly as many buffers as the ring has entries, so
        // the slot at our tail is always behind the kernel's head) and reads
        // it only after we publish a tail beyond it. We write only the
        // addr/len/bid fields, never `resv` (entry 0's `resv` is the tail).
        unsafe {
            (&raw mut (*entry).addr).write(addr);
            (&raw mut (*entry).len).write(self.buf_size as u32);
            (&raw mut (*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the ring tail to the kernel (release store).
    fn publish(&self) {
        // SAFETY: the tail is the 2-byte-aligned `resv` field of entry 0,
        // which the kernel reads concurrently; we access it only atomically.
        let tail = unsafe { AtomicU16::from_ptr(&raw mut (*self.ring.base()).resv) };
        tail.store(self.tail, Ordering::Release);
    }

    fn push_pending(&mut self, p: PendingRecv) {
        debug_assert!(self.pend_len < self.pending.len());
        let i = (self.pend_head + self.pend_len) % self.pending.len();
        self.pending[i] = p;
        self.pend_len += 1;
    }

    fn pop_pending(&mut self) -> Option<PendingRecv> {
        if self.pend_len == 0 {
            return None;
        }
        let p = self.pending[self.pend_head];
        self.pend_head = (self.pend_head + 1) % self.pending.len();
        self.pend_len -= 1;
        Some(p)
    }
}

struct SendState {
    slots: RawArray<SendSlot>,
    bufs: RawArray<u8>,
    buf_size: usize,
    /// Free slot indices (capacity `send_batch`, never grows).
    free: Vec<u32>,
    /// Pushed to the SQ since the last submission.
    queued: usize,
    /// Submitted or queued, completion not yet reaped.
    in_flight: usize,
}

/// Everything that talks to the kernel. Its `Drop` cancels and drains
/// in-flight operations before the memory is freed (fields drop after the
/// body: `ring` first, closing the ring, then the buffers).
struct Inner {
    ring: IoUring,
    fd: RawFd,
    is_v6: bool,
    config: IoConfig,
    buf_ring_registered: bool,
    /// Errno of the last failed receive completion (0: none yet).
    last_recv_errno: i32,
    recv: RecvState,
    send: SendState,
    stats: IoStats,
}

/// io_uring backend. See the module docs.
///
/// Not `Send`: build it on the core's thread that will drive it.
pub struct UringIo {
    // Declared first: dropped (cancelled and drained) while `socket` is open.
    inner: Inner,
    socket: UdpSocket,
}

impl std::fmt::Debug for UringIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringIo")
            .field("socket", &self.socket)
            .field("config", &self.inner.config)
            .field("armed", &self.inner.recv.armed)
            .field("in_flight", &self.inner.send.in_flight)
            .field("stats", &self.inner.stats)
            .finish_non_exhaustive()
    }
}

fn build_ring(config: &IoConfig) -> io::Result<IoUring> {
    let sq = (config.send_batch + 8).next_power_of_two() as u32;
    let cq = (usize::from(config.recv_buffers) + config.send_batch + 16).next_power_of_two() as u32;
    let tuned = IoUring::builder()
        .setup_cqsize(cq)
        .setup_single_issuer()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_submit_all()
        .build(sq);
    match tuned {
        Ok(ring) => Ok(ring),
        // Kernels before 6.0 reject the newer setup flags: try plain.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::debug!("io_uring: tuned setup flags rejected, using defaults");
            IoUring::builder().setup_cqsize(cq).build(sq)
        }
        Err(e) => Err(e),
    }
}

fn is_errno(e: &io::Error, code: i32) -> bool {
    e.raw_os_error() == Some(code)
}

impl UringIo {
    /// Builds the ring around `socket` on the calling thread: registers the
    /// provided-buffer ring, wires the send slots and arms the multishot
    /// receive.
    ///
    /// # Errors
    ///
    /// On any failure (io_uring forbidden by seccomp, `EPERM`/`ENOSYS`; a
    /// kernel without `EXT_ARG`, provided-buffer rings or multishot
    /// `recvmsg`; invalid `config`) the error comes back *with the socket*,
    /// so the caller can fall back to [`super::MmsgIo`].
    pub fn new(socket: UdpSocket, config: &IoConfig) -> Result<Self, (io::Error, UdpSocket)> {
        match Inner::new(&socket, config) {
            Ok(inner) => Ok(Self { inner, socket }),
            Err(e) => Err((e, socket)),
        }
    }

    /// Sends queued (pushed to the submission queue) and not yet flushed.
    pub fn queued(&self) -> usize {
        self.inner.send.queued
    }

    /// Sends submitted whose completion has not been reaped yet.
    pub fn in_flight(&self) -> usize {
        self.inner.send.in_flight
    }
}

impl Inner {
    fn new(socket: &UdpSocket, config: &IoConfig) -> io::Result<Self> {
        config.validate()?;
        let is_v6 = socket.local_addr()?.is_ipv6();
        let ring = build_ring(config)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks IORING_FEAT_EXT_ARG (kernel < 5.11)",
            ));
        }

        let n = usize::from(config.recv_buffers);
        let buf_size = config.buffer_size;
        let recv = RecvState {
            hdr: RawArray::zeroed(1, 64),
            ring: RawArray::zeroed(n, 4096),
            bufs: RawArray::zeroed(n * buf_size, 4096),
            buf_size,
            mask: config.recv_buffers - 1,
            tail: 0,
            pending: vec![PendingRecv::default(); n].into_boxed_slice(),
            pend_head: 0,
            pend_len: 0,
            armed: false,
        };
        // SAFETY: our own zeroed header, not yet shared with the kernel.
        unsafe { (*recv.hdr.ptr(0)).msg_namelen = SOCKADDR_STORAGE_LEN };

        let slots = config.send_batch;
        let max = config.max_datagram();
        let send = SendState {
            slots: RawArray::zeroed(slots, 64),
            bufs: RawArray::zeroed(slots * max, 4096),
            buf_size: max,
            free: (0..slots as u32).rev().collect(),
            queued: 0,
            in_flight: 0,
        };
        for i in 0..slots {
            let s = send.slots.ptr(i);
            // SAFETY: `i < slots`; the slot is ours, zeroed and unshared; the
            // pointers stored point into the same live allocations.
            unsafe {
                (*s).iov.iov_base = send.bufs.ptr(i * max).cast();
                (*s).hdr.msg_name = (&raw mut (*s).addr).cast();
                (*s).hdr.msg_iov = &raw mut (*s).iov;
                (*s).hdr.msg_iovlen = 1;
            }
        }

        let mut inner = Self {
            ring,
            fd: socket.as_raw_fd(),
            is_v6,
            config: *config,
            buf_ring_registered: false,
            last_recv_errno: 0,
            recv,
            send,
            stats: IoStats::default(),
        };

        for bid in 0..config.recv_buffers {
            inner.recv.recycle(bid);
        }
        inner.recv.publish();
        // SAFETY: the ring memory is page aligned, holds `recv_buffers`
        // entries and lives (in `inner.recv`) until `Drop` has cancelled
        // every receive and unregistered the group.
        unsafe {
            inner.ring.submitter().register_buf_ring_with_flags(
                inner.recv.ring.base() as u64,
                config.recv_buffers,
                BGID,
                0,
            )?;
        }
        inner.buf_ring_registered = true;

        inner.arm_recv();
        inner.ring.submit()?;
        inner.stats.syscalls += 1;
        // A kernel without multishot recvmsg rejects the SQE at once.
        inner.reap();
        if !inner.recv.armed {
            let errno = inner.last_recv_errno;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "io_uring multishot RecvMsg was rejected ({}; kernel < 6.0?)",
                    io::Error::from_raw_os_error(errno)
                ),
            ));
        }
        inner.stats.multishot_rearms = 0;
        Ok(inner)
    }

    /// Pushes an SQE.
    ///
    /// # Safety
    ///
    /// Every buffer the entry references must stay valid until its
    /// completion is reaped.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> bool {
        // SAFETY: forwarded to the caller.
        unsafe { self.ring.submission().push(entry).is_ok() }
    }

    /// Queues the multishot receive.
    fn arm_recv(&mut self) {
        let entry = opcode::RecvMsgMulti::new(Fd(self.fd), self.recv.hdr.ptr(0), BGID)
            .build()
            .user_data(RECV_UD);
        // SAFETY: the msghdr and the registered buffer group live in `self`
        // until `Drop` has cancelled the receive and seen its last CQE.
        if unsafe { self.push(&entry) } {
            self.recv.armed = true;
            self.stats.multishot_rearms += 1;
        }
    }

    /// Re-arms the multishot once every buffer is back on the ring.
    fn maybe_rearm(&mut self) {
        if !self.recv.armed && self.recv.pend_len == 0 {
            self.arm_recv();
        }
    }

    /// Drains the completion queue: frees send slots, queues receive
    /// completions for delivery, notes the end of the multishot.
    fn reap(&mut self) {
        let recv = &mut self.recv;
        let send = &mut self.send;
        let stats = &mut self.stats;
        let last_errno = &mut self.last_recv_errno;
        for cqe in self.ring.completion() {
            let (ud, res, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
            if ud == RECV_UD {
                if res < 0 {
                    *last_errno = -res;
                }
                match cqueue::buffer_select(flags) {
                    Some(bid) if res >= 0 && usize::from(bid) < recv.pending.len() => {
                        recv.push_pending(PendingRecv {
                            bid,
                            len: res as u32,
                        });
                    }
                    Some(bid) => {
                        stats.recv_errors += 1;
                        if usize::from(bid) < recv.pending.len() {
                            recv.recycle(bid);
                        }
                    }
                    None if res == -libc::ENOBUFS => stats.recv_buffer_exhausted += 1,
                    None if res == -libc::ECANCELED => {}
                    None => {
                        stats.recv_errors += 1;
                        tracing::debug!(errno = -res, "io_uring multishot recvmsg error");
                    }
                }
                if !cqueue::more(flags) {
                    recv.armed = false;
                }
            } else if ud == CANCEL_UD {
                // Teardown cancellation finished.
            } else {
                let slot = ud as u32;
                send.free.push(slot);
                send.in_flight -= 1;
                if res >= 0 {
                    stats.datagrams_out += 1;
                    stats.bytes_out += res as u64;
                } else {
                    stats.send_errors += 1;
                    tracing::debug!(errno = -res, "io_uring sendmsg: datagram dropped");
                }
            }
        }
        // Buffers recycled for failed receives.
        recv.publish();
    }

    /// One `io_uring_enter` that submits whatever is queued and, when `wait`
    /// is given, waits up to it for one completion.
    fn enter(&mut self, wait: Option<Duration>) -> io::Result<()> {
        let res = match wait {
            None => self.ring.submit(),
            Some(t) => {
                let ts = Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        self.stats.syscalls += 1;
        match res {
            Ok(_) => {}
            Err(e) if is_errno(&e, libc::ETIME) || is_errno(&e, libc::EINTR) => {}
            // The completion ring is full (no NODROP): reap and go on; the
            // SQEs stay queued for the next call.
            Err(e) if is_errno(&e, libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        if self.ring.submission().is_empty() {
            self.send.queued = 0;
        }
        self.reap();
        Ok(())
    }

    fn cq_ready(&mut self) -> bool {
        self.recv.pend_len > 0 || !self.ring.completion().is_empty()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.recv.armed || self.send.in_flight > 0 {
            let entry = opcode::AsyncCancel2::new(CancelBuilder::any())
                .build()
                .user_data(CANCEL_UD);
            // SAFETY: a cancellation references no memory of ours.
            unsafe { self.push(&entry) };
            let deadline = Instant::now() + Duration::from_secs(1);
            while self.recv.armed || self.send.in_flight > 0 {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                if let Err(e) = self.enter(Some(deadline - now)) {
                    tracing::warn!(error = %e, "io_uring teardown: wait failed");
                    break;
                }
            }
        }
        if self.recv.armed || self.send.in_flight > 0 {
            tracing::warn!(
                armed = self.recv.armed,
                in_flight = self.send.in_flight,
                "io_uring teardown: kernel did not confirm cancellation; leaking buffers"
            );
            self.recv.hdr.leak();
            self.recv.ring.leak();
            self.recv.bufs.leak();
            self.send.slots.leak();
            self.send.bufs.leak();
            return;
        }
        if self.buf_ring_registered {
            if let Err(e) = self.ring.submitter().unregister_buf_ring(BGID) {
                tracing::debug!(error = %e, "io_uring: unregister_buf_ring failed");
                // Closing the ring unregisters it; the kernel only reads the
                // ring memory, and nothing is in flight.
            }
        }
    }
}

impl DatagramIo for UringIo {
    fn recv_batch<F: FnMut(SocketAddr, &mut [u8])>(&mut self, mut f: F) -> io::Result<usize> {
        let inner = &mut self.inner;
        inner.reap();
        let mut delivered = 0;
        let mut processed = 0;
        while processed < inner.config.recv_budget {
            let Some(p) = inner.recv.pop_pending() else {
                break;
            };
            processed += 1;
            let buf_size = inner.recv.buf_size;
            let base = inner.recv.bufs.ptr(usize::from(p.bid) * buf_size);
            let len = (p.len as usize).min(buf_size);
            // SAFETY: buffer `bid` was handed back by the kernel in this
            // completion and is not on the ring until we recycle it below;
            // it is `buf_size` initialised bytes (zeroed, then written).
            let buf = unsafe { std::slice::from_raw_parts(base, len) };
            // SAFETY: the header is ours; the kernel only reads it.
            let hdr = unsafe { &*inner.recv.hdr.ptr(0) };
            let parsed = match RecvMsgOut::parse(buf, hdr) {
                Ok(out) if out.is_payload_truncated() => {
                    inner.stats.truncated += 1;
                    None
                }
                Ok(out) => match sockaddr_from_bytes(out.name_data()) {
                    Some(from) => {
                        let payload = out.payload_data();
                        Some((
                            from,
                            payload.as_ptr() as usize - base as usize,
                            payload.len(),
                        ))
                    }
                    None => {
                        inner.stats.recv_errors += 1;
                        None
                    }
                },
                Err(()) => {
                    inner.stats.recv_errors += 1;
                    None
                }
            };
            if let Some((from, off, plen)) = parsed {
                // SAFETY: `off + plen <= len` (a sub-slice of `buf`, whose
                // borrow has ended); the buffer is exclusively ours until
                // recycled.
                let data = unsafe { std::slice::from_raw_parts_mut(base.add(off), plen) };
                inner.stats.datagrams_in += 1;
                inner.stats.bytes_in += plen as u64;
                delivered += 1;
                f(from, data);
            }
            inner.recv.recycle(p.bid);
        }
        inner.recv.publish();
        inner.maybe_rearm();
        Ok(delivered)
    }

    fn queue_send(&mut self, to: SocketAddr, data: &[u8]) -> Result<(), SendError> {
        let inner = &mut self.inner;
        if to.is_ipv6() != inner.is_v6 {
            return Err(SendError::AddressFamily);
        }
        if data.len() > inner.send.buf_size {
            return Err(SendError::TooLarge);
        }
        let slot = match inner.send.free.pop() {
            Some(s) => s,
            None => {
                // Completions may be waiting in the ring (no syscall).
                inner.reap();
                match inner.send.free.pop() {
                    Some(s) => s,
                    None => {
                        inner.stats.send_queue_full += 1;
                        return Err(SendError::Full);
                    }
                }
            }
        };
        let i = slot as usize;
        let s = inner.send.slots.ptr(i);
        let (addr, addr_len) = RawSockAddr::new(&to);
        // SAFETY: slot `i` is free: not referenced by any SQE in flight, so
        // the kernel does not touch it; its buffer holds `buf_size >=
        // data.len()` bytes; `RawSockAddr` fits in the `sockaddr_in6` slot.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                inner.send.bufs.ptr(i * inner.send.buf_size),
                data.len(),
            );
            (&raw mut (*s).addr).cast::<RawSockAddr>().write(addr);
            (*s).iov.iov_len = data.len();
            (*s).hdr.msg_namelen = addr_len;
        }
        // SAFETY: reading a pointer to our own slot.
        let hdr = unsafe { &raw const (*s).hdr };
        let entry = opcode::SendMsg::new(Fd(inner.fd), hdr)
            .build()
            .user_data(u64::from(slot));
        // SAFETY: the slot (header, iovec, address, buffer) stays untouched
        // until its completion is reaped and it returns to the free list.
        if !unsafe { inner.push(&entry) } {
            inner.send.free.push(slot);
            inner.stats.send_queue_full += 1;
            return Err(SendError::Full);
        }
        inner.send.queued += 1;
        inner.send.in_flight += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<usize> {
        let inner = &mut self.inner;
        inner.maybe_rearm();
        let queued = inner.send.queued;
        if inner.ring.submission().is_empty() && !inner.ring.submission().taskrun() {
            return Ok(0);
        }
        inner.enter(None)?;
        Ok(queued - inner.send.queued)
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let inner = &mut self.inner;
        inner.maybe_rearm();
        if inner.cq_ready() {
            if !inner.ring.submission().is_empty() {
                inner.enter(None)?;
            }
            return Ok(());
        }
        inner.stats.waits += 1;
        inner.enter(Some(timeout))
    }

    fn kind(&self) -> BackendKind {
        BackendKind::IoUring
    }

    fn stats(&self) -> &IoStats {
        &self.inner.stats
    }

    fn config(&self) -> &IoConfig {
        &self.inner.config
    }

    fn socket(&self) -> &UdpSocket {
        &self.socket
    }
}
