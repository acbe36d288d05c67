//! The durable local outbox: every measurement is written here (and fsynced) before the
//! agent tries to send it, and leaves only when the broker has confirmed it. After a
//! reconnect or a restart, everything not yet confirmed is sent again; the cloud stores
//! each measurement id once, so a re-send is harmless.
//!
//! On disk: append-only segment files `<n>.log` of records `[len: u32 LE][crc32: u32 LE]
//! [payload]` (the CRC covers the length and the payload; empty records do not exist), and
//! a `cursor` file holding the position of the first unconfirmed record. A torn or
//! zero-filled record at the tail of the last segment (power cut mid-write) is cut off on
//! open; anything unreadable elsewhere is an error, never silently skipped. A failed write
//! is undone before it is reported. Segments wholly before the cursor are deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
const HEADER: usize = 8;
/// The largest record: a measurement message is at most 1 MiB; anything claiming more is
/// a corrupt header, not a reason to allocate.
const MAX_RECORD: usize = 4 * 1024 * 1024;
/// The cursor is persisted at most this often; a crash re-sends at most this much.
const CURSOR_INTERVAL: Duration = Duration::from_millis(200);

/// A place in the log: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

pub struct Outbox {
    dir: PathBuf,
    state: Mutex<State>,
    /// Woken whenever records are appended.
    appended: Notify,
}

struct State {
    writer: File,
    /// Where the next record will be written: the end of what is durable.
    end: Position,
    confirmed: Position,
    cursor_saved: Position,
    cursor_saved_at: Instant,
    /// Records appended and not yet confirmed (for reporting).
    pending: u64,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.log"))
}

fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    found.sort_unstable();
    Ok(found)
}

fn checksum(len: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len);
    hasher.update(payload);
    hasher.finalize()
}

/// Reads the record where `input` stands: `None` where no whole, intact record starts (the
/// end, or a torn, zero-filled or corrupt one).
fn next_record(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; HEADER];
    if !read_fully(input, &mut header)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().unwrap());
    if len == 0 || len > MAX_RECORD {
        return Ok(None);
    }
    let mut payload = vec![0u8; len];
    if !read_fully(input, &mut payload)? || checksum(&header[..4], &payload) != crc {
        return Ok(None);
    }
    Ok(Some(payload))
}

/// Fills `buf`, or returns false at end of file.
fn read_fully(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..])? {
            0 => return Ok(false),
            n => filled += n,
        }
    }
    Ok(true)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Outbox {
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Outbox> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let existing = segments(&dir)?;
        let confirmed = match fs::read_to_string(dir.join("cursor")) {
            Ok(text) => {
                let mut parts = text.split_whitespace().map(|p| p.parse::<u64>());
                match (parts.next(), parts.next()) {
                    (Some(Ok(segment)), Some(Ok(offset))) => Position { segment, offset },
                    _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt outbox cursor")),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Position { segment: existing.first().copied().unwrap_or(1), offset: 0 }
            }
            Err(e) => return Err(e),
        };
        // The last segment takes new records, after its last intact one; the records in it
        // from the cursor on are pending (one buffered pass counts and checks them).
        let segment = existing.last().copied().unwrap_or(confirmed.segment).max(confirmed.segment);
        let path = segment_path(&dir, segment);
        let writer = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        let mut offset = 0;
        let mut pending_here = 0;
        {
            let mut input = BufReader::with_capacity(256 * 1024, &writer);
            while let Some(payload) = next_record(&mut input)? {
                if segment > confirmed.segment || offset >= confirmed.offset {
                    pending_here += 1;
                }
                offset += (HEADER + payload.len()) as u64;
            }
        }
        writer.set_len(offset)?;
        writer.sync_all()?;
        sync_dir(&dir)?;
        let end = Position { segment, offset };
        let outbox = Outbox {
            dir,
            state: Mutex::new(State {
                writer,
                end,
                confirmed,
                cursor_saved: confirmed,
                cursor_saved_at: Instant::now(),
                pending: 0,
            }),
            appended: Notify::new(),
        };
        // Full segments between the cursor and the last one are pending as a whole.
        let mut pending = pending_here;
        for full in existing.iter().copied().filter(|s| (confirmed.segment..segment).contains(s)) {
            let from = if full == confirmed.segment { confirmed.offset } else { 0 };
            let mut input = BufReader::with_capacity(256 * 1024, File::open(segment_path(&outbox.dir, full))?);
            input.seek(SeekFrom::Start(from))?;
            while next_record(&mut input)?.is_some() {
                pending += 1;
            }
        }
        outbox.state.lock().unwrap().pending = pending;
        Ok(outbox)
    }

    /// Appends records and makes them durable (one fsync for all) before returning.
    pub fn append(&self, records: &[Vec<u8>]) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        let mut buffer = Vec::with_capacity(records.iter().map(|r| r.len() + HEADER).sum());
        for record in records {
            if state.end.offset + (buffer.len() + HEADER + record.len()) as u64 > SEGMENT_BYTES
                && state.end.offset + buffer.len() as u64 > 0
            {
                self.flush(&mut state, &buffer)?;
                buffer.clear();
                self.rotate(&mut state)?;
            }
            assert!(!record.is_empty() && record.len() <= MAX_RECORD, "outbox records are 1 byte to 4 MiB");
            let len = (record.len() as u32).to_le_bytes();
            buffer.extend_from_slice(&len);
            buffer.extend_from_slice(&checksum(&len, record).to_le_bytes());
            buffer.extend_from_slice(record);
        }
        self.flush(&mut state, &buffer)?;
        state.pending += records.len() as u64;
        drop(state);
        self.appended.notify_one();
        Ok(())
    }

    fn flush(&self, state: &mut State, buffer: &[u8]) -> io::Result<()> {
        state.writer.write_all(buffer)?;
        state.writer.sync_data()?;
        state.end.offset += buffer.len() as u64;
        Ok(())
    }

    fn rotate(&self, state: &mut State) -> io::Result<()> {
        let segment = state.end.segment + 1;
        state.writer =
            OpenOptions::new().create(true).read(true).append(true).open(segment_path(&self.dir, segment))?;
        sync_dir(&self.dir)?;
        state.end = Position { segment, offset: 0 };
        Ok(())
    }

    /// Waits until something is appended (or returns at once if that happened since the
    /// last wait).
    pub async fn appended(&self) {
        self.appended.notified().await;
    }

    pub fn end(&self) -> Position {
        self.state.lock().unwrap().end
    }

    pub fn confirmed(&self) -> Position {
        self.state.lock().unwrap().confirmed
    }

    /// Records waiting for a broker confirm.
    pub fn pending(&self) -> u64 {
        self.state.lock().unwrap().pending
    }

    /// Everything before `position` is confirmed by the broker (`count` records more).
    pub fn confirm(&self, position: Position, count: u64) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        if position <= state.confirmed {
            return Ok(());
        }
        state.confirmed = position;
        state.pending = state.pending.saturating_sub(count);
        if state.cursor_saved_at.elapsed() >= CURSOR_INTERVAL || state.confirmed == state.end {
            self.save_cursor(&mut state)?;
        }
        Ok(())
    }

    /// Persists the cursor now (on shutdown).
    pub fn sync(&self) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        self.save_cursor(&mut state)
    }

    fn save_cursor(&self, state: &mut State) -> io::Result<()> {
        if state.cursor_saved == state.confirmed {
            return Ok(());
        }
        let tmp = self.dir.join("cursor.tmp");
        let mut file = File::create(&tmp)?;
        writeln!(file, "{} {}", state.confirmed.segment, state.confirmed.offset)?;
        file.sync_all()?;
        fs::rename(&tmp, self.dir.join("cursor"))?;
        sync_dir(&self.dir)?;
        // Segments wholly confirmed are no longer needed.
        for segment in segments(&self.dir)?.into_iter().filter(|s| *s < state.confirmed.segment) {
            fs::remove_file(segment_path(&self.dir, segment))?;
        }
        state.cursor_saved = state.confirmed;
        state.cursor_saved_at = Instant::now();
        Ok(())
    }
}

/// Reads records in order, keeping the current segment open behind a buffer: reading on
/// from where the last record ended costs no seek and few system calls.
#[derive(Default)]
pub struct Reader {
    open: Option<OpenSegment>,
}

struct OpenSegment {
    segment: u64,
    /// Where `file` stands.
    offset: u64,
    file: BufReader<File>,
}

impl Reader {
    /// The record at `position` and the position after it, or `None` at the durable end.
    pub fn read(&mut self, outbox: &Outbox, mut position: Position) -> io::Result<Option<(Vec<u8>, Position)>> {
        loop {
            let end = outbox.end();
            if position >= end {
                return Ok(None);
            }
            let open = match &mut self.open {
                Some(open) if open.segment == position.segment => open,
                _ => {
                    let file =
                        BufReader::with_capacity(256 * 1024, File::open(segment_path(&outbox.dir, position.segment))?);
                    self.open.insert(OpenSegment { segment: position.segment, offset: 0, file })
                }
            };
            if open.offset != position.offset {
                open.file.seek(SeekFrom::Start(position.offset))?;
                open.offset = position.offset;
            }
            match next_record(&mut open.file)? {
                Some(payload) => {
                    open.offset += (HEADER + payload.len()) as u64;
                    return Ok(Some((payload, Position { segment: position.segment, offset: open.offset })));
                }
                // The clean end of a full segment: the next one follows.
                None if position.segment < end.segment && position.offset == open.file.get_ref().metadata()?.len() => {
                    position = Position { segment: position.segment + 1, offset: 0 };
                }
                None => {
                    // What was read is unknown now: start afresh next time.
                    self.open = None;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "outbox record unreadable before its end"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(outbox: &Outbox) -> Vec<Vec<u8>> {
        let mut reader = Reader::default();
        let mut position = outbox.confirmed();
        let mut out = vec![];
        while let Some((payload, next)) = reader.read(outbox, position).unwrap() {
            out.push(payload);
            position = next;
        }
        out
    }

    #[test]
    fn unconfirmed_records_survive_a_restart_and_confirmed_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        outbox.append(&[b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]).unwrap();
        let mut reader = Reader::default();
        let (_, after_one) = reader.read(&outbox, outbox.confirmed()).unwrap().unwrap();
        outbox.confirm(after_one, 1).unwrap();
        outbox.sync().unwrap();
        drop(outbox);

        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(drain(&outbox), [b"two".to_vec(), b"three".to_vec()]);
        assert_eq!(outbox.pending(), 2);
    }

    #[test]
    fn a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        outbox.append(&[b"whole".to_vec()]).unwrap();
        drop(outbox);
        let path = segment_path(dir.path(), 1);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[200, 0, 0, 0, 1, 2]).unwrap(); // a header cut short
        drop(file);
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(drain(&outbox), [b"whole".to_vec()]);
        drop(outbox);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0; 64]).unwrap(); // zeros where a power cut left allocated blocks
        drop(file);
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(drain(&outbox), [b"whole".to_vec()]);
        outbox.append(&[b"after".to_vec()]).unwrap();
        assert_eq!(drain(&outbox), [b"whole".to_vec(), b"after".to_vec()]);
    }

    #[test]
    fn segments_rotate_and_confirmed_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let big = vec![7u8; 3 * 1024 * 1024];
        let mut records = vec![big; 7];
        records.push(b"tail".to_vec());
        outbox.append(&records).unwrap();
        assert!(segments(dir.path()).unwrap().len() >= 2);
        let records = drain(&outbox);
        assert_eq!(records.len(), 8);
        assert_eq!(records[7], b"tail");
        outbox.confirm(outbox.end(), 8).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), [outbox.end().segment]);
        assert_eq!(outbox.pending(), 0);
    }

    #[test]
    fn pending_records_are_counted_across_segments_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let mut records = vec![vec![7u8; 3 * 1024 * 1024]; 7];
        records.push(b"tail".to_vec());
        outbox.append(&records).unwrap();
        let (_, after_first) = Reader::default().read(&outbox, outbox.confirmed()).unwrap().unwrap();
        outbox.confirm(after_first, 1).unwrap();
        outbox.sync().unwrap();
        drop(outbox);

        let outbox = Outbox::open(dir.path()).unwrap();
        assert!(segments(dir.path()).unwrap().len() >= 2);
        assert_eq!(outbox.pending(), 7);
        assert_eq!(drain(&outbox).len(), 7);
    }
}
