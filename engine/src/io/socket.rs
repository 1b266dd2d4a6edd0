//! Per-core UDP sockets: `SO_REUSEPORT` binding and cBPF steering.
//!
//! Every core owns one UDP socket bound to the same address with
//! `SO_REUSEPORT`; together they form the kernel's *reuseport group* for that
//! address. [`attach_steering_cbpf`] installs a classic-BPF program on the
//! group that picks the receiving socket from the first payload byte (the
//! low byte of the little-endian connection id), so every datagram of a
//! connection lands on the core that owns it.
//!
//! # Bind order is the steering order
//!
//! The kernel numbers the sockets of a reuseport group in the order they were
//! bound: the first bound socket is index 0, the next index 1, and so on. The
//! steering program returns an *index*, so the engine must bind core 0's
//! socket first, then core 1's, ..., and attach the program after the last
//! bind (any member may attach it; one call covers the whole group). Bind them
//! sequentially on one thread, then move each [`UdpSocket`] to its core.
//!
//! If a socket of the group is closed, the kernel moves the *last* socket into
//! the closed one's index, which silently re-routes a core's connections: the
//! sockets must live as long as the server. If the program returns an index at
//! or beyond the number of sockets in the group (for example while only some
//! cores have bound), the kernel falls back to its normal 4-tuple hash.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// Storage for an IPv4 or IPv6 socket address in its C layout.
///
/// `sockaddr_in6` (28 bytes) is large enough for both families; the union
/// lets safe code write either variant.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) union RawSockAddr {
    pub(crate) v4: libc::sockaddr_in,
    pub(crate) v6: libc::sockaddr_in6,
}

/// Size of the address storage handed to the kernel for received names.
pub(crate) const SOCKADDR_STORAGE_LEN: libc::socklen_t =
    mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;

impl RawSockAddr {
    /// Encodes `addr` in its C layout, returning the storage and the length
    /// to pass to the kernel.
    pub(crate) fn new(addr: &SocketAddr) -> (Self, libc::socklen_t) {
        match addr {
            SocketAddr::V4(a) => (
                RawSockAddr {
                    v4: libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: a.port().to_be(),
                        sin_addr: libc::in_addr {
                            s_addr: u32::from_ne_bytes(a.ip().octets()),
                        },
                        sin_zero: [0; 8],
                    },
                },
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            SocketAddr::V6(a) => (
                RawSockAddr {
                    v6: libc::sockaddr_in6 {
                        sin6_family: libc::AF_INET6 as libc::sa_family_t,
                        sin6_port: a.port().to_be(),
                        sin6_flowinfo: a.flowinfo(),
                        sin6_addr: libc::in6_addr {
                            s6_addr: a.ip().octets(),
                        },
                        sin6_scope_id: a.scope_id(),
                    },
                },
                SOCKADDR_STORAGE_LEN,
            ),
        }
    }
}

/// Decodes a C socket address (`sockaddr_in` or `sockaddr_in6`) from the
/// bytes the kernel wrote. Returns `None` for other families or short input.
pub(crate) fn sockaddr_from_bytes(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    // Offsets follow `struct sockaddr_in` / `struct sockaddr_in6`.
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    if family == libc::AF_INET {
        let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
    } else if family == libc::AF_INET6 {
        let flowinfo = u32::from_ne_bytes(b.get(4..8)?.try_into().ok()?);
        let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
        let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            flowinfo,
            scope,
        )))
    } else {
        None
    }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn setsockopt_int(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and we pass its exact size; the kernel
    // only reads it during the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn getsockopt_int(fd: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals of the advertised size.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &raw mut len,
        )
    })?;
    Ok(value)
}

/// Sets a socket buffer size, trying the privileged `*FORCE` variant first
/// (it may exceed `net.core.[rw]mem_max` with `CAP_NET_ADMIN`) and falling
/// back to the ordinary option. The kernel doubles the value for bookkeeping
/// and caps the unprivileged one at `[rw]mem_max`.
fn set_buffer(fd: &OwnedFd, force: libc::c_int, plain: libc::c_int, size: usize) -> io::Result<()> {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    if setsockopt_int(fd, libc::SOL_SOCKET, force, size).is_ok() {
        return Ok(());
    }
    setsockopt_int(fd, libc::SOL_SOCKET, plain, size)
}

/// Creates a non-blocking UDP socket with `SO_REUSEADDR` and `SO_REUSEPORT`,
/// sets its receive/send buffer sizes (0 keeps the system default) and binds
/// it to `addr` (IPv4 or IPv6; IPv6 sockets are `IPV6_V6ONLY`, so bind an
/// IPv4 group separately for dual-stack service).
///
/// Sockets that share `addr` join one reuseport group; see the module docs:
/// bind core 0's socket first, then core 1's, and so on.
///
/// A buffer size the kernel caps below the request (`net.core.rmem_max`,
/// `wmem_max`) is not an error; it is logged at `warn` level. Use
/// [`buffer_sizes`] to read what the kernel granted.
pub fn bind_reuseport(addr: SocketAddr, recv_buf: usize, send_buf: usize) -> io::Result<UdpSocket> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain syscall; the returned descriptor (if any) is owned below.
    let raw = cvt(unsafe {
        libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: `raw` is a freshly created descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    if family == libc::AF_INET6 {
        setsockopt_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    if recv_buf > 0 {
        set_buffer(&fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, recv_buf)?;
    }
    if send_buf > 0 {
        set_buffer(&fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, send_buf)?;
    }

    let (raw_addr, len) = RawSockAddr::new(&addr);
    // SAFETY: `raw_addr` holds a valid sockaddr of `len` bytes for the call.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const raw_addr).cast(), len) })?;

    let sock = UdpSocket::from(fd);
    let (rcv, snd) = buffer_sizes(&sock)?;
    // The kernel reports twice the usable size it accepted.
    if recv_buf > 0 && rcv / 2 < recv_buf {
        tracing::warn!(
            requested = recv_buf,
            granted = rcv / 2,
            "SO_RCVBUF capped by the kernel (raise net.core.rmem_max)"
        );
    }
    if send_buf > 0 && snd / 2 < send_buf {
        tracing::warn!(
            requested = send_buf,
            granted = snd / 2,
            "SO_SNDBUF capped by the kernel (raise net.core.wmem_max)"
        );
    }
    Ok(sock)
}

/// Returns the socket's `(SO_RCVBUF, SO_SNDBUF)` as the kernel reports them
/// (twice the requested size, including bookkeeping overhead).
pub fn buffer_sizes(sock: &impl AsFd) -> io::Result<(usize, usize)> {
    let fd = sock.as_fd();
    let rcv = getsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?;
    let snd = getsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF)?;
    Ok((
        usize::try_from(rcv).unwrap_or(0),
        usize::try_from(snd).unwrap_or(0),
    ))
}

const fn bpf_stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn bpf_jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The steering program for a group of `num_sockets` sockets.
///
/// For UDP, the kernel runs a reuseport program on the datagram with the UDP
/// header pulled off (`reuseport_select_sock(.., hdr_len = sizeof(udphdr))`),
/// so offset 0 is the first payload byte and the packet length is the
/// payload length. The program, instruction by instruction:
///
/// ```text
/// 0: ld   len            A = payload length
/// 1: jeq  #0, 4, 2       if A == 0 (empty datagram) goto 4 else goto 2
/// 2: ldb  [0]            A = payload[0]  (low byte of the LE connection id)
/// 3: mod  #num_sockets   A = A % num_sockets
/// 4: ret  a              socket index = A  (A is still 0 when coming from 1)
/// ```
///
/// Instruction 1 jumps to 4 with `A == 0`, so an empty datagram goes to
/// socket 0. (A classic-BPF out-of-bounds load would also return 0, but the
/// explicit check documents the intent.)
pub fn steering_program(num_sockets: u32) -> [libc::sock_filter; 5] {
    [
        bpf_stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_LEN, 0),
        bpf_jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 2, 0),
        bpf_stmt(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0),
        bpf_stmt(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, num_sockets),
        bpf_stmt(libc::BPF_RET | libc::BPF_A, 0),
    ]
}

/// Attaches the connection-id steering program ([`steering_program`]) to the
/// reuseport group `sock` belongs to, with `SO_ATTACH_REUSEPORT_CBPF`.
///
/// Call it once, after all `num_sockets` sockets of the group are bound (in
/// core order; see the module docs). Datagram `d` then goes to socket
/// `d[0] % num_sockets`, and empty datagrams to socket 0.
///
/// # Errors
///
/// `InvalidInput` if `num_sockets` is 0; otherwise the `setsockopt` error
/// (for example `EPERM` under a restrictive seccomp/LSM policy, or
/// `ENOPROTOOPT` on kernels older than 4.5). The engine then falls back to
/// software forwarding between cores.
pub fn attach_steering_cbpf(sock: &impl AsFd, num_sockets: u32) -> io::Result<()> {
    if num_sockets == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "steering needs at least one socket",
        ));
    }
    let mut program = steering_program(num_sockets);
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, which outlives the call; the
    // kernel copies the instructions during `setsockopt`.
    cvt(unsafe {
        libc::setsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&raw const fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for addr in [
            "127.0.0.1:4242".parse::<SocketAddr>().unwrap(),
            "[::1]:65535".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 7, 0x1234, 3)),
        ] {
            let (raw, len) = RawSockAddr::new(&addr);
            let base = (&raw const raw).cast::<u8>();
            // SAFETY: `raw` is a live local of at least `len` bytes, fully
            // initialised (both variants have no padding on Linux).
            let bytes = unsafe { std::slice::from_raw_parts(base, len as usize) };
            assert_eq!(sockaddr_from_bytes(bytes), Some(addr));
        }
        assert_eq!(sockaddr_from_bytes(&[]), None);
        assert_eq!(sockaddr_from_bytes(&[0xff, 0xff, 0, 0]), None);
    }
}
