//! The serial port itself: opening and configuring the tty, and the
//! blocking reader and writer threads that move bytes between it and the
//! link's task.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::termios::{self, BaudRate, ControlFlags, SetArg, SpecialCharacterIndices};
use tokio::sync::mpsc;

pub(super) fn baud_rate(baud: u32) -> Option<BaudRate> {
    Some(match baud {
        9_600 => BaudRate::B9600,
        19_200 => BaudRate::B19200,
        38_400 => BaudRate::B38400,
        57_600 => BaudRate::B57600,
        115_200 => BaudRate::B115200,
        230_400 => BaudRate::B230400,
        460_800 => BaudRate::B460800,
        921_600 => BaudRate::B921600,
        _ => return None,
    })
}

pub(super) struct Port {
    pub(super) file: File,
    pub(super) is_tty: bool,
}

/// Opens the port without blocking on modem lines and, for a tty, sets raw
/// mode, the baud rate and the 100 ms read timeout.
pub(super) fn open_port(path: &std::path::Path, baud: BaudRate) -> std::io::Result<Port> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    // O_NONBLOCK only for the open itself: without it, opening a tty whose
    // CLOCAL is unset waits for carrier detect.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags((OFlag::O_NOCTTY | OFlag::O_NONBLOCK).bits())
        .open(path)?;
    let is_tty = nix::unistd::isatty(&file).unwrap_or(false);
    if is_tty {
        let mut t = termios::tcgetattr(&file)?;
        termios::cfmakeraw(&mut t);
        termios::cfsetspeed(&mut t, baud)?;
        // Ignore modem lines, enable the receiver, no hardware flow control
        // (the device's ring and the cumulative ack handle loss).
        t.control_flags |= ControlFlags::CLOCAL | ControlFlags::CREAD;
        t.control_flags &= !ControlFlags::CRTSCTS;
        // read() returns after 100 ms without data: the reader thread can
        // look at its stop flag.
        t.control_chars[SpecialCharacterIndices::VMIN as usize] = 0;
        t.control_chars[SpecialCharacterIndices::VTIME as usize] = 1;
        termios::tcsetattr(&file, SetArg::TCSANOW, &t)?;
    }
    let flags = OFlag::from_bits_truncate(fcntl(&file, FcntlArg::F_GETFL)?);
    fcntl(&file, FcntlArg::F_SETFL(flags & !OFlag::O_NONBLOCK))?;
    Ok(Port { file, is_tty })
}

pub(super) fn read_loop(
    mut file: File,
    is_tty: bool,
    stop: &AtomicBool,
    chunks: &mpsc::Sender<std::io::Result<Vec<u8>>>,
) {
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        match file.read(&mut buf) {
            // A tty with VTIME returns 0 after 100 ms without data.
            Ok(0) if is_tty => {}
            Ok(0) => {
                let _ = chunks.blocking_send(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "end of file on the serial path",
                )));
                return;
            }
            Ok(n) => {
                let data = buf.get(..n).unwrap_or(&[]).to_vec();
                if chunks.blocking_send(Ok(data)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = chunks.blocking_send(Err(e));
                return;
            }
        }
    }
}

pub(super) fn write_loop(mut file: File, frames: &std::sync::mpsc::Receiver<Vec<u8>>) {
    while let Ok(frame) = frames.recv() {
        if let Err(e) = file.write_all(&frame).and_then(|()| file.flush()) {
            // The reader sees the same failure and ends the session.
            tracing::debug!(error = %e, "serial write failed");
            return;
        }
    }
}
