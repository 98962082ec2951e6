//! All-or-nothing file output: every file of a command is staged beside its target, then the
//! set is renamed into place. A failure before the last rename removes what was written, so a
//! failing command leaves no partial files. Keys are created with mode 0600.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file-level failure, naming the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("`{0}` already exists: pass --force to overwrite it")]
    Exists(PathBuf),
    #[error("cannot write `{path}`: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot read `{path}`: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Whether a staged file holds secret material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    /// Certificates, chains, CRLs, CSRs: mode 0644.
    Public,
    /// Private keys: mode 0600 from creation on.
    Secret,
}

struct Staged {
    target: PathBuf,
    temp: PathBuf,
}

/// A set of files written together or not at all.
pub struct Output {
    force: bool,
    staged: Vec<Staged>,
    committed: Vec<PathBuf>,
}

impl Output {
    /// A new set; with `force`, existing targets are replaced.
    pub fn new(force: bool) -> Self {
        Self {
            force,
            staged: Vec::new(),
            committed: Vec::new(),
        }
    }

    /// Refuses early when a target exists and `--force` was not given.
    pub fn check_absent(&self, target: &Path) -> Result<(), FileError> {
        if !self.force && target.exists() {
            return Err(FileError::Exists(target.to_path_buf()));
        }
        Ok(())
    }

    /// Writes `contents` to a temporary file beside `target`.
    pub fn stage(
        &mut self,
        target: &Path,
        contents: &[u8],
        secrecy: Secrecy,
    ) -> Result<(), FileError> {
        self.check_absent(target)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".to_owned());
        let temp = target.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let err = |error| FileError::Write {
            path: target.to_path_buf(),
            error,
        };
        let mut file = open_new(&temp, secrecy).map_err(err)?;
        // Track the temp file before writing so a failed write is cleaned up too.
        self.staged.push(Staged {
            target: target.to_path_buf(),
            temp: temp.clone(),
        });
        file.write_all(contents).map_err(err)?;
        file.sync_all().map_err(err)?;
        Ok(())
    }

    /// Renames every staged file into place. On failure, what was already renamed is removed.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, FileError> {
        let staged = std::mem::take(&mut self.staged);
        let mut pending = staged.into_iter();
        while let Some(s) = pending.next() {
            if let Err(error) = fs::rename(&s.temp, &s.target) {
                let _ = fs::remove_file(&s.temp);
                for rest in pending {
                    let _ = fs::remove_file(&rest.temp);
                }
                for done in &self.committed {
                    let _ = fs::remove_file(done);
                }
                return Err(FileError::Write {
                    path: s.target,
                    error,
                });
            }
            self.committed.push(s.target);
        }
        Ok(std::mem::take(&mut self.committed))
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        for s in &self.staged {
            let _ = fs::remove_file(&s.temp);
        }
    }
}

fn open_new(path: &Path, secrecy: Secrecy) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(match secrecy {
            Secrecy::Secret => 0o600,
            Secrecy::Public => 0o644,
        });
    }
    #[cfg(not(unix))]
    let _ = secrecy;
    options.open(path)
}

/// Reads a whole file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    fs::read(path).map_err(|error| FileError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Writes one file atomically (temp, fsync, rename), for state the CA keeps in its folder.
pub fn replace(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    let mut out = Output::new(true);
    out.stage(path, contents, Secrecy::Public)?;
    out.commit().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.crt");
        let key = dir.path().join("a.key");
        let mut out = Output::new(false);
        out.stage(&a, b"cert", Secrecy::Public).unwrap();
        out.stage(&key, b"key", Secrecy::Secret).unwrap();
        out.commit().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"cert");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn dropped_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.crt");
        {
            let mut out = Output::new(false);
            out.stage(&a, b"cert", Secrecy::Public).unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.crt");
        fs::write(&a, b"old").unwrap();
        let mut out = Output::new(false);
        assert!(matches!(
            out.stage(&a, b"new", Secrecy::Public),
            Err(FileError::Exists(_))
        ));
        let mut forced = Output::new(true);
        forced.stage(&a, b"new", Secrecy::Public).unwrap();
        forced.commit().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new");
    }

    #[test]
    fn unwritable_folder_is_an_error() {
        let missing = Path::new("/nonexistent-edgeward-dir/a.crt");
        let mut out = Output::new(false);
        assert!(matches!(
            out.stage(missing, b"x", Secrecy::Public),
            Err(FileError::Write { .. })
        ));
    }
}
