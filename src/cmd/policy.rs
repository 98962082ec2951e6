//! `edgeward policy ...`: check, test, explain and format Cedar policies before they ship.
//!
//! `test` and `explain` decide through the proxy's own path: the request is canonicalized and
//! routed by `edgeward_proxy::authz::facts::facts_for`, then decided by
//! `edgeward_proxy::authz::Authorizer::decide`, the calls the proxy makes per request.

mod cases;
mod explain;
mod format;
mod query;
mod test;
mod validate;

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Subcommand;
use edgeward_certs::SpiffeId;
use edgeward_proxy::authz::{entities_dups, AuthzLoadError, PolicySnapshot};
use edgeward_proxy::config::Config;

use super::{parse_spiffe_id, Failure, Outcome};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate the policies of DIR strictly against the schema, then lint them.
    Validate {
        /// The policy folder (`*.cedar`, with `schema.cedarschema` and `entities.json`).
        dir: PathBuf,
        #[command(flatten)]
        files: SetFiles,
        /// A proxy config: routes and services the policies name must exist in it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Fail (exit 1) on warnings too.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Run the test cases in DIR/tests/*.toml against the policies of DIR.
    Test {
        /// The policy folder; its `tests/` folder holds the test files.
        dir: PathBuf,
        #[command(flatten)]
        files: SetFiles,
        /// A proxy config for the cases of files without a `config` key.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show the decision the proxy would make for one request, and why.
    Explain(Box<explain::ExplainArgs>),
    /// Format the `*.cedar` files of DIR with Cedar's formatter.
    Format {
        /// The policy folder.
        dir: PathBuf,
        /// Change nothing; exit 1 when a file is not formatted.
        #[arg(long)]
        check: bool,
    },
}

/// Where the schema and entities of a policy folder are, when not in the folder.
#[derive(clap::Args, Clone, Default)]
pub struct SetFiles {
    /// The Cedar schema [default: DIR/schema.cedarschema].
    #[arg(long)]
    schema: Option<PathBuf>,
    /// The entities file [default: DIR/entities.json, when present].
    #[arg(long)]
    entities: Option<PathBuf>,
}

pub fn run(cmd: PolicyCommand) -> Result<Outcome, Failure> {
    match cmd {
        PolicyCommand::Validate {
            dir,
            files,
            config,
            deny_warnings,
        } => validate::run(&dir, &files, config.as_deref(), deny_warnings),
        PolicyCommand::Test { dir, files, config } => {
            let snapshot = load_set(&dir, &files)?;
            test::run(&snapshot, &dir.join("tests"), config.as_deref())
        }
        PolicyCommand::Explain(args) => explain::run(*args),
        PolicyCommand::Format { dir, check } => format::run(&dir, check),
    }
}

/// The schema and entities files of a policy folder.
fn set_paths(dir: &Path, files: &SetFiles) -> (PathBuf, Option<PathBuf>) {
    let schema = files
        .schema
        .clone()
        .unwrap_or_else(|| dir.join("schema.cedarschema"));
    let entities = files.entities.clone().or_else(|| {
        let default = dir.join("entities.json");
        default.is_file().then_some(default)
    });
    (schema, entities)
}

/// Loads a policy set; a refused set is bad input, with every problem listed.
fn load_set(dir: &Path, files: &SetFiles) -> Result<PolicySnapshot, Failure> {
    load_checked(dir, files).map_err(|e| Failure::from(anyhow!(e)))
}

/// Loads a policy set as the proxy does, after refusing duplicate keys and entities in the
/// entities file (which JSON parsers let through).
fn load_checked(dir: &Path, files: &SetFiles) -> Result<PolicySnapshot, AuthzLoadError> {
    let (schema, entities) = set_paths(dir, files);
    if let Some(path) = &entities {
        if let Ok(text) = std::fs::read_to_string(path) {
            let problems = entities_dups::check(path, &text);
            if !problems.is_empty() {
                return Err(AuthzLoadError { problems });
            }
        }
    }
    PolicySnapshot::load(dir, &schema, entities.as_deref())
}

/// Loads a proxy config; a bad one is bad input, with every problem listed.
fn load_config(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| Failure::from(anyhow!(e)))
}

/// Parses a SPIFFE ID, with the rule it breaks.
fn spiffe_id(raw: &str) -> Result<SpiffeId, String> {
    parse_spiffe_id(raw)
}

/// Line and column (from 1) of a byte offset into `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
