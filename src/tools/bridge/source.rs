//! Where MAVLink comes from: a UDP port, a serial port, or a recorded telemetry log. Each source
//! runs on its own task or thread and hands decoded messages, stamped with their receive time in
//! µs since the epoch, to the bridge over a bounded channel.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use mavlink::dialects::common::MavMessage;
use mavlink::error::MessageReadError;
use mavlink::{MavHeader, MavlinkReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One decoded message.
#[derive(Debug)]
pub struct Frame {
    pub recv_us: i64,
    pub header: MavHeader,
    pub message: MavMessage,
}

#[derive(Debug)]
pub enum Event {
    Frame(Box<Frame>),
    /// A frame that is not a message of the common dialect (another dialect's id, a bad CRC).
    Undecoded,
}

#[derive(Debug, Clone)]
pub enum Source {
    Udp(String),
    Serial { device: PathBuf, baud: u32 },
    Tlog(PathBuf),
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Udp(addr) => format!("udp:{addr}"),
            Source::Serial { device, baud } => format!("serial:{}@{baud}", device.display()),
            Source::Tlog(path) => format!("tlog:{}", path.display()),
        }
    }

    pub fn is_recording(&self) -> bool {
        matches!(self, Source::Tlog(_))
    }
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Starts the source. The channel closes when a recording ends; a live source runs until
/// `shutdown`. An error (the port cannot be bound, the file opened) ends the task with it.
pub async fn start(
    source: &Source,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    match source {
        Source::Udp(addr) => {
            let socket = tokio::net::UdpSocket::bind(addr)
                .await
                .with_context(|| format!("cannot listen for mavlink on udp {addr}"))?;
            Ok(tokio::spawn(udp(socket, events, shutdown)))
        }
        Source::Serial { device, baud } => {
            // Opened here so a wrong device or baud rate is an error at start, not later.
            let port = open_serial(device, *baud)?;
            let device = device.clone();
            let baud = *baud;
            Ok(tokio::task::spawn_blocking(move || serial(port, &device, baud, events, shutdown)))
        }
        Source::Tlog(path) => {
            let reader = super::super::send::open_maybe_gzip(path)?;
            let path = path.clone();
            Ok(tokio::task::spawn_blocking(move || tlog(reader, &path, events, shutdown)))
        }
    }
}

async fn udp(
    socket: tokio::net::UdpSocket,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut datagram = vec![0u8; 65_536];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut datagram) => received,
            () = shutdown.cancelled() => return Ok(()),
        };
        let (len, _from) = match received {
            Ok(received) => received,
            // ICMP "port unreachable" of an earlier send and the like: not fatal for a listener.
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(error) => return Err(error).context("receiving mavlink over udp"),
        };
        let recv_us = now_us();
        for event in decode_all(&datagram[..len], recv_us) {
            if events.send(event).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Every frame in one datagram (a router may pack several).
fn decode_all(bytes: &[u8], recv_us: i64) -> Vec<Event> {
    let mut reader = MavlinkReader::new(bytes);
    let mut out = Vec::new();
    // Each read consumes at least one byte, so this bounds the loop.
    for _ in 0..bytes.len() {
        match reader.read_any_message::<MavMessage>() {
            Ok((header, message)) => out.push(Event::Frame(Box::new(Frame { recv_us, header, message }))),
            Err(MessageReadError::Io(_)) => break,
            Err(MessageReadError::Parse(_)) => out.push(Event::Undecoded),
        }
    }
    out
}

/// A recorded ground-station log: records of an 8-byte big-endian µs timestamp followed by one
/// MAVLink frame (the format of QGroundControl, Mission Planner and MAVProxy).
fn tlog(
    reader: Box<dyn Read + Send>,
    path: &Path,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut records = TlogReader { reader, buffer: Vec::new(), start: 0 };
    while let Some((timestamp_us, frame)) =
        records.next_record().with_context(|| format!("reading {}", path.display()))?
    {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let recv_us = i64::try_from(timestamp_us).unwrap_or(i64::MAX);
        let event = match MavlinkReader::new(frame.as_slice()).read_any_message::<MavMessage>() {
            Ok((header, message)) => Event::Frame(Box::new(Frame { recv_us, header, message })),
            Err(_) => Event::Undecoded,
        };
        if events.blocking_send(event).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

struct TlogReader {
    reader: Box<dyn Read + Send>,
    buffer: Vec<u8>,
    start: usize,
}

impl TlogReader {
    /// At least `n` bytes buffered from `start`, or `false` at the end of the file.
    fn fill(&mut self, n: usize) -> std::io::Result<bool> {
        if self.start > 0 && self.start + n > self.buffer.len() {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        let mut chunk = [0u8; 8192];
        while self.buffer.len() - self.start < n {
            let read = self.reader.read(&mut chunk)?;
            if read == 0 {
                return Ok(false);
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
        Ok(true)
    }

    /// The next (timestamp, frame bytes); a record that is not a frame is skipped one byte at a
    /// time until one is found again (a truncated or corrupted log).
    fn next_record(&mut self) -> std::io::Result<Option<(u64, Vec<u8>)>> {
        loop {
            if !self.fill(8 + 3)? {
                return Ok(None);
            }
            let at = self.start;
            let magic = self.buffer[at + 8];
            let payload = usize::from(self.buffer[at + 9]);
            let len = match magic {
                0xFE => 6 + payload + 2,
                0xFD => {
                    let signed = self.buffer[at + 10] & 0x01 != 0;
                    10 + payload + 2 + if signed { 13 } else { 0 }
                }
                _ => {
                    self.start += 1;
                    continue;
                }
            };
            if !self.fill(8 + len)? {
                return Ok(None);
            }
            let at = self.start;
            let timestamp = u64::from_be_bytes(self.buffer[at..at + 8].try_into().expect("8 bytes"));
            let frame = self.buffer[at + 8..at + 8 + len].to_vec();
            self.start += 8 + len;
            return Ok(Some((timestamp, frame)));
        }
    }
}

/// Opens a serial device raw (no echo, no line discipline) at `baud`, 8N1.
fn open_serial(device: &Path, baud: u32) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;

    let speed = match baud {
        9600 => libc::B9600,
        19200 => libc::B19200,
        38400 => libc::B38400,
        57600 => libc::B57600,
        115200 => libc::B115200,
        230400 => libc::B230400,
        460800 => libc::B460800,
        500000 => libc::B500000,
        921600 => libc::B921600,
        1000000 => libc::B1000000,
        1500000 => libc::B1500000,
        2000000 => libc::B2000000,
        other => anyhow::bail!(
            "--baud {other} is not supported (9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 921600, 1000000, 1500000, 2000000)"
        ),
    };
    let port = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(device)
        .with_context(|| format!("cannot open serial device {}", device.display()))?;
    let fd = port.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `port` for the whole block, and `termios` is
    // a plain C struct that tcgetattr fills before anything reads it.
    unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut termios) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("{} is not a serial port", device.display()));
        }
        libc::cfmakeraw(&mut termios);
        termios.c_cflag |= libc::CLOCAL | libc::CREAD;
        termios.c_cflag &= !(libc::CSTOPB | libc::PARENB | libc::CRTSCTS);
        // A read returns after 1 s of silence, so the reader sees a shutdown on a quiet link.
        termios.c_cc[libc::VMIN] = 0;
        termios.c_cc[libc::VTIME] = 10;
        if libc::cfsetispeed(&mut termios, speed) != 0
            || libc::cfsetospeed(&mut termios, speed) != 0
            || libc::tcsetattr(fd, libc::TCSANOW, &termios) != 0
        {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot set {} to {baud} baud", device.display()));
        }
    }
    Ok(port)
}

/// A serial port whose reads wait through silence (a 1 s read timeout returning nothing) until
/// data comes or the bridge stops.
struct Quiet {
    port: std::fs::File,
    shutdown: CancellationToken,
}

impl Read for Quiet {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let read = self.port.read(buf)?;
            if read > 0 || buf.is_empty() {
                return Ok(read);
            }
            if self.shutdown.is_cancelled() {
                return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "the bridge stops"));
            }
        }
    }
}

/// Reads the serial port; when the device goes away (a USB radio unplugged) it is opened again
/// every second until it is back.
fn serial(
    port: std::fs::File,
    device: &Path,
    baud: u32,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut reader = MavlinkReader::new(Quiet { port, shutdown: shutdown.clone() });
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let event = match reader.read_any_message::<MavMessage>() {
            Ok((header, message)) => Event::Frame(Box::new(Frame { recv_us: now_us(), header, message })),
            Err(MessageReadError::Parse(_)) => Event::Undecoded,
            Err(MessageReadError::Io(_)) if shutdown.is_cancelled() => return Ok(()),
            Err(MessageReadError::Io(error)) => {
                eprintln!("bridge: serial device {} failed ({error}); reopening", device.display());
                reader = loop {
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    if let Ok(port) = open_serial(device, baud) {
                        eprintln!("bridge: serial device {} open again", device.display());
                        break MavlinkReader::new(Quiet { port, shutdown: shutdown.clone() });
                    }
                };
                continue;
            }
        };
        if events.blocking_send(event).is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use mavlink::dialects::common::{HEARTBEAT_DATA, VFR_HUD_DATA};
    use mavlink::MavlinkVersion;

    use super::*;

    fn frame(version: MavlinkVersion, message: &MavMessage) -> Vec<u8> {
        let mut bytes = Vec::new();
        let header = MavHeader { system_id: 1, component_id: 1, sequence: 7 };
        mavlink::write_versioned_msg(&mut bytes, version, header, message).unwrap();
        bytes
    }

    #[test]
    fn tlog_records_are_read_across_garbage_and_both_versions() {
        let hud = MavMessage::VFR_HUD(VFR_HUD_DATA { throttle: 42, ..VFR_HUD_DATA::DEFAULT });
        let heartbeat = MavMessage::HEARTBEAT(HEARTBEAT_DATA::DEFAULT);
        let mut log = Vec::new();
        log.extend_from_slice(&1_000u64.to_be_bytes());
        log.extend(frame(MavlinkVersion::V2, &hud));
        log.extend_from_slice(&[0x00, 0x13]); // garbage
        log.extend_from_slice(&2_000u64.to_be_bytes());
        log.extend(frame(MavlinkVersion::V1, &heartbeat));
        log.extend_from_slice(&3_000u64.to_be_bytes()); // truncated record
        let mut reader = TlogReader { reader: Box::new(std::io::Cursor::new(log)), buffer: Vec::new(), start: 0 };
        let (ts, bytes) = reader.next_record().unwrap().unwrap();
        assert_eq!(ts, 1_000);
        let (_, message) = MavlinkReader::new(bytes.as_slice()).read_any_message::<MavMessage>().unwrap();
        assert_eq!(message, hud);
        let (ts, bytes) = reader.next_record().unwrap().unwrap();
        assert_eq!(ts, 2_000);
        let (_, message) = MavlinkReader::new(bytes.as_slice()).read_any_message::<MavMessage>().unwrap();
        assert_eq!(message, heartbeat);
        assert!(reader.next_record().unwrap().is_none());
    }

    #[test]
    fn a_datagram_may_hold_several_frames() {
        let hud = MavMessage::VFR_HUD(VFR_HUD_DATA::DEFAULT);
        let mut datagram = frame(MavlinkVersion::V2, &hud);
        datagram.extend(frame(MavlinkVersion::V1, &hud));
        let events = decode_all(&datagram, 5);
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| matches!(e, Event::Frame(f) if f.recv_us == 5 && f.message == hud)));
    }
}
