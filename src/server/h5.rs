//! PYME's HDF5 series on a cluster (`__aggregate_h5`): a series spooled into one `.h5`
//! file, and that file served as a folder.
//!
//! `PUT __aggregate_h5/<file>.h5/<part>`, as PYME's cluster spooling
//! (`acquisition_backends.ClusterBackend` with `cluster_h5`) sends its parts:
//! - `metadata.json` (and `final_metadata.json`, which PYME's server ignores and this
//!   one merges like `metadata.json`): PYME metadata into `/MetaData`;
//! - `events.json`: `[[name, description, time], ...]` appended to the `Events` table;
//! - `frameNNNNN.pzf`: the PZF bytes appended to `PZFImageData` with a `PZFImageIndex`
//!   row (`FrameNum` from the PZF header, `Position`); a frame number stored already
//!   is answered 200 and adds nothing (the client's at-least-once resend).
//!
//! `GET <file>.h5/` lists `metadata.json`, `events.json` (when there are events) and
//! the frames as PYME's `H5File.get_listing` does; `GET <file>.h5/<part>` sends each.
//! The same small interface as `h5r.rs` (store, names, body in; [`Answer`] out); the
//! HDF5 work is in `h5file.rs` (the `hdf5` feature; without it: 501).

use std::path::{Path, PathBuf};

use super::h5r::Answer;
use super::storage::Store;

/// Splits `a/s.h5/part` into the file `a/s.h5` and the parts after it.
pub fn split_series_path(relative: &Path) -> Option<(PathBuf, Vec<String>)> {
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let at = parts
        .iter()
        .position(|p| p.ends_with(".h5") && p.len() > 3)?;
    let file: PathBuf = parts[..=at].iter().collect();
    Some((file, parts[at + 1..].to_vec()))
}

/// The frame number of a part name `frameNNNNN.pzf` (PYME reads `int(name[5:10])`).
#[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
fn frame_number_of_name(part: &str) -> Option<i32> {
    let digits = part.strip_prefix("frame")?.strip_suffix(".pzf")?;
    digits.parse().ok()
}

/// `PUT __aggregate_h5/<rest>` with its decoded body.
pub fn aggregate(store: &Store, rest: &Path, body: &[u8]) -> Answer {
    #[cfg(not(feature = "hdf5"))]
    if true {
        return Answer::error(501, super::h5r::NOT_BUILT);
    }
    let Some((file, part)) = split_series_path(rest) else {
        return Answer::error(400, "__aggregate_h5 needs a path to an .h5 file");
    };
    let [part] = part.as_slice() else {
        return Answer::error(400, "__aggregate_h5 needs one part after the .h5 file");
    };
    let (path, new, _claim) = match super::h5r::writable_path(store, &file) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    super::h5r::synced(store, &path, new, imp::put_part(&path, part, body))
}

/// `GET <file>.h5/` (a listing) or `GET <file>.h5/<part>`; None when `relative` is not
/// inside an `.h5` file, or names an `.h5` that is a real folder.
pub fn get(store: &Store, relative: &Path, folder: bool) -> Option<Answer> {
    let (file, part) = split_series_path(relative)?;
    if part.is_empty() && !folder {
        // The file itself: sent as any file.
        return None;
    }
    let path = store.confined(&file).ok()?;
    if !path.is_file() {
        return None;
    }
    Some(match (part.as_slice(), folder) {
        ([], true) => imp::listing(&path),
        ([part], false) => imp::get_part(&path, part),
        _ => Answer::error(404, "No such part of the series."),
    })
}

#[cfg(feature = "hdf5")]
mod imp {
    use super::super::h5file::{self, H5Error};
    use super::super::h5r::{from_h5, metadata_entries, metadata_json};
    use super::{frame_number_of_name, Answer};
    use std::path::Path;

    pub fn put_part(path: &Path, part: &str, body: &[u8]) -> Answer {
        match part {
            "metadata.json" | "final_metadata.json" | "MetaData" => match metadata_entries(body) {
                Ok(entries) => from_h5(h5file::set_metadata(path, &entries).map(|()| Answer::ok())),
                Err(reason) => Answer::error(400, reason),
            },
            "events.json" => match parse_events(body) {
                Ok(events) => from_h5(h5file::append_events(path, &events).map(|()| Answer::ok())),
                Err(reason) => Answer::error(400, reason),
            },
            _ => {
                let Some(named) = frame_number_of_name(part) else {
                    return Answer::error(
                        400,
                        "an .h5 series takes metadata.json, events.json and frameNNNNN.pzf",
                    );
                };
                let frame_num = match crate::pzf::PzfHeader::read(body) {
                    Ok(header) => match i32::try_from(header.frame_num) {
                        Ok(n) => n,
                        Err(_) => return Answer::error(400, "the frame number is too large"),
                    },
                    Err(e) => return Answer::error(400, format!("the frame is not PZF: {e}")),
                };
                if frame_num != named {
                    return Answer::error(
                        400,
                        format!("the name says frame {named}, the PZF header {frame_num}"),
                    );
                }
                from_h5(h5file::append_frame(path, frame_num, body).map(|_| Answer::ok()))
            }
        }
    }

    /// PYME's events JSON: a list of `[name, description, time]`.
    fn parse_events(body: &[u8]) -> Result<Vec<h5file::Event>, String> {
        use serde_json::Value;
        let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(body) else {
            return Err("events.json must be a JSON list".into());
        };
        items
            .iter()
            .map(|item| match item.as_array().map(Vec::as_slice) {
                Some([Value::String(name), Value::String(descr), time]) if time.is_number() => {
                    let (name, descr) = (name.as_bytes(), descr.as_bytes());
                    if name.len() > 32 || descr.len() > 256 {
                        return Err("an event name (32) or description (256) is too long".into());
                    }
                    Ok((name.to_vec(), descr.to_vec(), time.as_f64().unwrap_or(0.0)))
                }
                _ => Err("an event is not [name, description, time]".into()),
            })
            .collect()
    }

    pub fn listing(path: &Path) -> Answer {
        from_h5(h5file::series_contents(path).map(|(events, frames)| {
            let mut map = serde_json::Map::new();
            map.insert("metadata.json".into(), serde_json::json!([0, 0]));
            if events {
                map.insert("events.json".into(), serde_json::json!([0, 0]));
            }
            for n in frames {
                map.insert(format!("frame{n:05}.pzf"), serde_json::json!([0, 0]));
            }
            Answer {
                code: 200,
                content_type: "application/json",
                body: serde_json::Value::Object(map).to_string().into_bytes(),
            }
        }))
    }

    pub fn get_part(path: &Path, part: &str) -> Answer {
        let result = match part {
            "metadata.json" => h5file::metadata(path).map(|entries| Answer {
                code: 200,
                content_type: "application/json",
                body: metadata_json(&entries).into_bytes(),
            }),
            "events.json" => h5file::events(path).map(|events| {
                let list: Vec<serde_json::Value> = events
                    .into_iter()
                    .map(|(name, descr, time)| serde_json::json!([name, descr, time]))
                    .collect();
                Answer {
                    code: 200,
                    content_type: "application/json",
                    body: serde_json::Value::Array(list).to_string().into_bytes(),
                }
            }),
            _ => match frame_number_of_name(part) {
                Some(n) => h5file::frame(path, n).map(|bytes| Answer {
                    code: 200,
                    content_type: "application/octet-stream",
                    body: bytes,
                }),
                None => Err(H5Error::Missing("No such part of the series.".into())),
            },
        };
        from_h5(result)
    }
}

#[cfg(not(feature = "hdf5"))]
mod imp {
    use super::super::h5r::NOT_BUILT;
    use super::Answer;
    use std::path::Path;

    pub fn put_part(_: &Path, _: &str, _: &[u8]) -> Answer {
        Answer::error(501, NOT_BUILT)
    }

    pub fn listing(_: &Path) -> Answer {
        Answer::error(501, NOT_BUILT)
    }

    pub fn get_part(_: &Path, _: &str) -> Answer {
        Answer::error(501, NOT_BUILT)
    }
}
