//! A small non-blocking UDP driver for a [`Session`]: one
//! `std::net::UdpSocket` in non-blocking mode, pumped by [`UdpClient::poll`]
//! once per game frame. No threads: the caller's loop is the only one.

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
        let bind: SocketAddr = match server {
            SocketAddr::V4(a) if a.ip().is_loopback() => SocketAddr::new(server.ip(), 0),
            SocketAddr::V6(a) if a.ip().is_loopback() => SocketAddr::new(server.ip(), 0),
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
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
