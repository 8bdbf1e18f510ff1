//! The agent's side of the socket: one thread per connection, one request per line.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::net::{UnixListener, UnixStream},
    sync::{Arc, Mutex, PoisonError},
    thread,
    time::Duration,
};

use super::{ErrorKind, Ipam, Request, Response};

/// A request line longer than this is refused: the plugin's are a few hundred bytes.
const MAX_LINE: u64 = 64 * 1024;

/// A client that sends nothing for this long is dropped, so a stuck plugin cannot hold a
/// thread forever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves IPAM requests on `listener` until accepting fails for good (the listener was
/// closed or is not a listening socket). Blocking: run it on its own std thread.
///
/// Transient accept errors (a client that went away, too many open files) are retried after
/// a short pause rather than ending the loop, as the agent has no one to report them to.
pub fn serve(listener: UnixListener, ipam: Arc<Mutex<Ipam>>) -> std::io::Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, _addr)) => {
                let ipam = Arc::clone(&ipam);
                let spawned = thread::Builder::new()
                    .name("strait-ipam-conn".into())
                    .spawn(move || serve_connection(stream, &ipam));
                if spawned.is_err() {
                    // Out of threads: the client sees its connection closed and retries.
                    thread::sleep(Duration::from_millis(50));
                }
            }
            Err(e) if is_transient(&e) => thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e),
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EINTR
                | libc::ECONNABORTED
                | libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EAGAIN
        )
    )
}

/// Answers each line of one connection until the client closes it.
fn serve_connection(stream: UnixStream, ipam: &Mutex<Ipam>) {
    // Errors here concern one client, which sees its connection close.
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        match (&mut reader).take(MAX_LINE).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let response = if !line.ends_with('\n') && line.len() as u64 >= MAX_LINE {
            Response::Error {
                kind: ErrorKind::InvalidRequest,
                message: format!("request line longer than {MAX_LINE} bytes"),
            }
        } else {
            match serde_json::from_str::<Request>(line.trim()) {
                Ok(request) => ipam
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .handle(request),
                Err(e) => Response::Error {
                    kind: ErrorKind::InvalidRequest,
                    message: format!("failed to decode the request: {e}"),
                },
            }
        };
        let Ok(mut out) = serde_json::to_vec(&response) else {
            return;
        };
        out.push(b'\n');
        if writer.write_all(&out).is_err() {
            return;
        }
        if matches!(
            response,
            Response::Error {
                kind: ErrorKind::InvalidRequest,
                ..
            }
        ) && !line.ends_with('\n')
        {
            // An oversized line: the rest of it is garbage, so close.
            return;
        }
    }
}
