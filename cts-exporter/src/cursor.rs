//! The persisted cursor (`CTS_STATE_FILE`): every trace with a `time` before it has been delivered.
//!
//! Written after each completed window, atomically (a temporary file in the same directory, fsync, rename,
//! fsync of the directory), so a crash leaves either the old or the new cursor, never a torn file. The file
//! records the project and tracker it belongs to; a state file of another project is refused at start.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Format version written to the file.
pub const STATE_VERSION: u32 = 1;

/// The state file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// The cursor, epoch ms: the start of the next window.
    pub cursor_ms: i64,
    /// The cursor in RFC 3339, for people reading the file.
    #[serde(default)]
    pub cursor: String,
    /// The project whose traces the cursor refers to.
    pub project_id: String,
    /// The tracker.
    pub tracker: String,
}

/// A state file problem.
#[derive(Debug, Error)]
pub enum StateError {
    /// It cannot be read or written.
    #[error("CTS_STATE_FILE {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// It is not a state file.
    #[error("CTS_STATE_FILE {path}: not a cursor file of this exporter: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// It belongs to another project or tracker.
    #[error(
        "CTS_STATE_FILE {path}: the cursor belongs to project {file_project} tracker {file_tracker}, not project {project} tracker {tracker}; use one state file per project and tracker"
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Project in the file.
        file_project: String,
        /// Tracker in the file.
        file_tracker: String,
        /// Project of this exporter.
        project: String,
        /// Tracker of this exporter.
        tracker: String,
    },
}

/// The cursor file of one exporter.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    project_id: String,
    tracker: String,
}

impl StateFile {
    /// The state file at `path` for a project and tracker.
    pub fn new(path: impl Into<PathBuf>, project_id: &str, tracker: &str) -> Self {
        Self {
            path: path.into(),
            project_id: project_id.to_owned(),
            tracker: tracker.to_owned(),
        }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> StateError {
        StateError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The saved cursor, `None` when there is no file yet.
    pub fn load(&self) -> Result<Option<i64>, StateError> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let state: State = serde_json::from_slice(&text).map_err(|e| StateError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        if state.version != STATE_VERSION {
            return Err(StateError::Corrupt {
                path: self.path.clone(),
                reason: format!("version {} is not {STATE_VERSION}", state.version),
            });
        }
        if state.project_id != self.project_id || state.tracker != self.tracker {
            return Err(StateError::Mismatch {
                path: self.path.clone(),
                file_project: state.project_id,
                file_tracker: state.tracker,
                project: self.project_id.clone(),
                tracker: self.tracker.clone(),
            });
        }
        Ok(Some(state.cursor_ms))
    }

    /// Saves the cursor atomically.
    pub fn save(&self, cursor_ms: i64) -> Result<(), StateError> {
        let state = State {
            version: STATE_VERSION,
            cursor_ms,
            cursor: crate::window::rfc3339(cursor_ms),
            project_id: self.project_id.clone(),
            tracker: self.tracker.clone(),
        };
        let mut text = serde_json::to_vec_pretty(&state).map_err(|e| StateError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        text.push(b'\n');
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cursor".into());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &self.path)?;
            // Make the rename itself durable (best effort: not every filesystem allows it).
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::testkit::TempDir;

    #[test]
    fn round_trip_and_atomic_replace() {
        let dir = TempDir::new("cursor");
        let f = StateFile::new(dir.path().join("cursor.json"), "p1", "system");
        assert_eq!(f.load().unwrap(), None);
        f.save(1_700_000_000_000).unwrap();
        assert_eq!(f.load().unwrap(), Some(1_700_000_000_000));
        f.save(1_700_000_300_000).unwrap();
        assert_eq!(f.load().unwrap(), Some(1_700_000_300_000));
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert!(
            text.contains("\"cursor\": \"2023-11-14T22:18:20Z\""),
            "{text}"
        );
        // Only the state file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cursor.json")]);
    }

    #[test]
    fn refuses_foreign_or_corrupt_files() {
        let dir = TempDir::new("cursor-bad");
        let path = dir.path().join("cursor.json");
        StateFile::new(&path, "p1", "system").save(5).unwrap();
        let err = StateFile::new(&path, "p2", "system")
            .load()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("belongs to project p1 tracker system, not project p2"),
            "{err}"
        );
        std::fs::write(&path, "{not json").unwrap();
        let err = StateFile::new(&path, "p1", "system")
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a cursor file"), "{err}");
        let unwritable = StateFile::new(dir.path().join("missing/cursor.json"), "p1", "system");
        assert!(unwritable.save(1).is_err());
    }
}
