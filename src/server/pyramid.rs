//! PYME's distributed image pyramid, the node's part (`PartialPyramid` in PYME's
//! `distributed_pyramid.py`, served by `HTTPDataServer`'s `__pyramid_*` handlers):
//!
//! - `PUT /__pyramid_create/<dir>` with `{"pyramid_tile_size": N, "chunk_shape": [a, b, c]}`
//!   starts a pyramid in `<dir>` (sent to every node of the cluster);
//! - `PUT /__pyramid_update_tile/<dir>?x=&y=&tox=&toy=&fox=&foy=&fsx=&fsy=` with a PZF
//!   chunk of a frame adds it to base tile (`x`, `y`) with PYME's edge-feathering
//!   weights (`ImagePyramid.frame_weights` of the frame's shape `fsx` x `fsy`): the
//!   weighted pixels are added to the tile's sum, the weights to its occupancy;
//! - `PUT /__pyramid_finish/<dir>` divides sum by occupancy into the base tiles and
//!   builds the levels above them as far as the chunk shape allows (PYME's
//!   `PartialPyramid.update_pyramid`), before it answers.
//!
//! The tiles are stored as PYME's server stores them, `<dir>/<level>/000/<x:03>/<y:03>_img.pzf`
//! (float32, raw PZF, the new key schema of `tile_pyramid.py`), with the same
//! arithmetic (float64 until the tile is written), so that PYME's `ImagePyramid`
//! reads the same tiles from our node as from PYME's.
//!
//! The state between create and finish lives in the pyramid's folder, so it survives
//! a restart: `.pyme-pyramid/pyramid.json` (the parameters, finished or not) and
//! `.pyme-pyramid/tiles/<x>_<y>` (a base tile's sum then occupancy, float64
//! little-endian), each replaced whole by a rename, never half-written. The finish
//! writes the tiles, marks the pyramid finished, and removes `tiles/`.
//!
//! Requests for one pyramid are serialised (a lock per folder in use); different
//! pyramids go on in parallel.
//!
//! Who may change a pyramid's files: once a pyramid is created in `<dir>`, its level
//! folders (`<dir>/0/`, `<dir>/1/`, ...: a segment of digits right under it) and
//! everything in them are the pyramid's; only `__pyramid_*` operations write there.
//! A plain PUT, a mirror or an `__aggregate_txt` of such a name is refused (409, see
//! `claim`, which the store asks under the same per-folder lock just before a
//! file is named or appended to, so a create racing a PUT is ordered). A create is
//! refused (409) where a level folder already holds a file (a write-once file the
//! pyramid did not make, or an appended log): so a finish never replaces a file it
//! did not make, and no tile is ever appended to.
//!
//! With `sync` (the server's `--fsync`), every file written is synced before it is
//! renamed into place, and every folder whose entries changed is synced with the chain
//! of folders above it up to the root, before the answer: a create's folders before
//! its state, a finish's tiles before the state that marks it finished, so that a
//! power cut never leaves a state that promises what is not on the disk.
//!
//! What this module may not do: touch sockets or HTTP framing (it gets the body's
//! bytes and returns an answer), write outside the pyramid's folder, or follow a link
//! out of the storage root. Portable: no system call beyond `std::fs` (and the
//! folder sync of `fs.rs`, which Windows does without).

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

use super::fs::{sync_folder, temp_path};
use crate::pzf::{self, DataFormat, DimOrder, EncodeParams};

/// The largest body a pyramid operation takes: a whole tile of the largest size, in
/// float32, raw, with its header (PYME sends tiles raw).
pub const MAX_BODY_BYTES: u64 = 64 + 4 * (MAX_TILE_SIZE as u64) * (MAX_TILE_SIZE as u64);
/// The largest tile side accepted (PYME's default is 256): a base tile's state is
/// 16 bytes per pixel, 64 MiB at this size.
pub const MAX_TILE_SIZE: u32 = 2048;
/// Where a pyramid's state is kept, inside its folder (no request name may start a
/// segment with `.pyme-`, so no client can write or overwrite it).
pub const STATE_DIR: &str = ".pyme-pyramid";
const STATE_FILE: &str = "pyramid.json";
const TILES_DIR: &str = "tiles";
/// PYME's tile size and chunk shape when the create body leaves them out.
const DEFAULT_TILE_SIZE: u32 = 256;
const DEFAULT_CHUNK_SHAPE: [u32; 3] = [8, 8, 1];

/// What a pyramid operation answers (the connection writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Answer {
    fn ok() -> Answer {
        Answer {
            code: 200,
            content_type: "text/plain; charset=utf-8",
            body: Vec::new(),
        }
    }

    fn error(code: u16, message: impl Into<String>) -> Answer {
        let mut body = message.into().into_bytes();
        body.push(b'\n');
        Answer {
            code,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

/// The pyramid operations, by the first segment of the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    UpdateTile,
    Finish,
}

impl Operation {
    /// `__pyramid_create` and so on; `None` for any other name.
    pub fn from_name(name: &str) -> Option<Operation> {
        match name {
            "__pyramid_create" => Some(Operation::Create),
            "__pyramid_update_tile" => Some(Operation::UpdateTile),
            "__pyramid_finish" => Some(Operation::Finish),
            _ => None,
        }
    }
}

/// Runs the pyramid operation `name` (the request's first path segment, starting with
/// `__pyramid`) on the pyramid in `dir` (the rest of the path, already judged by the
/// name rule) under `root` (canonical), with the query (after `?`) and body. With
/// `sync` (the server's `--fsync`) what it wrote is on the disk before it returns (see
/// the module documentation).
///
/// Errors are the storage's (the caller answers them as for any file: 403 for a link
/// out of the root, 507 for a full disk, 500 otherwise); every refusal of the
/// request itself is an [`Answer`].
pub fn handle(
    root: &Path,
    name: &str,
    dir: &str,
    query: Option<&str>,
    body: &[u8],
    sync: bool,
) -> io::Result<Answer> {
    let Some(operation) = Operation::from_name(name) else {
        return Ok(Answer::error(
            404,
            format!("No pyramid operation {name:?} (there are __pyramid_create, __pyramid_update_tile and __pyramid_finish)."),
        ));
    };
    if dir.is_empty() {
        return Ok(Answer::error(
            400,
            "A pyramid operation needs a folder: /__pyramid_create/<folder>.",
        ));
    }
    if operation != Operation::UpdateTile && query.is_some() {
        return Ok(Answer::error(
            400,
            "Only __pyramid_update_tile takes a query.",
        ));
    }
    let folder = root.join(dir);
    let _held = hold(&folder);
    let mut syncs = Syncs::new(root, sync);
    match operation {
        Operation::Create => create(root, &folder, body, &mut syncs),
        Operation::UpdateTile => {
            let tile = match TileQuery::parse(query.unwrap_or("")) {
                Ok(tile) => tile,
                Err(reason) => return Ok(Answer::error(400, format!("Bad tile query: {reason}."))),
            };
            update_tile(root, &folder, &tile, body, &mut syncs)
        }
        Operation::Finish => finish(root, &folder, &mut syncs),
    }
}

/// A folder's lock, shared or exclusive: pyramid operations hold it exclusive (one at
/// a time per pyramid); plain writes that could land in a pyramid's level folders
/// hold it shared ([`claim`]), so they go on in parallel and only a create waits for
/// them (and they for it).
#[derive(Default)]
struct LockState {
    shared: usize,
    exclusive: bool,
    /// Exclusive holders waiting: new shared holders wait behind them, so that a
    /// stream of writes never starves a create.
    exclusive_waiting: usize,
}

type FolderLock = Arc<(Mutex<LockState>, Condvar)>;
type Locks = Mutex<HashMap<PathBuf, FolderLock>>;
static LOCKS: OnceLock<Locks> = OnceLock::new();

/// The lock of one pyramid folder. Entries nobody holds or waits for are dropped on
/// the way, so the table holds only the folders in use (requests naming random
/// folders do not make it grow).
fn lock_for(folder: &Path) -> FolderLock {
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    locks.retain(|_, lock| Arc::strong_count(lock) > 1);
    Arc::clone(locks.entry(folder.to_owned()).or_default())
}

/// A held lock of one pyramid folder, released when dropped (an owned guard, so a
/// store can keep several across its own steps).
struct Held {
    lock: FolderLock,
    shared: bool,
}

/// The folder's lock, exclusive (a pyramid operation).
fn hold(folder: &Path) -> Held {
    let lock = lock_for(folder);
    {
        let (state, changed) = &*lock;
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        state.exclusive_waiting += 1;
        while state.exclusive || state.shared > 0 {
            state = changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.exclusive_waiting -= 1;
        state.exclusive = true;
    }
    Held {
        lock,
        shared: false,
    }
}

/// The folder's lock, shared (a plain write, see [`claim`]).
fn hold_shared(folder: &Path) -> Held {
    let lock = lock_for(folder);
    {
        let (state, changed) = &*lock;
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        while state.exclusive || state.exclusive_waiting > 0 {
            state = changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.shared += 1;
    }
    Held { lock, shared: true }
}

impl Drop for Held {
    fn drop(&mut self) {
        let (state, changed) = &*self.lock;
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        match self.shared {
            true => state.shared -= 1,
            false => state.exclusive = false,
        }
        drop(state);
        changed.notify_all();
    }
}

/// A level folder's name: digits only (`0`, `1`, ...).
fn is_level(segment: &std::ffi::OsStr) -> bool {
    let segment = segment.as_encoded_bytes();
    !segment.is_empty() && segment.iter().all(u8::is_ascii_digit)
}

/// Whether the level folder `segment` is one this node's pyramid builds (the base
/// and the levels [`State::max_levels`] allows): PYME's microscope-side pyramid
/// writes the levels above those with plain PUTs (`ClusterPZFTileIO`), which stay
/// allowed.
fn owned_level(segment: &std::ffi::OsStr, max_levels: u32) -> bool {
    let digits = segment.to_string_lossy();
    // A number too long to parse is far above any level a node builds.
    digits
        .parse::<u64>()
        .is_ok_and(|level| level <= u64::from(max_levels))
}

/// Leave to change `path` (a file under `root`, both as the store resolved them) by
/// a plain write (PUT, mirror, `__aggregate_txt`): `None` when the name belongs to a
/// pyramid (it is in a level folder that this node's pyramid builds, in a folder
/// where a pyramid was created; levels above those are PYME's to write). The
/// returned claim holds the lock of every folder that could be such a pyramid
/// (shared: plain writes go on in parallel), so no create can start there until the
/// write is done: hold it until the file is named or appended to.
pub(crate) fn claim(root: &Path, path: &Path) -> Option<Claim> {
    let mut held = Vec::new();
    let Ok(relative) = path.strip_prefix(root) else {
        return Some(Claim(held));
    };
    let segments: Vec<_> = relative.iter().collect();
    // Most names have no level folder in them: no lock, no look.
    if !segments.iter().skip(1).any(|segment| is_level(segment)) {
        return Some(Claim(held));
    }
    let mut folder = root.to_owned();
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 && is_level(segment) {
            let lock = hold_shared(&folder);
            if state_path(&folder).is_file() {
                // An unreadable state: refused, as a tile name would be.
                let owned = match fs::read(state_path(&folder)).map(|b| State::from_json(&b)) {
                    Ok(Ok(state)) => owned_level(segment, state.max_levels()),
                    _ => true,
                };
                if owned {
                    return None;
                }
            }
            held.push(lock);
        }
        folder.push(segment);
    }
    Some(Claim(held))
}

/// See [`claim`].
pub(crate) struct Claim(#[allow(dead_code)] Vec<Held>);

/// Whether a level folder of `folder` that a pyramid of `max_levels` builds holds
/// anything but folders (and the hidden temporaries of writes that [`claim`] will
/// refuse).
fn level_folders_hold_files(folder: &Path, max_levels: u32) -> io::Result<bool> {
    fn holds_files(dir: &Path) -> io::Result<bool> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().as_encoded_bytes().starts_with(b".pyme-") {
                continue;
            }
            if !entry.file_type()?.is_dir() || holds_files(&entry.path())? {
                return Ok(true);
            }
        }
        Ok(false)
    }
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound || is_not_a_directory(&e) => {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !is_level(&entry.file_name()) || !owned_level(&entry.file_name(), max_levels) {
            continue;
        }
        if !entry.file_type()?.is_dir() || holds_files(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

// ---- parameters and state ------------------------------------------------------

/// A pyramid's parameters and whether it is finished (`pyramid.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    tile_size: u32,
    chunk_shape: Vec<u32>,
    finished: bool,
}

impl State {
    /// The create body: PYME's `PartialPyramid` keyword arguments, as JSON.
    fn from_create_body(body: &[u8]) -> Result<State, String> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON ({e})"))?;
        let object = value.as_object().ok_or("the body is not a JSON object")?;
        let mut state = State {
            tile_size: DEFAULT_TILE_SIZE,
            chunk_shape: DEFAULT_CHUNK_SHAPE.to_vec(),
            finished: false,
        };
        for (key, value) in object {
            match key.as_str() {
                "pyramid_tile_size" => {
                    state.tile_size = value
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or("pyramid_tile_size is not a whole number")?;
                }
                "chunk_shape" => {
                    let list = value.as_array().ok_or("chunk_shape is not a list")?;
                    state.chunk_shape = list
                        .iter()
                        .map(|n| n.as_u64().and_then(|n| u32::try_from(n).ok()))
                        .collect::<Option<Vec<u32>>>()
                        .ok_or("chunk_shape holds something other than whole numbers")?;
                }
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        let size = state.tile_size;
        if size < 2 || size % 2 != 0 || size > MAX_TILE_SIZE {
            return Err(format!(
                "pyramid_tile_size must be even, 2 to {MAX_TILE_SIZE} (levels halve tiles)"
            ));
        }
        let shape = &state.chunk_shape;
        if !(2..=3).contains(&shape.len()) || shape.contains(&0) {
            return Err("chunk_shape must be 2 or 3 numbers, each at least 1".into());
        }
        Ok(state)
    }

    fn to_json(&self) -> String {
        serde_json::json!({
            "pyramid_tile_size": self.tile_size,
            "chunk_shape": self.chunk_shape,
            "finished": self.finished,
        })
        .to_string()
    }

    fn from_json(bytes: &[u8]) -> io::Result<State> {
        let bad = |what: &str| {
            io::Error::new(io::ErrorKind::InvalidData, format!("pyramid state: {what}"))
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|_| bad("not JSON"))?;
        let number = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        Ok(State {
            tile_size: number(&value["pyramid_tile_size"]).ok_or_else(|| bad("tile size"))?,
            chunk_shape: value["chunk_shape"]
                .as_array()
                .and_then(|list| list.iter().map(number).collect())
                .ok_or_else(|| bad("chunk shape"))?,
            finished: value["finished"].as_bool().ok_or_else(|| bad("finished"))?,
        })
    }

    /// How many levels above the base this node builds at most: PYME builds level
    /// `i + 1` while `i < log2(min(chunk x, chunk y))`, that is while `2^i` is less
    /// than the smaller side.
    fn max_levels(&self) -> u32 {
        let side = u64::from(self.chunk_shape[0].min(self.chunk_shape[1]));
        (0..64).take_while(|&i| (1u64 << i) < side).count() as u32
    }
}

fn state_path(folder: &Path) -> PathBuf {
    folder.join(STATE_DIR).join(STATE_FILE)
}

fn tiles_dir(folder: &Path) -> PathBuf {
    folder.join(STATE_DIR).join(TILES_DIR)
}

/// The pyramid's state, `None` when none was created in `folder`.
fn read_state(root: &Path, folder: &Path) -> io::Result<Option<State>> {
    match confined(root, folder) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    match fs::read(state_path(folder)) {
        Ok(bytes) => State::from_json(&bytes).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound || is_not_a_directory(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Refuses `path` if, links followed, it is not under `root` (`NotFound` if it does
/// not exist).
fn confined(root: &Path, path: &Path) -> io::Result<()> {
    if path.canonicalize()?.starts_with(root) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the pyramid's folder leads out of the storage root",
        ))
    }
}

fn is_not_a_directory(error: &io::Error) -> bool {
    #[cfg(unix)]
    if error.raw_os_error() == Some(libc::ENOTDIR) {
        return true;
    }
    // ERROR_DIRECTORY, ERROR_PATH_NOT_FOUND
    #[cfg(windows)]
    if matches!(error.raw_os_error(), Some(267) | Some(3)) {
        return true;
    }
    let _ = error;
    false
}

/// What must be synced before an answer, under `--fsync`: file data as it is
/// written, and the folders whose entries changed, each with the chain above it.
struct Syncs<'a> {
    root: &'a Path,
    on: bool,
    changed: BTreeSet<PathBuf>,
}

impl<'a> Syncs<'a> {
    fn new(root: &'a Path, on: bool) -> Syncs<'a> {
        Syncs {
            root,
            on,
            changed: BTreeSet::new(),
        }
    }

    /// A file's data, before the file is given its name.
    fn data(&self, file: &File) -> io::Result<()> {
        if self.on {
            file.sync_data()?;
        }
        Ok(())
    }

    /// `folder`'s entries changed (a name made or moved in it, or it was made).
    fn changed(&mut self, folder: &Path) {
        if self.on {
            self.changed.insert(folder.to_owned());
        }
    }

    /// Syncs every changed folder and each folder above it up to the root (so that
    /// each one's entry in its parent is on the disk too), each once.
    fn commit(&mut self) -> io::Result<()> {
        let mut done = BTreeSet::new();
        for folder in std::mem::take(&mut self.changed) {
            let mut current = folder.as_path();
            while current.starts_with(self.root) && done.insert(current.to_owned()) {
                sync_folder(current)?;
                match current.parent() {
                    Some(parent) if current != self.root => current = parent,
                    _ => break,
                }
            }
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` whole: into a temporary file beside it (its data synced
/// under `--fsync`), then renamed over it.
fn replace_file(path: &Path, bytes: &[u8], syncs: &mut Syncs<'_>) -> io::Result<()> {
    let parent = path.parent().expect("a file in a folder");
    let temp = temp_path(parent);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            syncs.data(&file)
        });
    let renamed = written.and_then(|()| fs::rename(&temp, path));
    if renamed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    syncs.changed(parent);
    renamed
}

// ---- create ---------------------------------------------------------------------

fn create(root: &Path, folder: &Path, body: &[u8], syncs: &mut Syncs<'_>) -> io::Result<Answer> {
    let state = match State::from_create_body(body) {
        Ok(state) => state,
        Err(reason) => {
            return Ok(Answer::error(
                400,
                format!("Bad pyramid parameters: {reason}."),
            ))
        }
    };
    if let Some(existing) = read_state(root, folder)? {
        return Ok(if existing.finished {
            Answer::error(409, "A finished pyramid is in this folder.")
        } else if existing.tile_size != state.tile_size || existing.chunk_shape != state.chunk_shape
        {
            Answer::error(
                409,
                "A pyramid with other parameters is being built in this folder.",
            )
        } else {
            // The same create again (a client's retry): the tiles so far are kept.
            Answer::ok()
        });
    }
    if folder.exists() && !folder.is_dir() {
        return Ok(Answer::error(409, "A file of this name exists."));
    }
    if level_folders_hold_files(folder, state.max_levels())? {
        return Ok(Answer::error(
            409,
            "The folder's level folders (0/, 1/, ...) hold files a pyramid did not make; a pyramid never replaces them.",
        ));
    }
    // A folder removed (by a cleaner of empty folders) while the create makes them
    // is made again, as the store does for files, up to this many times; then the
    // error stands (a 500).
    const ATTEMPTS: usize = 64;
    for attempt in 1..=ATTEMPTS {
        match make(root, folder, &state, syncs) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < ATTEMPTS => continue,
            made => return made.map(|()| Answer::ok()),
        }
    }
    unreachable!("the last attempt returns")
}

/// The folders and the state file of a new pyramid.
fn make(root: &Path, folder: &Path, state: &State, syncs: &mut Syncs<'_>) -> io::Result<()> {
    // The part that exists must be inside the root before anything is made under it.
    let mut existing = folder;
    while !existing.exists() {
        existing = existing.parent().unwrap_or(root);
    }
    confined(root, existing)?;
    fs::create_dir_all(tiles_dir(folder))?;
    confined(root, folder)?;
    // The folders first: a state on the disk without its tiles folder would refuse
    // every tile after a power cut.
    syncs.changed(&tiles_dir(folder));
    syncs.commit()?;
    replace_file(&state_path(folder), state.to_json().as_bytes(), syncs)?;
    syncs.commit()
}

// ---- update_tile ------------------------------------------------------------------

/// The query of `__pyramid_update_tile`, as PYME's `DistributedImagePyramid` sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileQuery {
    /// The base tile (`x`, `y`).
    pub x: u32,
    pub y: u32,
    /// Where the chunk goes in the tile (`tox`, `toy`; default 0).
    pub tile_offset: (u32, u32),
    /// Where the chunk comes from in its frame (`fox`, `foy`; default 0).
    pub frame_offset: (u32, u32),
    /// The frame's shape (`fsx`, `fsy`), which sets the weights.
    pub frame_shape: (u32, u32),
}

impl TileQuery {
    /// Parses `x=1&y=2&...`: each key once, whole numbers from 0 to 10^9, `x`, `y`,
    /// `fsx` and `fsy` required; `weights`, if given, must be `auto` (PYME's
    /// distributed pyramid has no other).
    pub fn parse(query: &str) -> Result<TileQuery, String> {
        let mut values: [Option<u32>; 8] = [None; 8];
        const KEYS: [&str; 8] = ["x", "y", "tox", "toy", "fox", "foy", "fsx", "fsy"];
        let mut weights_seen = false;
        for pair in query.split('&') {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            if key == "weights" {
                if weights_seen {
                    return Err("weights is given twice".into());
                }
                weights_seen = true;
                if value != "auto" {
                    return Err("weights must be auto".into());
                }
                continue;
            }
            let index = KEYS
                .iter()
                .position(|k| *k == key)
                .ok_or_else(|| format!("unknown key {key:?}"))?;
            if values[index].is_some() {
                return Err(format!("{key} is given twice"));
            }
            let number = (!value.is_empty()
                && value.len() <= 10
                && value.bytes().all(|b| b.is_ascii_digit()))
            .then(|| value.parse::<u32>().ok())
            .flatten()
            .filter(|&n| n <= 1_000_000_000)
            .ok_or_else(|| format!("{key}={value:?} is not a whole number from 0 to 10^9"))?;
            values[index] = Some(number);
        }
        let required = |i: usize| values[i].ok_or_else(|| format!("{} is missing", KEYS[i]));
        let optional = |i: usize| values[i].unwrap_or(0);
        Ok(TileQuery {
            x: required(0)?,
            y: required(1)?,
            tile_offset: (optional(2), optional(3)),
            frame_offset: (optional(4), optional(5)),
            frame_shape: (required(6)?, required(7)?),
        })
    }
}

/// A decoded chunk: `rows` x `cols` pixels as float64, row-major.
struct Chunk {
    rows: usize,
    cols: usize,
    pixels: Vec<f64>,
}

fn decode_chunk(body: &[u8]) -> Result<Chunk, String> {
    let (header, bytes) = pzf::decode(body).map_err(|e| e.to_string())?;
    if header.depth != 1 {
        return Err(format!(
            "the tile has depth {}; pyramids take 2-D tiles",
            header.depth
        ));
    }
    let (rows, cols) = (header.width as usize, header.height as usize);
    let values: Vec<f64> = match header.format {
        DataFormat::U8 => bytes.iter().map(|&b| f64::from(b)).collect(),
        DataFormat::U16 => bytes
            .chunks_exact(2)
            .map(|b| f64::from(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        DataFormat::F32 => bytes
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
    };
    let pixels = match header.order {
        DimOrder::C => values,
        // Column-major: element (r, c) is at r + c * rows.
        DimOrder::F => {
            let mut out = vec![0.0; values.len()];
            for r in 0..rows {
                for c in 0..cols {
                    out[r * cols + c] = values[r + c * rows];
                }
            }
            out
        }
    };
    Ok(Chunk { rows, cols, pixels })
}

/// numpy's `linspace(start, stop, n)`: `i * step + start`, the last exactly `stop`.
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut out: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    if let Some(last) = out.last_mut() {
        *last = stop;
    }
    out
}

/// PYME's `ImagePyramid.frame_weights` for a `rows` x `cols` frame: 1 inside, ramps
/// of `min(100, rows / 4)` pixels at all four edges (the ramp length is set by the
/// rows for both directions), multiplied in PYME's order. Computed per pixel, not as
/// a whole frame (a frame may be far larger than the chunk).
struct FrameWeights {
    rows: usize,
    cols: usize,
    up: Vec<f64>,
    down: Vec<f64>,
}

impl FrameWeights {
    /// `None` where PYME's own computation fails (a ramp of 0 pixels, or one longer
    /// than the columns).
    fn new(rows: usize, cols: usize) -> Option<FrameWeights> {
        let ramp = 100.min(rows / 4);
        if ramp == 0 || ramp > cols {
            return None;
        }
        Some(FrameWeights {
            rows,
            cols,
            up: linspace(0.0, 1.0, ramp),
            down: linspace(1.0, 0.0, ramp),
        })
    }

    /// The ramp-up and ramp-down factors of index `i` along a side of `n` pixels.
    fn factors(&self, i: usize, n: usize) -> (f64, f64) {
        let ramp = self.up.len();
        let first = if i < ramp { self.up[i] } else { 1.0 };
        let last = if i >= n - ramp {
            self.down[i - (n - ramp)]
        } else {
            1.0
        };
        (first, last)
    }

    /// The weight of frame pixel (`r`, `c`): PYME multiplies the rows' two ramps,
    /// then the columns' two, in that order.
    fn at(&self, r: usize, c: usize) -> f64 {
        let (r1, r2) = self.factors(r, self.rows);
        let (c1, c2) = self.factors(c, self.cols);
        1.0 * r1 * r2 * c1 * c2
    }
}

fn tile_state_path(folder: &Path, x: u32, y: u32) -> PathBuf {
    tiles_dir(folder).join(format!("{x}_{y}"))
}

/// A base tile's sum and occupancy (zeros when it has none yet).
fn read_tile_state(
    folder: &Path,
    x: u32,
    y: u32,
    pixels: usize,
) -> io::Result<(Vec<f64>, Vec<f64>)> {
    match fs::read(tile_state_path(folder, x, y)) {
        Ok(bytes) if bytes.len() == 16 * pixels => {
            let values: Vec<f64> = bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect();
            let occupancy = values[pixels..].to_vec();
            let mut sum = values;
            sum.truncate(pixels);
            Ok((sum, occupancy))
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "pyramid tile state of the wrong size",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((vec![0.0; pixels], vec![0.0; pixels])),
        Err(e) => Err(e),
    }
}

fn write_tile_state(
    folder: &Path,
    x: u32,
    y: u32,
    sum: &[f64],
    occupancy: &[f64],
    syncs: &mut Syncs<'_>,
) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(8 * (sum.len() + occupancy.len()));
    for value in sum.iter().chain(occupancy) {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    replace_file(&tile_state_path(folder, x, y), &bytes, syncs)
}

fn update_tile(
    root: &Path,
    folder: &Path,
    tile: &TileQuery,
    body: &[u8],
    syncs: &mut Syncs<'_>,
) -> io::Result<Answer> {
    let Some(state) = read_state(root, folder)? else {
        return Ok(Answer::error(
            404,
            "No pyramid was created in this folder (send __pyramid_create first).",
        ));
    };
    if state.finished {
        return Ok(Answer::error(
            409,
            "The pyramid is finished; it takes no more tiles.",
        ));
    }
    // The header first: a chunk larger than a tile is refused before it is decoded.
    if let Ok(header) = pzf::PzfHeader::read(body) {
        let limit = u64::from(state.tile_size);
        if u64::from(header.width) > limit || u64::from(header.height) > limit {
            return Ok(Answer::error(
                400,
                format!(
                    "A {}x{} chunk is larger than a {limit}-pixel tile.",
                    header.width, header.height
                ),
            ));
        }
    }
    let chunk = match decode_chunk(body) {
        Ok(chunk) => chunk,
        Err(reason) => {
            return Ok(Answer::error(
                400,
                format!("The tile is not a PZF image: {reason}."),
            ))
        }
    };
    let size = state.tile_size as usize;
    let (tox, toy) = (tile.tile_offset.0 as usize, tile.tile_offset.1 as usize);
    let (fox, foy) = (tile.frame_offset.0 as usize, tile.frame_offset.1 as usize);
    let (fsx, fsy) = (tile.frame_shape.0 as usize, tile.frame_shape.1 as usize);
    if tox + chunk.rows > size || toy + chunk.cols > size {
        return Ok(Answer::error(
            400,
            format!(
                "A {}x{} chunk at ({tox}, {toy}) does not fit in a {size}-pixel tile.",
                chunk.rows, chunk.cols
            ),
        ));
    }
    if fox + chunk.rows > fsx || foy + chunk.cols > fsy {
        return Ok(Answer::error(
            400,
            format!(
                "A {}x{} chunk at ({fox}, {foy}) does not fit in a {fsx}x{fsy} frame.",
                chunk.rows, chunk.cols
            ),
        ));
    }
    let Some(weights) = FrameWeights::new(fsx, fsy) else {
        return Ok(Answer::error(400, format!(
            "PYME's weights are not defined for a {fsx}x{fsy} frame (fsx at least 4, fsy at least min(100, fsx/4))."
        )));
    };
    let (mut sum, mut occupancy) = read_tile_state(folder, tile.x, tile.y, size * size)?;
    for r in 0..chunk.rows {
        for c in 0..chunk.cols {
            let weight = weights.at(fox + r, foy + c);
            let at = (tox + r) * size + toy + c;
            sum[at] += chunk.pixels[r * chunk.cols + c] * weight;
            occupancy[at] += weight;
        }
    }
    write_tile_state(folder, tile.x, tile.y, &sum, &occupancy, syncs)?;
    syncs.commit()?;
    Ok(Answer::ok())
}

// ---- finish -----------------------------------------------------------------------

/// The tiles of one level, by (x, y).
type Level = BTreeSet<(u32, u32)>;

fn finish(root: &Path, folder: &Path, syncs: &mut Syncs<'_>) -> io::Result<Answer> {
    let Some(mut state) = read_state(root, folder)? else {
        return Ok(Answer::error(404, "No pyramid was created in this folder."));
    };
    if !state.finished {
        let mut levels = vec![base_tiles(folder)?];
        // PYME: build level i + 1 while i is below the chunk's depth; stop after a
        // level of at most one tile.
        for i in 0..state.max_levels() as usize {
            let above: Level = levels[i].iter().map(|&(x, y)| (x / 2, y / 2)).collect();
            let count = above.len();
            levels.push(above);
            if count <= 1 {
                break;
            }
        }
        let builder = Builder {
            folder,
            size: state.tile_size as usize,
            levels: &levels,
        };
        let top = levels.len() - 1;
        for &(x, y) in &levels[top] {
            builder.build(top, x, y, syncs)?;
        }
        // The tiles first: a state marked finished is never built again.
        syncs.commit()?;
        state.finished = true;
        replace_file(&state_path(folder), state.to_json().as_bytes(), syncs)?;
        syncs.commit()?;
    }
    // Also after a restart that came between marking it finished and this.
    match fs::remove_dir_all(tiles_dir(folder)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    Ok(Answer::ok())
}

/// The base tiles that received chunks.
fn base_tiles(folder: &Path) -> io::Result<Level> {
    let mut tiles = Level::new();
    for entry in fs::read_dir(tiles_dir(folder))? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        let coords = name
            .split_once('_')
            .and_then(|(x, y)| Some((x.parse().ok()?, y.parse().ok()?)));
        if let Some(coords) = coords {
            tiles.insert(coords);
        }
    }
    Ok(tiles)
}

struct Builder<'a> {
    folder: &'a Path,
    size: usize,
    levels: &'a [Level],
}

impl Builder<'_> {
    /// Computes tile (`x`, `y`) of `level` (depth first: its children first), writes
    /// it, and returns it in float64 for its parent, as PYME keeps it in memory.
    fn build(&self, level: usize, x: u32, y: u32, syncs: &mut Syncs<'_>) -> io::Result<Vec<f64>> {
        let size = self.size;
        let tile = if level == 0 {
            let (sum, occupancy) = read_tile_state(self.folder, x, y, size * size)?;
            sum.iter()
                .zip(&occupancy)
                .map(|(&s, &o)| {
                    let o = o + 1e-9;
                    let scale = if o <= 0.1 { 0.0 } else { 1.0 / o };
                    s * scale
                })
                .collect()
        } else {
            let half = size / 2;
            let mut tile = vec![0.0; size * size];
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let child = (2 * x + dx, 2 * y + dy);
                if !self.levels[level - 1].contains(&child) {
                    continue;
                }
                let d = self.build(level - 1, child.0, child.1, syncs)?;
                let (r0, c0) = (half * dx as usize, half * dy as usize);
                for i in 0..half {
                    for j in 0..half {
                        let at = |r: usize, c: usize| d[r * size + c];
                        let (r, c) = (2 * i, 2 * j);
                        tile[(r0 + i) * size + c0 + j] =
                            (at(r, c) + at(r + 1, c) + at(r + 1, c + 1) + at(r, c + 1)) * 0.25;
                    }
                }
            }
            tile
        };
        self.write(level, x, y, &tile, syncs)?;
        Ok(tile)
    }

    /// Writes a tile as PYME's `PZFTileCache` does: float32, raw, C order.
    fn write(
        &self,
        level: usize,
        x: u32,
        y: u32,
        tile: &[f64],
        syncs: &mut Syncs<'_>,
    ) -> io::Result<()> {
        let dir = tile_folder(self.folder, level, x);
        fs::create_dir_all(&dir)?;
        let mut pixels = Vec::with_capacity(4 * tile.len());
        for &value in tile {
            pixels.extend_from_slice(&(value as f32).to_le_bytes());
        }
        let mut params = EncodeParams::new(DataFormat::F32, self.size as u32, self.size as u32);
        params.compression = pzf::Compression::Raw;
        params.quant_scale = 0.0;
        let mut bytes = Vec::with_capacity(64 + pixels.len());
        pzf::encode(&params, &pixels, &mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
        replace_file(&dir.join(format!("{y:03}_img.pzf")), &bytes, syncs)
    }
}

/// `<folder>/<level>/000/<x:03>`: PYME's key schema `{level}/{z:03d}/{x:03d}/{y:03d}_img.pzf`.
fn tile_folder(folder: &Path, level: usize, x: u32) -> PathBuf {
    folder
        .join(level.to_string())
        .join("000")
        .join(format!("{x:03}"))
}

/// Where a finished tile is, relative to the pyramid's folder (for tests and docs).
pub fn tile_name(level: usize, x: u32, y: u32) -> String {
    format!("{level}/000/{x:03}/{y:03}_img.pzf")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        (dir, root)
    }

    fn pzf_f32(rows: u32, cols: u32, values: &[f32]) -> Vec<u8> {
        let pixels: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut params = EncodeParams::new(DataFormat::F32, rows, cols);
        params.compression = pzf::Compression::Raw;
        let mut out = Vec::new();
        pzf::encode(&params, &pixels, &mut out).unwrap();
        out
    }

    fn read_tile(folder: &Path, level: usize, x: u32, y: u32) -> Vec<f32> {
        let bytes = fs::read(folder.join(tile_name(level, x, y))).unwrap();
        let (header, pixels) = pzf::decode(&bytes).unwrap();
        assert_eq!(header.format, DataFormat::F32);
        pixels
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    const CREATE: &[u8] = br#"{"pyramid_tile_size": 8, "chunk_shape": [4, 4, 1]}"#;

    #[test]
    fn query_parsing() {
        let q = TileQuery::parse("x=1&y=2&tox=3&toy=4&fox=5&foy=6&fsx=70&fsy=80").unwrap();
        assert_eq!(
            q,
            TileQuery {
                x: 1,
                y: 2,
                tile_offset: (3, 4),
                frame_offset: (5, 6),
                frame_shape: (70, 80)
            }
        );
        let q = TileQuery::parse("fsy=8&fsx=9&y=0&x=0&weights=auto").unwrap();
        assert_eq!((q.tile_offset, q.frame_offset), ((0, 0), (0, 0)));
        for bad in [
            "",
            "x=1&y=2&fsx=8",
            "x=1&y=2&fsx=8&fsy=8&x=1",
            "x=-1&y=2&fsx=8&fsy=8",
            "x=1.5&y=2&fsx=8&fsy=8",
            "x=&y=2&fsx=8&fsy=8",
            "x=1&y=2&fsx=8&fsy=8&z=1",
            "x=1&y=2&fsx=8&fsy=8&weights=ones",
            "x=99999999999&y=2&fsx=8&fsy=8",
            "x=1&y=2&fsx=8&fsy",
        ] {
            assert!(TileQuery::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn linspace_is_numpys() {
        assert_eq!(linspace(0.0, 1.0, 1), vec![0.0]);
        assert_eq!(linspace(0.0, 1.0, 3), vec![0.0, 0.5, 1.0]);
        assert_eq!(linspace(1.0, 0.0, 5), vec![1.0, 0.75, 0.5, 0.25, 0.0]);
        // numpy.linspace(0, 1, 7)[1] == 0.16666666666666666, [5] == 0.8333333333333333
        let l = linspace(0.0, 1.0, 7);
        assert_eq!(l[1], 1.0 / 6.0);
        assert_eq!(l[5], 5.0 * (1.0 / 6.0));
    }

    #[test]
    fn weights_ramp_at_the_edges_and_fail_where_pymes_do() {
        // 8 rows: ramp of 2 -> [0, 1] up, [1, 0] down, in both directions.
        let w = FrameWeights::new(8, 8).unwrap();
        assert_eq!(w.at(0, 0), 0.0);
        assert_eq!(w.at(1, 1), 1.0);
        assert_eq!(w.at(3, 3), 1.0);
        assert_eq!(w.at(7, 4), 0.0);
        // 12 rows: ramp of 3, [0, 0.5, 1] up and [1, 0.5, 0] down, both ways.
        let w = FrameWeights::new(12, 5).unwrap();
        assert_eq!(w.at(1, 2), 0.5);
        assert_eq!(w.at(10, 3), 0.5 * 0.5);
        assert_eq!(w.at(6, 2), 1.0);
        assert!(FrameWeights::new(3, 8).is_none());
        assert!(FrameWeights::new(40, 9).is_none());
        assert!(FrameWeights::new(40, 10).is_some());
    }

    #[test]
    fn max_levels_follow_pymes_log2_test() {
        let state = |c: u32| State {
            tile_size: 8,
            chunk_shape: vec![c, 16, 1],
            finished: false,
        };
        assert_eq!(state(1).max_levels(), 0);
        assert_eq!(state(2).max_levels(), 1);
        assert_eq!(state(6).max_levels(), 3);
        assert_eq!(state(8).max_levels(), 3);
        assert_eq!(state(9).max_levels(), 4);
    }

    #[test]
    fn create_bodies() {
        assert!(State::from_create_body(CREATE).is_ok());
        let defaults = State::from_create_body(b"{}").unwrap();
        assert_eq!(
            (defaults.tile_size, defaults.chunk_shape),
            (256, vec![8, 8, 1])
        );
        for bad in [
            &b"not json"[..],
            b"[]",
            br#"{"pyramid_tile_size": 7}"#,
            br#"{"pyramid_tile_size": 4096}"#,
            br#"{"pyramid_tile_size": "8"}"#,
            br#"{"chunk_shape": [0, 8]}"#,
            br#"{"chunk_shape": [8]}"#,
            br#"{"backend": "x"}"#,
        ] {
            assert!(
                State::from_create_body(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn chunks_in_either_order_and_any_coding_read_the_same() {
        let values: Vec<f32> = (0..6).map(|v| v as f32 * 1.5).collect();
        let c_order = pzf_f32(2, 3, &values);
        // The same 2x3 array stored column-major, Huffman-coded.
        let f_values = [
            values[0], values[3], values[1], values[4], values[2], values[5],
        ];
        let pixels: Vec<u8> = f_values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut params = EncodeParams::new(DataFormat::F32, 2, 3);
        params.order = DimOrder::F;
        let mut f_order = Vec::new();
        pzf::encode(&params, &pixels, &mut f_order).unwrap();
        let (a, b) = (
            decode_chunk(&c_order).unwrap(),
            decode_chunk(&f_order).unwrap(),
        );
        assert_eq!((a.rows, a.cols, b.rows, b.cols), (2, 3, 2, 3));
        assert_eq!(a.pixels, b.pixels);
        assert_eq!(a.pixels[3], 4.5);
    }

    #[test]
    fn one_pixel_wide_chunks_are_added() {
        // PYME's own server loses its tile thread on these (it squeezes them to 1-D).
        let (_keep, root) = root();
        assert_eq!(
            handle(&root, "__pyramid_create", "p", None, CREATE, false)
                .unwrap()
                .code,
            200
        );
        let row = pzf_f32(1, 8, &[3.0; 8]);
        let q = "x=0&y=0&tox=5&toy=0&fox=8&foy=4&fsx=16&fsy=16";
        assert_eq!(
            handle(&root, "__pyramid_update_tile", "p", Some(q), &row, false)
                .unwrap()
                .code,
            200
        );
        let column = pzf_f32(8, 1, &[3.0; 8]);
        let q = "x=0&y=0&tox=0&toy=6&fox=4&foy=8&fsx=16&fsy=16";
        assert_eq!(
            handle(&root, "__pyramid_update_tile", "p", Some(q), &column, false)
                .unwrap()
                .code,
            200
        );
        assert_eq!(
            handle(&root, "__pyramid_finish", "p", None, b"", false)
                .unwrap()
                .code,
            200
        );
        let tile = read_tile(&root.join("p"), 0, 0, 0);
        assert!((tile[5 * 8 + 7] - 3.0).abs() < 1e-6, "the row: {tile:?}");
        assert!((tile[4 * 8 + 6] - 3.0).abs() < 1e-6, "the column");
        assert_eq!(tile[0], 0.0, "nothing elsewhere");
    }

    #[test]
    fn the_lock_table_keeps_only_folders_in_use() {
        let (_keep, root) = root();
        for i in 0..200 {
            let answer = handle(
                &root,
                "__pyramid_finish",
                &format!("nothing/{i}"),
                None,
                b"",
                false,
            );
            assert_eq!(answer.unwrap().code, 404);
        }
        // Other tests of this process may hold a lock or two meanwhile.
        let held = LOCKS.get().unwrap().lock().unwrap().len();
        assert!(held < 20, "{held} folders in the lock table");
    }

    #[test]
    fn one_chunk_makes_base_and_levels() {
        let (_keep, root) = root();
        assert_eq!(
            handle(&root, "__pyramid_create", "p", None, CREATE, true)
                .unwrap()
                .code,
            200
        );
        // A 16x16 frame of 5.0 into tile (1, 0) at (0, 0): the whole tile.
        let body = pzf_f32(8, 8, &[5.0; 64]);
        let q = "x=1&y=0&tox=0&toy=0&fox=4&foy=4&fsx=16&fsy=16";
        assert_eq!(
            handle(&root, "__pyramid_update_tile", "p", Some(q), &body, true)
                .unwrap()
                .code,
            200
        );
        assert_eq!(
            handle(&root, "__pyramid_finish", "p", None, b"", true)
                .unwrap()
                .code,
            200
        );
        let folder = root.join("p");
        let base = read_tile(&folder, 0, 1, 0);
        // Weights are positive there (ramp of 4 in a 16 frame; offset 4..12): 5 everywhere.
        assert!(base.iter().all(|&v| (v - 5.0).abs() < 1e-6), "{base:?}");
        // One tile at level 0 -> one at level 1, and the build stops.
        let up = read_tile(&folder, 1, 0, 0);
        assert!(up[..4].iter().all(|&v| v == 0.0), "the empty NW quarter");
        assert!(
            (up[4 * 8] - 5.0).abs() < 1e-6,
            "NE quarter (rows 4..8) holds tile (1, 0)"
        );
        assert!(!folder.join(tile_name(2, 0, 0)).exists());
        assert!(
            !tiles_dir(&folder).exists(),
            "the working state is gone after finish"
        );
    }
}
