//! Reading the desired state: a revision (a Git commit, or a content hash for a plain folder)
//! and the files it holds, as relative `/`-separated paths.
//!
//! A Git repository is read with `gix` at a reference (`main`, `refs/heads/prod`, a tag): the
//! commit's tree is walked and its blobs read; the work tree and index are ignored, so only
//! committed state is ever published. Sizes are bounded so that a wrong path (a home folder, a
//! huge repository) fails clearly instead of filling memory.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::SourceKind;

/// Most files one revision may hold.
pub const MAX_FILES: usize = 10_000;
/// Most bytes one revision may hold.
pub const MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;

/// The files of one revision of the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The commit id, or `folder-<hash>` for a folder.
    pub revision: String,
    /// Relative path (`shared/policies/a.cedar`) to contents.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Why the source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open the Git repository `{path}`: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "the Git reference `{reference}` cannot be resolved to a commit in `{path}`: {reason}"
    )]
    Reference {
        path: String,
        reference: String,
        reason: String,
    },
    #[error("cannot read `{what}` from the source: {reason}")]
    Read { what: String, reason: String },
    #[error("the source holds more than {MAX_FILES} files or {MAX_TOTAL_BYTES} bytes: is the path right?")]
    TooLarge,
}

/// Reads the current revision of `kind`.
pub fn read(kind: &SourceKind) -> Result<Snapshot, SourceError> {
    match kind {
        SourceKind::Git { repo, reference } => read_git(repo, reference),
        SourceKind::Folder(dir) => read_folder(dir),
    }
}

/// Resolves only the revision: cheap for Git (no tree walk), a full read for a folder.
pub fn revision(kind: &SourceKind) -> Result<String, SourceError> {
    match kind {
        SourceKind::Git { repo, reference } => {
            let repo = open(repo)?;
            let id = resolve(&repo, reference)?.id.to_string();
            Ok(id)
        }
        SourceKind::Folder(dir) => Ok(read_folder(dir)?.revision),
    }
}

fn open(path: &Path) -> Result<gix::Repository, SourceError> {
    gix::open(path).map_err(|e| SourceError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn resolve<'r>(repo: &'r gix::Repository, reference: &str) -> Result<gix::Commit<'r>, SourceError> {
    let err = |reason: String| SourceError::Reference {
        path: repo.path().display().to_string(),
        reference: reference.to_owned(),
        reason,
    };
    let mut r = repo
        .find_reference(reference)
        .map_err(|e| err(e.to_string()))?;
    r.peel_to_commit().map_err(|e| err(e.to_string()))
}

fn read_git(path: &Path, reference: &str) -> Result<Snapshot, SourceError> {
    let repo = open(path)?;
    let commit = resolve(&repo, reference)?;
    let revision = commit.id.to_string();
    let tree = commit.tree().map_err(|e| SourceError::Read {
        what: format!("the tree of commit {revision}"),
        reason: e.to_string(),
    })?;
    let mut files = BTreeMap::new();
    let mut total = 0usize;
    walk_tree(&repo, tree, "", &mut files, &mut total)?;
    Ok(Snapshot { revision, files })
}

fn walk_tree(
    repo: &gix::Repository,
    tree: gix::Tree<'_>,
    prefix: &str,
    files: &mut BTreeMap<String, Vec<u8>>,
    total: &mut usize,
) -> Result<(), SourceError> {
    let read_err = |what: &str, e: &dyn std::fmt::Display| SourceError::Read {
        what: what.to_owned(),
        reason: e.to_string(),
    };
    for entry in tree.iter() {
        let entry = entry.map_err(|e| read_err(prefix, &e))?;
        let name = entry.filename().to_string();
        let path = format!("{prefix}{name}");
        let mode = entry.mode();
        let object = repo
            .find_object(entry.oid())
            .map_err(|e| read_err(&path, &e))?;
        if mode.is_tree() {
            let sub = object.try_into_tree().map_err(|e| read_err(&path, &e))?;
            walk_tree(repo, sub, &format!("{path}/"), files, total)?;
        } else if mode.is_blob() {
            *total += object.data.len();
            if files.len() >= MAX_FILES || *total > MAX_TOTAL_BYTES {
                return Err(SourceError::TooLarge);
            }
            files.insert(path, object.data.clone());
        }
        // Symlinks and submodules are not part of the desired state and are skipped.
    }
    Ok(())
}

fn read_folder(dir: &Path) -> Result<Snapshot, SourceError> {
    let mut files = BTreeMap::new();
    let mut total = 0usize;
    walk_dir(dir, "", &mut files, &mut total)?;
    let mut hash = Sha256::new();
    for (path, data) in &files {
        hash.update((path.len() as u64).to_be_bytes());
        hash.update(path.as_bytes());
        hash.update((data.len() as u64).to_be_bytes());
        hash.update(data);
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    Ok(Snapshot {
        revision: format!("folder-{hex}"),
        files,
    })
}

fn walk_dir(
    dir: &Path,
    prefix: &str,
    files: &mut BTreeMap<String, Vec<u8>>,
    total: &mut usize,
) -> Result<(), SourceError> {
    let read_err = |p: &Path, e: std::io::Error| SourceError::Read {
        what: p.display().to_string(),
        reason: e.to_string(),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| read_err(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| read_err(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Hidden entries (`.git`, editor files) are not desired state.
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| read_err(&path, e))?;
        if kind.is_dir() {
            walk_dir(&path, &format!("{prefix}{name}/"), files, total)?;
        } else if kind.is_file() {
            let data = std::fs::read(&path).map_err(|e| read_err(&path, e))?;
            *total += data.len();
            if files.len() >= MAX_FILES || *total > MAX_TOTAL_BYTES {
                return Err(SourceError::TooLarge);
            }
            files.insert(format!("{prefix}{name}"), data);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_revision_follows_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("shared/policies")).expect("mkdir");
        std::fs::write(dir.path().join("shared/policies/a.cedar"), "x").expect("write");
        std::fs::write(dir.path().join(".hidden"), "x").expect("write");
        let kind = SourceKind::Folder(dir.path().to_path_buf());
        let first = read(&kind).expect("read");
        assert_eq!(
            first.files.keys().collect::<Vec<_>>(),
            vec!["shared/policies/a.cedar"]
        );
        assert_eq!(revision(&kind).expect("rev"), first.revision);
        std::fs::write(dir.path().join("shared/policies/a.cedar"), "y").expect("write");
        assert_ne!(revision(&kind).expect("rev"), first.revision);
    }

    #[test]
    fn a_missing_repository_is_named() {
        let kind = SourceKind::Git {
            repo: "/nonexistent/fleet".into(),
            reference: "main".into(),
        };
        let e = read(&kind).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/fleet"), "{e}");
    }
}
