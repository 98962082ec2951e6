//! The validation context: collects every error with its file and key, and checks the
//! primitive values (names, durations, counts, paths) the sections are built from.

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::types::Name;
use super::{ConfigError, ConfigErrors};

/// Collects errors while the sections are validated.
pub(super) struct Ctx<'a> {
    file: &'a Path,
    base: PathBuf,
    errors: Vec<ConfigError>,
}

impl<'a> Ctx<'a> {
    /// A context for the config read from `file`; relative paths resolve against its folder.
    pub fn new(file: &'a Path) -> Self {
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        Self {
            file,
            base,
            errors: Vec::new(),
        }
    }

    /// Records one error at `key`.
    pub fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            key: key.into(),
            message: message.into(),
        });
    }

    /// All errors, or `Ok` when there were none.
    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors {
                errors: self.errors,
            })
        }
    }

    /// A required string value.
    pub fn required<'v>(&mut self, key: &str, value: Option<&'v str>) -> Option<&'v str> {
        if value.is_none() {
            self.error(key, "is required");
        }
        value
    }

    /// A required name of `[A-Za-z0-9._-]`.
    pub fn name(&mut self, key: &str, value: Option<&str>) -> Option<Name> {
        let value = self.required(key, value)?;
        match Name::new(value) {
            Ok(name) => Some(name),
            Err(expected) => {
                self.error(
                    key,
                    format!("expected {expected}, found `{}`", value.escape_default()),
                );
                None
            }
        }
    }

    /// A humantime duration such as `5s` or `2m`, not zero, or `default` when absent.
    pub fn duration(
        &mut self,
        key: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Option<Duration> {
        let Some(value) = value else {
            return Some(default);
        };
        match humantime::parse_duration(value) {
            Ok(d) if d.is_zero() => {
                self.error(key, "expected a duration above zero, found `0`");
                None
            }
            Ok(d) => Some(d),
            Err(_) => {
                self.error(
                    key,
                    format!(
                        "expected a duration such as `5s` or `2m`, found `{}`",
                        value.escape_default()
                    ),
                );
                None
            }
        }
    }

    /// A count of at least 1 that fits in `u32`, or `default` when absent.
    pub fn count_u32(&mut self, key: &str, value: Option<u64>, default: u32) -> Option<NonZeroU32> {
        let value = value.unwrap_or(u64::from(default));
        let n = u32::try_from(value).ok().and_then(NonZeroU32::new);
        if n.is_none() {
            self.error(
                key,
                format!("expected a number from 1 to {}, found {value}", u32::MAX),
            );
        }
        n
    }

    /// A size of at least 1 byte, or `default` when absent.
    pub fn count_u64(&mut self, key: &str, value: Option<u64>, default: u64) -> Option<NonZeroU64> {
        let n = NonZeroU64::new(value.unwrap_or(default));
        if n.is_none() {
            self.error(key, "expected a number above zero, found 0");
        }
        n
    }

    /// A size of at least 1 that fits in `usize`, or `default` when absent.
    pub fn count_usize(
        &mut self,
        key: &str,
        value: Option<u64>,
        default: usize,
    ) -> Option<NonZeroUsize> {
        let value = value.unwrap_or(default as u64);
        let n = usize::try_from(value).ok().and_then(NonZeroUsize::new);
        if n.is_none() {
            self.error(key, format!("expected a number above zero, found {value}"));
        }
        n
    }

    /// A required, non-empty file path, resolved against the config file's folder.
    pub fn path(&mut self, key: &str, value: Option<&str>) -> Option<PathBuf> {
        let value = self.required(key, value)?;
        self.opt_path(key, Some(value))
    }

    /// An optional, non-empty file path, resolved against the config file's folder.
    pub fn opt_path(&mut self, key: &str, value: Option<&str>) -> Option<PathBuf> {
        let value = value?;
        if value.is_empty() {
            self.error(key, "expected a file path, found an empty string");
            return None;
        }
        Some(self.base.join(value))
    }
}
