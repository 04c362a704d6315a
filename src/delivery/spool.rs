//! The disk spool ([`Builder::spool`](crate::Builder::spool)): records the memory queue cannot
//! take, and records still undelivered when a shutdown's timeout passes, wait in files of a
//! directory until the receiver answers, for this process or the next one started with the
//! same directory.
//!
//! **Files.** `<logger>-<pid>-<n>.spool`: `<logger>` is when the logger opened the spool (ns,
//! 20 digits), so names sort oldest logger first, then in the order its files were made. Each
//! file is written by one logger, which holds an exclusive `flock` on it while its process
//! lives. A logger replays the files it can lock: those that dead processes left. A new file
//! is made as `….spool.tmp`, locked, then renamed; a `.tmp` file is taken for a leftover only
//! when it is a minute old. A file taken from another process is checked to still be the one
//! at its path (not replayed and removed meanwhile).
//!
//! **Order.** Each file holds one logger's records in about the order they were logged: a
//! record logged before a file's first one (a record that was in flight, or in the queue, when
//! later ones went to disk) starts a new file. Replay takes, among one logger's files, the
//! record logged first; and the loggers oldest first.
//!
//! **Layout.** A header: [`MAGIC`], then the replay progress (the offset of the first record
//! the receiver has not accepted) and its CRC-32. Then records, each framed as: its length
//! (`u32`, of what follows the checksum), a CRC-32 of what follows, the logger's sequence
//! number (`u64`), the way its fields are kept ([`Stored`]), and the fields. All little-endian.
//! A frame that fails its checksum is skipped (if it was its length that was hit, what follows
//! does not read as frames either, and the rest of the file goes); one whose length cannot be
//! right (cut short, or past the file) ends what is read of the file. Either is reported in one
//! line, and the records before it are replayed as usual.
//!
//! **Removal.** A record is accepted once the receiver answered 2xx for it, or refused it for
//! what it is. The progress in the header moves past the records accepted in order, and a
//! file is removed once all its records are: a crash between an answer and the header's update
//! replays those records again (at least once).

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::sys::{read_exact_at, try_lock, write_all_at};
use crate::wire::encode::{Stored, prepare};
use crate::wire::fields::{MapRecord, Statics};
use crate::wire::record::{Captured, now_ns};

/// The first bytes of every spool file.
pub(crate) const MAGIC: &[u8; 8] = b"HLSPOOL1";
/// The header: the magic, the progress (`u64`), its CRC-32 (`u32`), four bytes kept zero.
const HEADER: u64 = 24;
/// A frame's length and checksum.
const FRAME_HEAD: usize = 8;
/// The sequence number and the way the fields are kept, before the fields.
const FRAME_META: usize = 9;
/// The largest frame: a longer record is not spooled, and a longer length read back is taken
/// for corruption.
const MAX_FRAME: u64 = 1 << 30;
/// How often the directory is looked through again for files that processes which died since
/// left.
const RESCAN: Duration = Duration::from_secs(5);
/// The most files taken from dead processes at a time: the rest wait for a later look (or for
/// another process).
const MAX_TAKEN: usize = 64;
/// Files of one logger past which a record logged out of order no longer starts a new one.
const MAX_OWN_FILES: usize = 32;
/// How many times a replayed record is put back before it waits behind the others: one
/// record a receiver will not take (a proxy that resets it) does not hold the backlog back.
const MAX_TRIES: u32 = 3;
/// How old a `.tmp` file must be to be a leftover (its maker died before naming it).
const LEFTOVER_AGE: Duration = Duration::from_secs(60);
/// How long a file that could not be read is left alone.
const READ_PAUSE: Duration = Duration::from_secs(5);

/// The file names of the spool: what a logger takes as its own kind of file in the directory.
const SUFFIX: &str = ".spool";
const MAKING: &str = ".spool.tmp";
const SET_ASIDE: &str = ".spool.bad";

/// A record read back from the spool, to be delivered, then [accepted](Spool::accept) or
/// [put back](Spool::put_back).
#[derive(Debug, Clone)]
pub(crate) struct Replayed {
    file: u64,
    index: u64,
    /// Where it stands in the order of replay: its logger's files, then its number there.
    order: (Arc<str>, u64),
    /// How many times it was put back.
    tries: u32,
    /// Its sequence number in this logger, when this logger spooled it (a flush waits for it).
    pub(crate) seq: Option<u64>,
    pub(crate) stored: Stored,
    pub(crate) fields: Vec<u8>,
}

/// What [`Spool::take`] gives.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    pub(crate) records: Vec<Replayed>,
    /// This logger's records that could not be read back (corrupt on disk): lost.
    pub(crate) lost: Vec<u64>,
}

/// Why a record was not written to the spool.
#[derive(Debug)]
pub(crate) enum Unspooled {
    /// The spool is full, or the disk refused it: the record is dropped.
    NoRoom(String),
    /// The record's fields could not be made (the `map_record` hook panicked): it fails.
    Unencodable(String),
}

/// One spool directory, as one logger uses it.
pub(crate) struct Spool {
    dir: PathBuf,
    /// When this logger opened the spool: the start of its files' names.
    group: Arc<str>,
    max_bytes: u64,
    /// A file of this logger is not written past this: it is removed sooner, as its records
    /// are replayed.
    segment_bytes: u64,
    statics: Arc<Statics>,
    map_record: Option<MapRecord>,
    /// How this logger keeps fields (its encoding's way).
    stored: Stored,
    state: Mutex<State>,
    /// Whether records wait to be read (or came back): a check that takes no lock.
    backlog: AtomicBool,
    /// Bytes of this logger's own files: what `max_bytes` bounds.
    bytes: AtomicU64,
    /// When the directory was last looked through (ns since the epoch).
    scanned_ns: AtomicU64,
    /// Records taken and not yet accepted or put back.
    in_flight: AtomicU64,
    /// Set by a shutdown: nothing more is taken.
    closing: AtomicBool,
}

struct State {
    /// In the order of their names.
    files: Vec<SpoolFile>,
    /// Taken records that were not delivered (the receiver is down): read again first, in
    /// the order of replay (unless a record read from a file is older).
    returned: VecDeque<Replayed>,
    /// Records put back [`MAX_TRIES`] times: taken only when nothing else is there.
    parked: VecDeque<Replayed>,
    /// Names this logger holds or set aside: not taken again.
    known: HashSet<OsString>,
    next_id: u64,
    made: u64,
}

struct SpoolFile {
    id: u64,
    path: PathBuf,
    file: File,
    /// The logger that wrote it (its name before the file's number).
    group: Arc<str>,
    /// Written by this logger: its records' sequence numbers are this logger's.
    own: bool,
    /// Whether records are still appended to it (this logger's newest file).
    open: bool,
    /// The lowest sequence number written to it (this logger's files).
    first_seq: Option<u64>,
    /// The end of the last whole record.
    len: u64,
    /// Where the next record to be read starts.
    read_at: u64,
    /// The sequence number of the record at `read_at`, once looked at (`Some(0)` when it
    /// cannot be read: it is read next, and reported).
    peeked: Option<u64>,
    /// Not read before this, after a read error.
    resume_at: Option<Instant>,
    next_index: u64,
    /// Records read and not yet accepted, in order: index, where the record ends, accepted.
    pending: VecDeque<(u64, u64, bool)>,
    /// This logger's records in it not yet read, by sequence number, in file order: those a
    /// corrupt frame costs are known.
    unread: VecDeque<u64>,
}

/// What reading a frame found wrong.
enum Bad {
    /// The frame cannot be right (cut short, a length past the file): nothing after it is
    /// read.
    Rest(&'static str),
    /// The frame's length is plausible but it fails its checksum: it is skipped.
    One(&'static str, u64),
    /// The file could not be read now (an I/O error): later.
    Later(io::Error),
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Appends record `seq`'s frame to `out`: its length, its checksum, then what they cover.
fn frame(seq: u64, stored: Stored, fields: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&((FRAME_META + fields.len()) as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(stored.tag());
    out.extend_from_slice(fields);
    let sum = crc(&out[start + FRAME_HEAD..]);
    out[start + 4..start + 8].copy_from_slice(&sum.to_le_bytes());
}

/// The header of a file whose first record not yet accepted starts at `progress`.
fn header(progress: u64) -> [u8; HEADER as usize] {
    let mut h = [0; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&progress.to_le_bytes());
    h[16..20].copy_from_slice(&crc(&progress.to_le_bytes()).to_le_bytes());
    h
}

/// The progress a header holds: `None` when it is not a spool file's header; the start when
/// the progress is torn.
fn read_header(file: &File) -> io::Result<Option<u64>> {
    let mut h = [0; HEADER as usize];
    match read_exact_at(file, &mut h, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if &h[..8] != MAGIC {
        return Ok(None);
    }
    let progress = u64::from_le_bytes(h[8..16].try_into().unwrap_or_default());
    let sum = u32::from_le_bytes(h[16..20].try_into().unwrap_or_default());
    Ok(Some(if sum == crc(&h[8..16]) {
        progress
    } else {
        HEADER
    }))
}

/// Whether `file` is still what `path` names: not removed (or replaced) since it was opened.
fn still_at(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        path.exists()
    }
}

/// The logger a spool file's name says wrote it: the name before its last `-`.
fn group_of(name: &str) -> &str {
    name.rsplit_once('-').map_or(name, |(group, _)| group)
}

impl Spool {
    /// Opens `dir` for a logger: creates it if need be, checks that a file can be made, locked
    /// and removed there, and takes the files dead processes left. Fails with why the
    /// directory cannot be used.
    pub(crate) fn open(
        dir: PathBuf,
        max_bytes: u64,
        statics: Arc<Statics>,
        map_record: Option<MapRecord>,
        stored: Stored,
    ) -> Result<Spool, String> {
        let shown = dir.display().to_string();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("the spool directory {shown} cannot be created: {e}"))?;
        // A name no logger takes for one of its files, or a leftover.
        let probe = dir.join(format!(".probe-{}-{}", std::process::id(), now_ns()));
        let made = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|file| {
                let written = write_all_at(&file, &header(HEADER), 0).and_then(|()| {
                    try_lock(&file)?
                        .then_some(())
                        .ok_or_else(|| io::Error::other("it could not be locked"))
                });
                let removed = std::fs::remove_file(&probe);
                written.and(removed)
            });
        made.map_err(|e| format!("the spool directory {shown} cannot be written: {e}"))?;
        crate::sys::survive_file_size_limit();
        let spool = Spool {
            dir,
            group: format!("{:020}-{}", now_ns(), std::process::id()).into(),
            max_bytes,
            segment_bytes: (max_bytes / 16).clamp(64 << 10, 16 << 20),
            statics,
            map_record,
            stored,
            state: Mutex::new(State {
                files: Vec::new(),
                returned: VecDeque::new(),
                parked: VecDeque::new(),
                known: HashSet::new(),
                next_id: 0,
                made: 0,
            }),
            backlog: AtomicBool::new(false),
            bytes: AtomicU64::new(0),
            scanned_ns: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        };
        spool.scan(&mut lock(&spool.state));
        Ok(spool)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Encodes each record (through the `map_record` hook) and appends them, in the order
    /// they were logged, in one write. Says for each whether it is on disk now. `strict`:
    /// records logged before any already in this logger's newest file start a new file (the
    /// records a worker or a shutdown spools, older than those handed over earlier); else only
    /// those logged before its first do (the hand-over, whose records come in about the order
    /// they were logged, callers racing).
    pub(crate) fn write_records(
        &self,
        recs: &[&Captured],
        strict: bool,
    ) -> Vec<Result<(), Unspooled>> {
        let mut results: Vec<Result<(), Unspooled>> = Vec::with_capacity(recs.len());
        let mut order: Vec<usize> = (0..recs.len()).collect();
        order.sort_by_key(|&i| recs[i].seq);
        let mut frames = Vec::with_capacity(recs.iter().map(|r| r.bytes() + 512).sum());
        // Where each encoded record's frame ends in `frames`, with its place in `results` and
        // its sequence number.
        let mut ends = Vec::with_capacity(recs.len());
        let mut fields = Vec::new();
        results.resize_with(recs.len(), || Ok(()));
        for i in order {
            let rec = recs[i];
            let encoding = self.stored.encoding();
            match prepare(
                &encoding,
                &self.statics,
                self.map_record.as_ref(),
                rec,
                &mut fields,
            ) {
                Ok(()) if (FRAME_META + fields.len()) as u64 > MAX_FRAME => {
                    results[i] = Err(Unspooled::NoRoom(format!(
                        "a record of {} bytes is too large for the spool",
                        fields.len()
                    )));
                }
                Ok(()) => {
                    frame(rec.seq, self.stored, &fields, &mut frames);
                    ends.push((i, frames.len(), rec.seq));
                }
                Err(why) => results[i] = Err(Unspooled::Unencodable(why)),
            }
        }
        let (written, why) = self.write(&frames, &ends, strict);
        for &(at, ..) in &ends[written..] {
            results[at] = Err(Unspooled::NoRoom(why.clone()));
        }
        results
    }

    /// Appends the longest run of `frames` (ending as `ends` says, in the order they were
    /// logged) that fits within `max_bytes` to this logger's newest file (made when there is
    /// none, when it is full, or when the first record was logged before the file's first, or,
    /// `strict`, before its last). Returns how many frames are written, and why the rest are
    /// not; no part of them is left in a file.
    fn write(&self, frames: &[u8], ends: &[(usize, usize, u64)], strict: bool) -> (usize, String) {
        let full = || {
            format!(
                "the spool {} is full ({} bytes)",
                self.dir.display(),
                self.max_bytes
            )
        };
        let mut state = lock(&self.state);
        let room = self
            .max_bytes
            .saturating_sub(self.bytes.load(Ordering::Acquire));
        let fit = ends.partition_point(|&(_, end, _)| end as u64 <= room);
        if fit == 0 {
            return (0, full());
        }
        let size = ends[fit - 1].1 as u64;
        let first = ends[0].2;
        // Files of this logger: past a few, order gives way (records appended out of order
        // are replayed so) rather than descriptors and files growing with each inversion.
        let own = state.files.iter().filter(|f| f.own).count();
        if let Some(f) = state.files.iter_mut().find(|f| f.open) {
            // The records not yet read must stay in order (strict), or at least not start
            // before the file's first (the hand-over's).
            let bound = if strict {
                f.unread.back().copied()
            } else {
                f.first_seq
            };
            if f.len > HEADER && f.len + size > self.segment_bytes
                || own < MAX_OWN_FILES && bound.is_some_and(|s| first < s)
            {
                f.open = false;
                let id = f.id;
                self.remove_if_done(&mut state, id);
            }
        }
        if !state.files.iter().any(|f| f.open) {
            match self.make_file(&mut state) {
                Ok(made) => state.files.push(made),
                Err(e) => {
                    return (
                        0,
                        format!("no spool file could be made in {}: {e}", self.dir.display()),
                    );
                }
            }
        }
        let Some(f) = state.files.iter_mut().find(|f| f.open) else {
            return (0, "no spool file is open".into());
        };
        let id = f.id;
        let written = self.append_all(f, frames, &ends[..fit]);
        if written.0 < fit && !state.files.iter().any(|f| f.id == id && f.open) {
            // Closed by a write it could not cut back: gone, if nothing in it is left to read.
            self.remove_if_done(&mut state, id);
        }
        match written {
            (n, None) => (n, full()),
            (n, Some(why)) => (n, why),
        }
    }

    /// Appends the frames `ends` says to `f`: all at once; when that fails (the disk is full,
    /// a file size limit), frame by frame, so that what fits still goes. Returns how many are
    /// written, and why no more when the disk refused.
    fn append_all(
        &self,
        f: &mut SpoolFile,
        frames: &[u8],
        ends: &[(usize, usize, u64)],
    ) -> (usize, Option<String>) {
        let failed =
            |e: io::Error| format!("writing to the spool {} failed: {e}", self.dir.display());
        let why = match self.append(f, &frames[..ends[ends.len() - 1].1], ends) {
            Ok(()) => return (ends.len(), None),
            Err(e) => failed(e),
        };
        if ends.len() == 1 || !f.open {
            return (0, Some(why));
        }
        let mut start = 0;
        for (n, end) in ends.iter().enumerate() {
            if let Err(e) = self.append(f, &frames[start..end.1], std::slice::from_ref(end)) {
                return (n, Some(failed(e)));
            }
            start = end.1;
        }
        (ends.len(), None)
    }

    /// Appends `bytes`, the frames `ends` says, to `f`. On an error, cuts what part was
    /// written; if that fails too, nothing more goes to this file (its reader stops at the
    /// torn frame).
    fn append(
        &self,
        f: &mut SpoolFile,
        bytes: &[u8],
        ends: &[(usize, usize, u64)],
    ) -> io::Result<()> {
        if let Err(e) = write_all_at(&f.file, bytes, f.len) {
            if f.file.set_len(f.len).is_err() {
                f.open = false;
            }
            return Err(e);
        }
        f.len += bytes.len() as u64;
        f.unread.extend(ends.iter().map(|&(.., seq)| seq));
        let lowest = ends.iter().map(|&(.., seq)| seq).min();
        f.first_seq = match (f.first_seq, lowest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.bytes.fetch_add(bytes.len() as u64, Ordering::AcqRel);
        self.backlog.store(true, Ordering::Release);
        Ok(())
    }

    /// A new file of this logger's: made under a name no one replays, locked, then named.
    fn make_file(&self, state: &mut State) -> io::Result<SpoolFile> {
        state.made += 1;
        let name = format!("{}-{:06}{SUFFIX}", self.group, state.made);
        let path = self.dir.join(&name);
        let making = self.dir.join(format!("{name}.tmp"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&making)?;
        let ready = try_lock(&file).and_then(|locked| {
            if !locked {
                return Err(io::Error::other("its lock is held"));
            }
            write_all_at(&file, &header(HEADER), 0)?;
            std::fs::rename(&making, &path)
        });
        if let Err(e) = ready {
            let _ = std::fs::remove_file(&making);
            return Err(e);
        }
        self.bytes.fetch_add(HEADER, Ordering::AcqRel);
        state.known.insert(name.into());
        state.next_id += 1;
        Ok(SpoolFile {
            id: state.next_id,
            path,
            file,
            group: self.group.clone(),
            own: true,
            open: true,
            first_seq: None,
            len: HEADER,
            read_at: HEADER,
            peeked: None,
            resume_at: None,
            next_index: 0,
            pending: VecDeque::new(),
            unread: VecDeque::new(),
        })
    }

    /// Takes the files of the directory that dead processes left (those it can lock, up to
    /// [`MAX_TAKEN`] at a time), and removes the `.tmp` files they left, a minute old (their
    /// makers died before naming them, so they hold no record).
    fn scan(&self, state: &mut State) {
        self.scanned_ns.store(now_ns(), Ordering::Release);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        // Oldest first: the files taken are the next to replay.
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        let mut taken = 0;
        for entry in entries {
            let name = entry.file_name();
            let Some(text) = name.to_str() else {
                continue;
            };
            let leftover = text.ends_with(MAKING);
            if !(leftover || text.ends_with(SUFFIX)) || state.known.contains(&name) {
                continue;
            }
            let path = entry.path();
            if leftover {
                let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| {
                    SystemTime::now().duration_since(t).unwrap_or_default() >= LEFTOVER_AGE
                });
                // Only an old one is even opened: a lock taken here on a file being made would
                // fail its maker.
                let free = || {
                    OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .is_ok_and(|f| matches!(try_lock(&f), Ok(true)))
                };
                if old && free() {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            if taken >= MAX_TAKEN {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
                continue;
            };
            if !matches!(try_lock(&file), Ok(true)) || !still_at(&file, &path) {
                continue;
            }
            let Ok(meta) = file.metadata() else {
                continue;
            };
            let progress = match read_header(&file) {
                Ok(Some(progress)) => progress,
                Ok(None) => {
                    let aside = self
                        .dir
                        .join(format!("{text}{}", &SET_ASIDE[SUFFIX.len()..]));
                    eprintln!(
                        "http-logger: {} is not a spool file (no spool header): set aside as {}",
                        path.display(),
                        aside.display()
                    );
                    let _ = std::fs::rename(&path, &aside);
                    state.known.insert(name);
                    continue;
                }
                Err(_) => continue,
            };
            let len = meta.len();
            let group: Arc<str> = group_of(text.trim_end_matches(SUFFIX)).into();
            state.known.insert(name);
            state.next_id += 1;
            let id = state.next_id;
            state.files.push(SpoolFile {
                id,
                path,
                file,
                group,
                own: false,
                open: false,
                first_seq: None,
                len,
                read_at: if (HEADER..=len).contains(&progress) {
                    progress
                } else {
                    HEADER
                },
                peeked: None,
                resume_at: None,
                next_index: 0,
                pending: VecDeque::new(),
                unread: VecDeque::new(),
            });
            // A file with nothing left to replay goes at once.
            self.remove_if_done(state, id);
            taken += 1;
        }
        if taken > 0 {
            state
                .files
                .sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
            self.backlog.store(true, Ordering::Release);
        }
    }

    /// Whether records wait to be replayed. Looks through the directory again now and then,
    /// for files that processes which ended since left.
    pub(crate) fn has_backlog(&self) -> bool {
        let due = now_ns().saturating_sub(self.scanned_ns.load(Ordering::Acquire))
            >= RESCAN.as_nanos() as u64;
        if due {
            if let Ok(mut state) = self.state.try_lock() {
                self.scan(&mut state);
            }
        }
        self.backlog.load(Ordering::Acquire)
    }

    /// Takes up to `max_records` records in the order of replay, within `max_bytes` of fields
    /// (at least one record, whatever its size). Reports a corrupt frame in one line; this
    /// logger's records it cost are in [`Taken::lost`].
    pub(crate) fn take(&self, max_records: usize, max_bytes: usize) -> Taken {
        let mut state = lock(&self.state);
        let mut taken = Taken::default();
        if self.closing.load(Ordering::Acquire) {
            return taken;
        }
        let mut bytes = 0;
        let fits = |taken: &Taken, bytes: usize, size: usize| {
            taken.records.is_empty() || bytes + size <= max_bytes
        };
        while taken.records.len() < max_records {
            // The next in the order of replay: the oldest logger's, its first logged; a
            // record put back, or one read from a file, whichever is older.
            let now = Instant::now();
            let next = state
                .files
                .iter_mut()
                .filter(|f| f.read_at < f.len && f.resume_at.is_none_or(|t| now >= t))
                .map(|f| {
                    let seq = f.peek();
                    ((f.group.clone(), seq), f.id)
                })
                .min();
            let back_first = match (state.returned.front(), &next) {
                (Some(r), Some((order, _))) => r.order <= *order,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let back = if back_first {
                state.returned.pop_front()
            } else if next.is_none() {
                state.parked.pop_front()
            } else {
                None
            };
            if let Some(r) = back {
                if !fits(&taken, bytes, r.fields.len()) {
                    // Back where it came from: a parked record stays behind the others.
                    if back_first {
                        state.returned.push_front(r);
                    } else {
                        state.parked.push_front(r);
                    }
                    break;
                }
                bytes += r.fields.len();
                taken.records.push(r);
                continue;
            }
            let Some((_, id)) = next else {
                break;
            };
            let Some(f) = state.files.iter_mut().find(|f| f.id == id) else {
                break;
            };
            match f.read(|size| fits(&taken, bytes, size)) {
                Ok(Some(r)) => {
                    bytes += r.fields.len();
                    taken.records.push(r);
                }
                Ok(None) => break,
                Err(Bad::Later(e)) => {
                    if f.resume_at.is_none() {
                        eprintln!(
                            "http-logger: spool file {} cannot be read ({e}): tried again later",
                            f.path.display()
                        );
                    }
                    f.resume_at = Some(now + READ_PAUSE);
                    f.peeked = None;
                }
                Err(Bad::One(why, end)) => {
                    eprintln!(
                        "http-logger: spool file {}: {why} at byte {}: that record is skipped",
                        f.path.display(),
                        f.read_at
                    );
                    f.skip_to(end, 1, &mut taken.lost);
                    let id = f.id;
                    self.remove_if_done(&mut state, id);
                }
                Err(Bad::Rest(why)) => {
                    eprintln!(
                        "http-logger: spool file {}: {why} at byte {} of {}; the {} bytes from there are skipped",
                        f.path.display(),
                        f.read_at,
                        f.len,
                        f.len - f.read_at
                    );
                    let (len, all) = (f.len, f.unread.len());
                    f.skip_to(len, all, &mut taken.lost);
                    let id = f.id;
                    self.remove_if_done(&mut state, id);
                }
            }
        }
        let left = !state.returned.is_empty()
            || !state.parked.is_empty()
            || state.files.iter().any(|f| f.read_at < f.len);
        self.backlog.store(left, Ordering::Release);
        self.in_flight
            .fetch_add(taken.records.len() as u64, Ordering::AcqRel);
        taken
    }

    /// At a shutdown: takes nothing more, and waits (until `deadline`) for the records taken
    /// to be accepted or put back.
    pub(crate) fn close(&self, deadline: Instant) {
        // Under the lock: a take under way counts what it took first.
        let state = lock(&self.state);
        self.closing.store(true, Ordering::Release);
        drop(state);
        while self.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// One taken record settled.
    fn settled(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// A record delivered (or refused for what it is): it is not replayed again.
    pub(crate) fn accept(&self, r: &Replayed) {
        // Settled once the progress is written: a shutdown waiting for it then exits with it.
        self.accept_locked(r);
        self.settled();
    }

    fn accept_locked(&self, r: &Replayed) {
        let mut state = lock(&self.state);
        let Some(f) = state.files.iter_mut().find(|f| f.id == r.file) else {
            return;
        };
        let Some(&(first, ..)) = f.pending.front() else {
            return;
        };
        if let Some(entry) = r
            .index
            .checked_sub(first)
            .and_then(|at| f.pending.get_mut(at as usize))
        {
            entry.2 = true;
        }
        let mut progress = None;
        while let Some(&(_, end, true)) = f.pending.front() {
            progress = Some(end);
            f.pending.pop_front();
        }
        if let Some(progress) = progress {
            // Not synced: a crash that loses it replays these records again.
            let _ = write_all_at(&f.file, &header(progress), 0);
        }
        let id = f.id;
        self.remove_if_done(&mut state, id);
    }

    /// A record taken and not delivered: it is taken again first, in the order of replay; or,
    /// put back [`MAX_TRIES`] times, only once nothing else is there.
    pub(crate) fn put_back(&self, mut r: Replayed) {
        let mut state = lock(&self.state);
        r.tries += 1;
        if r.tries >= MAX_TRIES {
            r.tries = 0;
            state.parked.push_back(r);
            self.backlog.store(true, Ordering::Release);
            drop(state);
            self.settled();
            return;
        }
        let at = state
            .returned
            .iter()
            .position(|o| o.order > r.order)
            .unwrap_or(state.returned.len());
        state.returned.insert(at, r);
        self.backlog.store(true, Ordering::Release);
        drop(state);
        self.settled();
    }

    /// Removes file `id` when every record in it was read and accepted (and, for this logger's
    /// newest file, when it holds a record: records are appended to it next).
    fn remove_if_done(&self, state: &mut State, id: u64) {
        let Some(at) = state.files.iter().position(|f| f.id == id) else {
            return;
        };
        let f = &state.files[at];
        let returned = state
            .returned
            .iter()
            .chain(&state.parked)
            .any(|r| r.file == id);
        if f.read_at < f.len || !f.pending.is_empty() || returned || (f.open && f.len == HEADER) {
            return;
        }
        let f = state.files.remove(at);
        // Unlinked while still locked: a process that opened it meanwhile finds it gone.
        let _ = std::fs::remove_file(&f.path);
        if f.own {
            self.bytes.fetch_sub(f.len, Ordering::AcqRel);
        }
    }
}

impl SpoolFile {
    /// The sequence number of the record at `read_at` (0 when it cannot be read: it is read
    /// next, and reported).
    fn peek(&mut self) -> u64 {
        if let Some(seq) = self.peeked {
            return seq;
        }
        let mut head = [0; FRAME_HEAD + 8];
        let seq = if self.len - self.read_at >= head.len() as u64
            && read_exact_at(&self.file, &mut head, self.read_at).is_ok()
        {
            u64::from_le_bytes(head[FRAME_HEAD..].try_into().unwrap_or_default())
        } else {
            0
        };
        self.peeked = Some(seq);
        seq
    }

    /// Moves `read_at` to `end`, past `frames` records: those of this logger are lost.
    fn skip_to(&mut self, end: u64, frames: usize, lost: &mut Vec<u64>) {
        self.read_at = end;
        self.peeked = None;
        let frames = frames.min(self.unread.len());
        lost.extend(self.unread.drain(..frames));
    }

    /// Reads the record at `read_at`, if `fits` its size.
    fn read(&mut self, fits: impl Fn(usize) -> bool) -> Result<Option<Replayed>, Bad> {
        let at = self.read_at;
        if self.len - at < FRAME_HEAD as u64 {
            return Err(Bad::Rest("a torn record"));
        }
        let mut head = [0; FRAME_HEAD];
        read_exact_at(&self.file, &mut head, at).map_err(Bad::Later)?;
        let size = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
        let sum = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if size < FRAME_META as u64 || size > MAX_FRAME {
            return Err(Bad::Rest("a corrupt record length"));
        }
        if self.len - at - (FRAME_HEAD as u64) < size {
            return Err(Bad::Rest("a torn record"));
        }
        if !fits(size as usize - FRAME_META) {
            return Ok(None);
        }
        let end = at + FRAME_HEAD as u64 + size;
        let mut body = vec![0; size as usize];
        read_exact_at(&self.file, &mut body, at + FRAME_HEAD as u64).map_err(Bad::Later)?;
        if crc(&body) != sum {
            return Err(Bad::One("a record that fails its checksum", end));
        }
        let seq = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
        let stored =
            Stored::from_tag(body[8]).ok_or(Bad::One("a record of an unknown kind", end))?;
        body.drain(..FRAME_META);
        let index = self.next_index;
        self.next_index += 1;
        self.read_at = end;
        self.peeked = None;
        self.resume_at = None;
        self.unread.pop_front();
        self.pending.push_back((index, end, false));
        Ok(Some(Replayed {
            file: self.id,
            index,
            order: (self.group.clone(), seq),
            tries: 0,
            seq: self.own.then_some(seq),
            stored,
            fields: body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fields::fixtures::{captured, statics};

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "http-logger-spool-{name}-{}-{}",
            std::process::id(),
            now_ns()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    impl Spool {
        /// Writes one record of these fields.
        fn write_one(&self, seq: u64, stored: Stored, fields: &[u8]) -> Result<(), String> {
            let mut frames = Vec::new();
            frame(seq, stored, fields, &mut frames);
            match self.write(&frames, &[(0, frames.len(), seq)], true) {
                (1, _) => Ok(()),
                (_, why) => Err(why),
            }
        }
    }

    fn open(dir: &Path, max: u64) -> Spool {
        Spool::open(dir.to_owned(), max, Arc::new(statics()), None, Stored::Form).unwrap()
    }

    /// Where the records taken stand in the order of replay: their numbers.
    fn order(records: &[Replayed]) -> Vec<u64> {
        records.iter().map(|r| r.order.1).collect()
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn records_come_back_in_order_and_go_once_accepted() {
        let d = dir("order");
        let spool = open(&d, 1 << 20);
        assert!(files(&d).is_empty(), "no file before the first record");
        assert!(!spool.has_backlog());
        for seq in 0..5u64 {
            spool
                .write_one(seq, Stored::Form, format!("msg={seq}").as_bytes())
                .unwrap();
        }
        assert!(spool.has_backlog());
        let got = spool.take(3, usize::MAX).records;
        let seqs: Vec<_> = got.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [Some(0), Some(1), Some(2)]);
        assert_eq!(got[1].fields, b"msg=1");
        // 1 comes back (not delivered): it goes again before 3.
        spool.accept(&got[0]);
        spool.put_back(got[1].clone());
        spool.accept(&got[2]);
        let again = spool.take(10, usize::MAX).records;
        let seqs: Vec<_> = again.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [Some(1), Some(3), Some(4)]);
        assert!(!spool.has_backlog());
        assert_eq!(files(&d).len(), 1);
        for r in &again {
            spool.accept(r);
        }
        assert!(
            files(&d).is_empty(),
            "removed once every record was accepted"
        );
        assert_eq!(spool.bytes.load(Ordering::SeqCst), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn take_keeps_within_the_bytes_but_takes_at_least_one() {
        let d = dir("bytes");
        let spool = open(&d, 1 << 20);
        for seq in 0..3u64 {
            spool.write_one(seq, Stored::Json, &[b'x'; 100]).unwrap();
        }
        assert_eq!(spool.take(10, 250).records.len(), 2);
        assert_eq!(
            spool.take(10, 10).records.len(),
            1,
            "one, whatever its size"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn past_max_bytes_a_record_is_refused_and_nothing_of_it_is_written() {
        let d = dir("full");
        let spool = open(&d, 200);
        spool.write_one(0, Stored::Form, &[b'a'; 100]).unwrap();
        let err = spool.write_one(1, Stored::Form, &[b'b'; 100]).unwrap_err();
        assert!(err.contains("is full"), "{err}");
        let got = spool.take(10, usize::MAX).records;
        assert_eq!(got.len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn of_records_written_together_those_that_fit_go() {
        let d = dir("together");
        let spool = open(&d, HEADER + 2 * (FRAME_HEAD + FRAME_META + 100) as u64);
        let mut frames = Vec::new();
        let mut ends = Vec::new();
        for seq in 0..3u64 {
            frame(seq, Stored::Form, &[b'x'; 100], &mut frames);
            ends.push((seq as usize, frames.len(), seq));
        }
        let (written, why) = spool.write(&frames, &ends, true);
        assert_eq!(written, 2);
        assert!(why.contains("is full"), "{why}");
        let seqs: Vec<_> = spool
            .take(10, usize::MAX)
            .records
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, [Some(0), Some(1)]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A second logger on the directory (another process, as far as locks go: each open file
    /// holds its own lock).
    #[test]
    fn a_live_loggers_files_are_left_alone_and_a_dead_ones_are_replayed() {
        let d = dir("handover");
        let first = open(&d, 1 << 20);
        first.write_one(7, Stored::Form, b"msg=old").unwrap();
        let second = open(&d, 1 << 20);
        assert!(!second.has_backlog(), "the first logger's file is locked");
        drop(first);
        let mut state = lock(&second.state);
        second.scan(&mut state);
        drop(state);
        let got = second.take(10, usize::MAX).records;
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].seq, &got[0].fields[..]), (None, &b"msg=old"[..]));
        // A third logger cannot take it while the second holds it.
        let third = open(&d, 1 << 20);
        assert!(!third.has_backlog());
        second.accept(&got[0]);
        assert!(files(&d).is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn progress_survives_a_crash_and_a_torn_tail_costs_only_itself() {
        let d = dir("torn");
        let first = open(&d, 1 << 20);
        for seq in 0..4u64 {
            first
                .write_one(seq, Stored::Form, format!("msg={seq}").as_bytes())
                .unwrap();
        }
        let got = first.take(2, usize::MAX).records;
        first.accept(&got[0]);
        first.accept(&got[1]);
        let path = files(&d)[0].clone();
        drop(first);
        // Half a record at the end, as a crash mid-write leaves it.
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        write_all_at(&f, &[30, 0, 0, 0, 1, 2, 3, 4, 9], len).unwrap();
        let second = open(&d, 1 << 20);
        let got = second.take(10, usize::MAX).records;
        let fields: Vec<_> = got.iter().map(|r| r.fields.clone()).collect();
        assert_eq!(
            fields,
            [b"msg=2".to_vec(), b"msg=3".to_vec()],
            "the accepted two are not replayed"
        );
        for r in &got {
            second.accept(r);
        }
        assert!(files(&d).is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_corrupt_record_costs_only_itself_and_a_foreign_file_is_set_aside() {
        let d = dir("corrupt");
        let first = open(&d, 1 << 20);
        for seq in 0..3u64 {
            first.write_one(seq, Stored::Form, b"msg=abc").unwrap();
        }
        let path = files(&d)[0].clone();
        drop(first);
        // A bit flipped in the second record's fields.
        let frame = (FRAME_HEAD + FRAME_META + 7) as u64;
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        write_all_at(&f, b"X", HEADER + frame + frame - 1).unwrap();
        std::fs::write(d.join("00000000000000000001-1-000001.spool"), b"not ours").unwrap();
        std::fs::write(d.join("notes.txt"), b"not ours either").unwrap();
        let second = open(&d, 1 << 20);
        let taken = second.take(10, usize::MAX);
        assert_eq!(
            order(&taken.records),
            [0, 2],
            "the records around the corrupt one"
        );
        assert!(taken.lost.is_empty(), "not this logger's records");
        for r in &taken.records {
            second.accept(r);
        }
        let names: Vec<_> = files(&d)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["00000000000000000001-1-000001.spool.bad", "notes.txt"]
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn this_loggers_records_a_corrupt_frame_costs_are_told() {
        let d = dir("lost");
        let spool = open(&d, 1 << 20);
        for seq in [4u64, 5, 6] {
            spool.write_one(seq, Stored::Form, b"msg=abc").unwrap();
        }
        let frame = (FRAME_HEAD + FRAME_META + 7) as u64;
        let f = OpenOptions::new().write(true).open(&files(&d)[0]).unwrap();
        // The middle record's checksum, then the last record's length.
        write_all_at(&f, b"\xff", HEADER + frame + 4).unwrap();
        write_all_at(&f, &[0xff, 0xff, 0xff, 0x7f], HEADER + 2 * frame).unwrap();
        let taken = spool.take(10, usize::MAX);
        let got: Vec<_> = taken.records.iter().map(|r| r.seq).collect();
        assert_eq!(got, [Some(4)]);
        assert_eq!(taken.lost, [5, 6]);
        spool.accept(&taken.records[0]);
        assert!(files(&d).is_empty(), "{:?}", files(&d));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn records_come_back_in_the_order_they_were_logged_across_files() {
        let d = dir("logged-order");
        let first = open(&d, 1 << 20);
        // What the full queue handed over goes first; the queue's, older, at the shutdown;
        // the one in flight last.
        for seq in 10..15u64 {
            first.write_one(seq, Stored::Form, b"msg=h").unwrap();
        }
        for seq in [1u64, 2, 3, 15] {
            first.write_one(seq, Stored::Form, b"msg=q").unwrap();
        }
        first.write_one(0, Stored::Form, b"msg=f").unwrap();
        assert_eq!(
            files(&d).len(),
            3,
            "a record logged before a file's first starts one"
        );
        // By this logger, and by the next process (nothing was accepted).
        let want = [0, 1, 2, 3, 10, 11, 12, 13, 14, 15];
        assert_eq!(order(&first.take(100, usize::MAX).records), want);
        drop(first);
        let second = open(&d, 1 << 20);
        assert_eq!(order(&second.take(100, usize::MAX).records), want);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A worker's record older than some not yet read in the newest file (the queue's 2..7,
    /// then the look-ahead's 1, after the one in flight, 0): replayed in order still.
    #[test]
    fn a_record_between_a_files_first_and_last_is_replayed_in_order() {
        let d = dir("between");
        let spool = open(&d, 1 << 20);
        for seq in (8..12u64).chain([0]).chain(2..8).chain([1]) {
            spool.write_one(seq, Stored::Form, b"msg=x").unwrap();
        }
        assert_eq!(
            order(&spool.take(100, usize::MAX).records),
            (0..12).collect::<Vec<_>>()
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A record put back does not jump one logged before it that reached the spool after it
    /// was taken (another worker's, out of retries).
    #[test]
    fn a_put_back_record_does_not_jump_an_older_one() {
        let d = dir("returned");
        let spool = open(&d, 1 << 20);
        spool.write_one(5, Stored::Form, b"msg=5").unwrap();
        let got = spool.take(1, usize::MAX).records;
        spool.write_one(3, Stored::Form, b"msg=3").unwrap();
        spool.put_back(got[0].clone());
        assert_eq!(order(&spool.take(100, usize::MAX).records), [3, 5]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A record put back again and again waits behind the others, then comes again.
    #[test]
    fn a_record_put_back_too_often_waits_behind_the_others() {
        let d = dir("parked");
        let spool = open(&d, 1 << 20);
        for seq in 0..3u64 {
            spool.write_one(seq, Stored::Form, b"msg=x").unwrap();
        }
        for _ in 0..MAX_TRIES {
            let first = spool.take(1, usize::MAX).records;
            assert_eq!(first[0].order.1, 0);
            spool.put_back(first[0].clone());
        }
        assert_eq!(order(&spool.take(2, usize::MAX).records), [1, 2]);
        assert_eq!(
            order(&spool.take(2, usize::MAX).records),
            [0],
            "and then it comes again"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_parked_record_that_does_not_fit_a_batch_stays_parked() {
        let d = dir("parked-fit");
        let spool = open(&d, 1 << 20);
        spool.write_one(0, Stored::Form, &[b'x'; 100]).unwrap();
        spool.write_one(1, Stored::Form, b"msg=1").unwrap();
        for _ in 0..MAX_TRIES {
            let first = spool.take(1, usize::MAX).records;
            spool.put_back(first[0].clone());
        }
        let got = spool.take(10, 10).records;
        assert_eq!(order(&got), [1]);
        spool.accept(&got[0]);
        spool.write_one(2, Stored::Form, b"msg=2").unwrap();
        assert_eq!(order(&spool.take(10, usize::MAX).records), [2, 0]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_tmp_file_is_a_leftover_only_when_a_minute_old() {
        let d = dir("tmp");
        std::fs::create_dir_all(&d).unwrap();
        let fresh = d.join("00000000000000000001-1-000001.spool.tmp");
        let old = d.join("00000000000000000002-1-000001.spool.tmp");
        std::fs::write(&fresh, b"").unwrap();
        let f = File::create(&old).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(120))
            .unwrap();
        drop(f);
        let _spool = open(&d, 1 << 20);
        assert!(fresh.exists(), "being made, maybe, by a live process");
        assert!(!old.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Another logger's looks through the directory (another process's, as far as locks go)
    /// never fail a build or a file being made.
    #[test]
    fn a_concurrent_scan_fails_no_build_and_no_write() {
        let d = dir("scan-race");
        let scanner = Arc::new(open(&d, 1 << 20));
        let stop = Arc::new(AtomicBool::new(false));
        let scanning = {
            let (scanner, stop) = (scanner.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    scanner.scan(&mut lock(&scanner.state));
                }
            })
        };
        let writer = open(&d, 1 << 20);
        let mut errors = Vec::new();
        for seq in 0..2000u64 {
            if let Err(e) = Spool::open(d.clone(), 1 << 20, Arc::new(statics()), None, Stored::Form)
            {
                errors.push(e);
            }
            match writer.write_one(seq, Stored::Form, b"msg=x") {
                Ok(()) => {
                    // Delivered at once: the file goes, and the next write makes a new one.
                    for r in writer.take(10, usize::MAX).records {
                        writer.accept(&r);
                    }
                }
                Err(why) => errors.push(why),
            }
        }
        stop.store(true, Ordering::Relaxed);
        scanning.join().unwrap();
        assert!(
            errors.is_empty(),
            "{} failed, e.g. {:?}",
            errors.len(),
            errors.first()
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_an_error() {
        let d = dir("unmakeable");
        std::fs::write(&d, b"a file").unwrap();
        let err = Spool::open(
            d.join("sub"),
            1 << 20,
            Arc::new(statics()),
            None,
            Stored::Form,
        )
        .err()
        .unwrap();
        assert!(err.contains("cannot be created"), "{err}");
        std::fs::remove_file(&d).unwrap();
    }

    #[test]
    fn a_record_is_written_with_its_fields_through_the_hook() {
        let d = dir("hook");
        let hook: MapRecord = Arc::new(|f: &mut crate::Fields| f.set("service", "billing"));
        let spool = Spool::open(
            d.clone(),
            1 << 20,
            Arc::new(statics()),
            Some(hook),
            Stored::Json,
        )
        .unwrap();
        let kvs: &[(&str, &str)] = &[];
        let mut rec = captured(&kvs, None, None);
        rec.seq = 41;
        assert!(matches!(spool.write_records(&[&rec], true)[..], [Ok(())]));
        let got = spool.take(1, usize::MAX).records;
        assert_eq!(got[0].seq, Some(41));
        assert_eq!(got[0].stored, Stored::Json);
        let text = String::from_utf8(got[0].fields.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"name":"app::net""#) && text.contains(r#""service":"billing""#),
            "{text}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
