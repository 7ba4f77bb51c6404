//! Paths in a configuration: resolving them against the config file's directory, and checking what
//! is at them (input files, the console log, the vsock socket). Plain functions over [`Path`]s that
//! answer with a [`Problem`]; the rules in [`crate::rules`] say which field they are about.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::Problem;
use crate::model::MAX_VSOCK_SOCKET_LEN;

/// Resolves a path from the config file against `base` (the file's directory; empty for the
/// current directory, as for command-line paths) and makes it absolute (lexically: symlinks are
/// not resolved and the file need not exist).
///
/// An empty path stays empty, so that the rules report it as such ("kernel path is empty") rather
/// than as the directory it would resolve to.
pub(crate) fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.as_os_str().is_empty() {
        return PathBuf::new();
    }
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    std::path::absolute(&joined).unwrap_or(joined)
}

/// An input file (`what` is `kernel`, `initramfs`, `module` or `disk image`): exists, is a regular
/// file, is not empty (unless `allow_empty`), can be opened for reading.
pub(crate) fn check_input_file(
    what: &'static str,
    path: &Path,
    allow_empty: bool,
) -> Result<(), Problem> {
    if path.as_os_str().is_empty() {
        return Err(Problem::EmptyPath { what });
    }
    let owned = || path.to_path_buf();
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Err(Problem::FileNotFound {
                what,
                path: owned(),
            })
        }
        Err(e) => {
            return Err(Problem::FileUnreadable {
                what,
                path: owned(),
                message: e.to_string(),
            })
        }
    };
    if meta.is_dir() {
        return Err(Problem::IsDirectory {
            what,
            path: owned(),
        });
    }
    if !meta.is_file() {
        return Err(Problem::NotAFile {
            what,
            path: owned(),
        });
    }
    if meta.len() == 0 && !allow_empty {
        return Err(Problem::FileEmpty {
            what,
            path: owned(),
        });
    }
    fs::File::open(path)
        .map(drop)
        .map_err(|e| Problem::FileUnreadable {
            what,
            path: owned(),
            message: e.to_string(),
        })
}

/// The console log file: not empty, not a directory, its directory exists.
pub(crate) fn check_console_path(path: &Path) -> Result<(), Problem> {
    if path.as_os_str().is_empty() {
        return Err(Problem::EmptyPath { what: "console" });
    }
    if path.is_dir() {
        return Err(Problem::ConsolePathIsDir {
            path: path.to_path_buf(),
        });
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            Err(Problem::ConsoleDirMissing {
                path: dir.to_path_buf(),
            })
        }
        _ => Ok(()),
    }
}

/// `vsock.socket`: short enough for a Unix socket (with duet's `_PORT` suffixes), not a directory,
/// in a directory that exists. A stale socket file there is the VMM's to report.
pub(crate) fn check_socket(path: &Path) -> Result<(), Problem> {
    if path.as_os_str().is_empty() {
        return Err(Problem::EmptyPath { what: "socket" });
    }
    let len = path.as_os_str().len();
    if len > MAX_VSOCK_SOCKET_LEN {
        return Err(Problem::SocketPathTooLong { len });
    }
    if path.is_dir() {
        return Err(Problem::SocketPathIsDir {
            path: path.to_path_buf(),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Problem::SocketDirMissing { path: dir });
    }
    Ok(())
}
