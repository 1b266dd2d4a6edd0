//! A small non-blocking UDP driver for a [`Session`]: one
//! `std::net::UdpSocket` in non-blocking mode, pumped by [`UdpClient::poll`]
//! once per game frame. No threads: the caller's loop is the only one.
//!
//! Datagrams go where the session says (`Transmit::destination`) and are
//! taken from any address: a zone transfer moves the session to another
//! node. A socket bound to loopback cannot reach another host (nor an IPv4
//! socket an IPv6 one), so a transfer to such a node binds a new socket.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use crate::session::{Session, SessionConfig, SessionError, SessionEvent};

/// Largest datagram read (the protocol's MTU is 1,200; a little room for a
/// server configured larger).
const RECV_BUF: usize = 2048;

/// A [`Session`] on its own UDP socket.
#[derive(Debug)]
pub struct UdpClient {
    socket: UdpSocket,
    session: Session,
    buf: Box<[u8; RECV_BUF]>,
}

/// Why a driver call failed.
#[derive(Debug)]
pub enum DriverError {
    /// The socket failed.
    Io(io::Error),
    /// The session refused.
    Session(SessionError),
}

impl core::fmt::Display for DriverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "socket: {e}"),
            Self::Session(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DriverError {}

impl From<io::Error> for DriverError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<SessionError> for DriverError {
    fn from(e: SessionError) -> Self {
        Self::Session(e)
    }
}

impl UdpClient {
    /// Binds a socket (on loopback for a loopback server, otherwise on
    /// every interface of the server's address family) and starts
    /// connecting; the Connect leaves on the first [`UdpClient::poll`].
    pub fn connect(
        server: SocketAddr,
        config: SessionConfig,
        now: Instant,
    ) -> Result<Self, DriverError> {
        let socket = bind_for(server)?;
        let session = Session::connect(config, server, now)?;
        Ok(Self {
            socket,
            session,
            buf: Box::new([0u8; RECV_BUF]),
        })
    }

    /// Receives everything waiting, runs the timers and sends everything
    /// due. Call it once per frame (and after sending claims, to send them
    /// now rather than next frame).
    pub fn poll(&mut self, now: Instant) -> Result<(), DriverError> {
        loop {
            match self.socket.recv_from(&mut self.buf[..]) {
                Ok((n, from)) => self.session.handle_datagram(now, from, &mut self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP port unreachable and the like surface as errors on
                // some systems: the session's timers deal with a dead
                // server, so they are not fatal here.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.session.handle_timeout(now);
        self.flush(now)
    }

    fn flush(&mut self, now: Instant) -> Result<(), DriverError> {
        while let Some(t) = self.session.poll_transmit(now, &mut self.buf[..]) {
            if !reaches(self.socket.local_addr()?, t.destination) {
                // A zone transfer to a node this socket cannot reach: the
                // old node's datagrams (its Disconnect) are done with.
                self.socket = bind_for(t.destination)?;
            }
            match self.socket.send_to(&self.buf[..t.size], t.destination) {
                Ok(_) => {}
                // A full socket buffer loses the datagram, as the network
                // could: the protocol recovers.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.session.poll_event()
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session, to send claims and actions.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Closes gracefully and sends the Disconnect now.
    pub fn close(&mut self, now: Instant) -> Result<(), DriverError> {
        self.session.close(now);
        self.flush(now)
    }
}

/// A non-blocking socket for talking to `server`: on loopback for a
/// loopback server, otherwise on every interface of its address family.
fn bind_for(server: SocketAddr) -> io::Result<UdpSocket> {
    let bind: SocketAddr = match server {
        SocketAddr::V4(a) if a.ip().is_loopback() => SocketAddr::new(server.ip(), 0),
        SocketAddr::V6(a) if a.ip().is_loopback() => SocketAddr::new(server.ip(), 0),
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Whether a socket bound to `local` can send to `to`: the same address
/// family, and off loopback only when not bound to it.
fn reaches(local: SocketAddr, to: SocketAddr) -> bool {
    local.is_ipv4() == to.is_ipv4() && (!local.ip().is_loopback() || to.ip().is_loopback())
}
