//! Container logs in the CRI format the kubelet reads (`<RFC 3339 nano> <stream> <P|F> <text>`),
//! written by a small per-container process (`strait-agent log-shim`, conmon's role) that owns
//! the read ends of the container's stdout and stderr pipes. It outlives an agent restart, so
//! a restarting agent never closes a container's stdout under it; it rotates the file past a
//! size, as the kubelet's `containerLogMaxSize`/`containerLogMaxFiles` do.
//!
//! The reading side serves `kubectl logs`: tail, since, timestamps, limit and follow.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _},
    os::fd::{AsFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use jiff::Timestamp;

/// Lines longer than this are split into partial (`P`) records, as CRI runtimes do.
pub const MAX_LINE: usize = 16 * 1024;
/// Default rotation size and number of files kept (the kubelet's defaults).
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
pub const DEFAULT_MAX_FILES: u32 = 5;

/// One CRI log record.
pub fn record(time: Timestamp, stream: &str, partial: bool, text: &[u8]) -> Vec<u8> {
    let mut line = format!(
        "{} {stream} {} ",
        time.strftime("%Y-%m-%dT%H:%M:%S.%9fZ"),
        if partial { "P" } else { "F" }
    )
    .into_bytes();
    line.extend_from_slice(text);
    line.push(b'\n');
    line
}

/// A parsed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub text: &'a str,
}

/// Parses one CRI line (without its newline).
pub fn parse(line: &str) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some(Record {
        time,
        stream,
        partial: tag == "P",
        text,
    })
}

/// What `kubectl logs` asks for.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub tail_lines: Option<usize>,
    pub timestamps: bool,
    pub since: Option<Timestamp>,
    pub limit_bytes: Option<usize>,
}

/// Turns CRI records into what `kubectl logs` prints: partial records joined, records before
/// `since` dropped, the timestamp kept only if asked, the last `tail_lines` lines only, at most
/// `limit_bytes`. Pure.
pub fn render(text: &str, query: &Query) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut pending = String::new();
    let mut pending_time = String::new();
    for raw in text.lines() {
        let Some(record) = parse(raw) else { continue };
        if pending.is_empty() {
            pending_time = record.time.to_owned();
        }
        pending.push_str(record.text);
        if record.partial {
            continue;
        }
        let keep = query
            .since
            .is_none_or(|since| pending_time.parse::<Timestamp>().is_ok_and(|t| t >= since));
        if keep {
            lines.push(if query.timestamps {
                format!("{pending_time} {pending}\n")
            } else {
                format!("{pending}\n")
            });
        }
        pending.clear();
    }
    if let Some(n) = query.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let mut out: String = lines.concat();
    if let Some(limit) = query.limit_bytes
        && out.len() > limit
    {
        let mut cut = limit;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// The shim: reads the container's stdout (fd 0) and stderr (fd 3) until both close, writing
/// CRI records to `path` and rotating it.
pub fn run_shim(path: &Path, max_size: u64, max_files: u32) -> io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    // SAFETY: fd 3 is the stderr pipe's read end, placed there by the agent when it spawned
    // this process and owned by nobody else in it.
    let stderr = unsafe { OwnedFd::from_raw_fd(3) };
    let stdout: OwnedFd = io::stdin().as_fd().try_clone_to_owned()?;
    let mut sinks = [
        Stream::new("stdout", File::from(stdout)),
        Stream::new("stderr", File::from(stderr)),
    ];
    let mut out = Writer::open(path, max_size, max_files)?;
    loop {
        let open: Vec<usize> = (0..2).filter(|i| !sinks[*i].closed).collect();
        if open.is_empty() {
            break;
        }
        let fds: Vec<BorrowedFd<'_>> = open.iter().map(|i| sinks[*i].file.as_fd()).collect();
        let mut polls: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        poll(&mut polls, PollTimeout::NONE).map_err(io::Error::from)?;
        let ready: Vec<usize> = open
            .iter()
            .zip(&polls)
            .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
            .map(|(i, _)| *i)
            .collect();
        drop(polls);
        for i in ready {
            sinks[i].read_into(&mut out)?;
        }
    }
    for sink in &mut sinks {
        sink.flush(&mut out)?;
    }
    Ok(())
}

struct Stream {
    name: &'static str,
    file: File,
    buffer: Vec<u8>,
    closed: bool,
}

impl Stream {
    fn new(name: &'static str, file: File) -> Self {
        Self {
            name,
            file,
            buffer: Vec::new(),
            closed: false,
        }
    }

    fn read_into(&mut self, out: &mut Writer) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = match self.file.read(&mut chunk) {
            Ok(0) => {
                self.closed = true;
                return self.flush(out);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        };
        self.buffer.extend_from_slice(&chunk[..n]);
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            out.write(&record(
                Timestamp::now(),
                self.name,
                false,
                &line[..line.len() - 1],
            ))?;
        }
        while self.buffer.len() >= MAX_LINE {
            let part: Vec<u8> = self.buffer.drain(..MAX_LINE).collect();
            out.write(&record(Timestamp::now(), self.name, true, &part))?;
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut Writer) -> io::Result<()> {
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            out.write(&record(Timestamp::now(), self.name, false, &rest))?;
        }
        Ok(())
    }
}

/// The log file, rotated to `<path>.1`, `<path>.2`, … past `max_size`.
struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
}

impl Writer {
    fn open(path: &Path, max_size: u64, max_files: u32) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    fn write(&mut self, record: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + record.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(record)?;
        self.size += record.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let rotated = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = fs::remove_file(rotated(self.max_files - 1));
        for n in (1..self.max_files.saturating_sub(1)).rev() {
            let _ = fs::rename(rotated(n), rotated(n + 1));
        }
        if self.max_files > 1 {
            fs::rename(&self.path, rotated(1))?;
        } else {
            fs::remove_file(&self.path)?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Everything a log file and its rotations hold, oldest first.
pub fn read_all(path: &Path) -> String {
    let mut text = String::new();
    let mut rotated: Vec<(u32, PathBuf)> = fs::read_dir(path.parent().unwrap_or(Path::new(".")))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let base = path.file_name()?.to_string_lossy().into_owned();
            let n = name.strip_prefix(&format!("{base}."))?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    for (_, p) in rotated {
        text.push_str(&fs::read_to_string(p).unwrap_or_default());
    }
    text.push_str(&fs::read_to_string(path).unwrap_or_default());
    text
}

/// Reads what was appended to `path` since `offset` (whole lines only); returns the text and
/// the new offset. A file that shrank (rotated) is read from its start.
pub fn read_from(path: &Path, offset: u64) -> (String, u64) {
    let Ok(mut file) = File::open(path) else {
        return (String::new(), offset);
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = if len < offset { 0 } else { offset };
    if file.seek(SeekFrom::Start(start)).is_err() {
        return (String::new(), offset);
    }
    let mut reader = BufReader::new(file);
    let mut text = String::new();
    let mut consumed = start;
    let mut line = String::new();
    while let Ok(n) = reader.read_line(&mut line) {
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        consumed += n as u64;
        text.push_str(&line);
        line.clear();
    }
    (text, consumed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn records_round_trip_and_render_as_kubectl_shows_them() {
        let mut text = String::new();
        for (t, s, p, body) in [
            ("2026-01-01T00:00:01Z", "stdout", false, "one"),
            ("2026-01-01T00:00:02Z", "stderr", true, "tw"),
            ("2026-01-01T00:00:02Z", "stderr", false, "o"),
            ("2026-01-01T00:00:03Z", "stdout", false, "three"),
        ] {
            text.push_str(&String::from_utf8(record(at(t), s, p, body.as_bytes())).unwrap());
        }
        assert!(
            text.starts_with("2026-01-01T00:00:01.000000000Z stdout F one\n"),
            "{text}"
        );
        assert_eq!(render(&text, &Query::default()), "one\ntwo\nthree\n");
        let tail = Query {
            tail_lines: Some(1),
            timestamps: true,
            ..Query::default()
        };
        assert_eq!(
            render(&text, &tail),
            "2026-01-01T00:00:03.000000000Z three\n"
        );
        let since = Query {
            since: Some(at("2026-01-01T00:00:02Z")),
            ..Query::default()
        };
        assert_eq!(render(&text, &since), "two\nthree\n");
        let limit = Query {
            limit_bytes: Some(5),
            ..Query::default()
        };
        assert_eq!(render(&text, &limit), "one\nt");
    }

    #[test]
    fn the_writer_rotates_and_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = Writer::open(&path, 100, 3).unwrap();
        for i in 0..20 {
            w.write(&record(
                Timestamp::now(),
                "stdout",
                false,
                format!("line {i}").as_bytes(),
            ))
            .unwrap();
        }
        assert!(fs::metadata(&path).unwrap().len() <= 100);
        assert!(dir.path().join("0.log.1").exists());
        assert!(dir.path().join("0.log.2").exists());
        assert!(!dir.path().join("0.log.3").exists(), "at most 3 files");
        let all = render(&read_all(&path), &Query::default());
        assert!(all.ends_with("line 19\n"), "{all}");
        let (text, offset) = read_from(&path, 0);
        assert_eq!(offset, fs::metadata(&path).unwrap().len());
        assert!(text.contains("line 19"));
    }
}
