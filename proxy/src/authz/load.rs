//! Loading a policy set: the schema, every `*.cedar` file of a folder and the entities file,
//! validated together into one immutable [`PolicySnapshot`].
//!
//! Loading is all or nothing: every problem is collected with its file and line, in the style
//! of the Cedar tools, and any problem refuses the whole set, so the caller keeps serving with
//! its last good snapshot ([`PolicyStore::reload`]).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use cedar_policy::{Entities, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;

use super::index::PolicyIndex;
use super::PolicyRef;

mod entities_file;
mod per_action;

/// One problem found while loading, e.g. `policies/a.cedar:3:7: error: unexpected token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadProblem {
    /// The file at fault.
    pub file: PathBuf,
    /// The line (from 1) when known.
    pub line: Option<usize>,
    /// The column (from 1) when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// What to do about it, when Cedar has a hint.
    pub help: Option<String>,
}

impl LoadProblem {
    pub(crate) fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            column: None,
            message: message.into(),
            help: None,
        }
    }

    /// Sets line and column from a byte offset into `text`.
    pub(crate) fn at_offset(mut self, text: &str, offset: usize) -> Self {
        let (line, column) = line_col(text, offset);
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// A problem from a Cedar diagnostic whose labels point into `text` (when given).
    fn from_diagnostic(file: &Path, text: Option<&str>, diag: &dyn Diagnostic) -> Self {
        let mut problem = Self::new(file, diag.to_string());
        problem.help = diag.help().map(|h| h.to_string());
        let offset = diag
            .labels()
            .and_then(|mut labels| labels.next())
            .map(|l| l.offset());
        match (text, offset) {
            (Some(text), Some(offset)) => problem.at_offset(text, offset),
            _ => problem,
        }
    }
}

impl fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": error: {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// The policy set was refused; it lists every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct AuthzLoadError {
    /// Every problem, in file order.
    pub problems: Vec<LoadProblem>,
}

impl fmt::Display for AuthzLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy set refused, {} error(s):", self.problems.len())?;
        for problem in &self.problems {
            write!(f, "\n{problem}")?;
        }
        Ok(())
    }
}

/// A validated, immutable policy set with its schema and entities. A request is decided
/// against one snapshot from start to end.
#[derive(Debug)]
pub struct PolicySnapshot {
    /// Unique to this snapshot in the process: what a per-thread cache built from it is
    /// checked against (see `request::entities`).
    pub(crate) generation: u64,
    pub(crate) schema: Schema,
    pub(crate) policies: PolicySet,
    pub(crate) index: PolicyIndex,
    /// The entities file, validated, with derived principal attributes filled in.
    pub(crate) entities: Entities,
    /// The schema's action entities (methods and their groups).
    pub(crate) actions: Entities,
    pub(crate) refs: HashMap<PolicyId, PolicyRef>,
    /// Whether requests of a (principal type, action) conform to the schema, found by
    /// validating the first such request in full (see `request::finish`).
    pub(crate) conforms: std::sync::Mutex<HashMap<(String, String), Result<(), String>>>,
    /// Decisions already made under this snapshot (see [`super::memo`]).
    pub(crate) memo: super::memo::DecisionMemo,
}

impl PolicySnapshot {
    /// Loads and validates a policy set; see [`PolicyStore::load`].
    pub fn load(
        policies_dir: &Path,
        schema_file: &Path,
        entities_file: Option<&Path>,
    ) -> Result<Self, AuthzLoadError> {
        let mut problems = Vec::new();

        // Schema first: without it nothing can be validated, but policy syntax is still checked.
        let schema = load_schema(schema_file, &mut problems);

        // Policies, file by file in name order, with their ids and lines.
        let parsed = load_policy_files(policies_dir, &mut problems);
        let policies = match PolicySet::from_policies(parsed.policies) {
            Ok(set) => set,
            Err(e) => {
                problems.push(LoadProblem::new(policies_dir, e.to_string()));
                PolicySet::new()
            }
        };

        // Strict validation of the policies, and the entities file, against the schema.
        let mut entities = Entities::empty();
        let mut actions = Entities::empty();
        if let Some(schema) = &schema {
            let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
            let mut found = Vec::new();
            for error in result.validation_errors() {
                let reference = parsed.refs.get(error.policy_id());
                let file = reference.map_or(policies_dir, |r| r.file.as_path());
                let text = reference
                    .and_then(|r| parsed.texts.get(&r.file))
                    .map(String::as_str);
                let mut problem = LoadProblem::from_diagnostic(file, text, error);
                if problem.line.is_none() {
                    problem.line = reference.map(|r| r.line);
                }
                found.push(problem);
            }
            problems.extend(per_action::merge(found));
            match schema.action_entities() {
                Ok(found) => actions = found,
                Err(e) => problems.push(LoadProblem::new(schema_file, e.to_string())),
            }
            if let Some(file) = entities_file {
                if let Some(found) = entities_file::load(file, schema, &mut problems) {
                    entities = found;
                }
            }
        }

        // All or nothing.
        let schema = match schema {
            Some(schema) if problems.is_empty() => schema,
            _ => return Err(AuthzLoadError { problems }),
        };
        let index = PolicyIndex::build(&policies, &actions, &schema);
        let memo = super::memo::DecisionMemo::new(super::memo::ContextReads::of(&policies));
        static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(Self {
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            schema,
            policies,
            index,
            entities,
            actions,
            refs: parsed.refs,
            conforms: Default::default(),
            memo,
        })
    }

    /// The number of policies in force.
    pub fn policy_count(&self) -> usize {
        self.policies.num_of_policies()
    }

    /// Where a policy comes from.
    pub fn policy_ref(&self, id: &PolicyId) -> Option<&PolicyRef> {
        self.refs.get(id)
    }

    /// Every policy with its origin, sorted by file and line.
    pub fn policy_refs(&self) -> Vec<&PolicyRef> {
        let mut refs: Vec<&PolicyRef> = self.refs.values().collect();
        refs.sort_by(|a, b| (&a.file, a.line, &a.id).cmp(&(&b.file, b.line, &b.id)));
        refs
    }

    /// The validated Cedar policy set (for `edgeward policy` tooling).
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The schema the set was validated against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }
}

/// Holds the policy snapshot in force and swaps it atomically on reload; a request keeps the
/// snapshot it started with.
#[derive(Debug)]
pub struct PolicyStore {
    current: ArcSwap<PolicySnapshot>,
}

impl PolicyStore {
    /// Reads every `*.cedar` file in `policies_dir` (sorted by name), validates them strictly
    /// against the schema in `schema_file` (Cedar schema syntax), and validates the entities
    /// file (Cedar JSON entities) against the schema. Policy ids are the `@id("...")` annotation
    /// or `<file stem>:<index>`; a duplicate id is an error. A folder without policies loads and
    /// denies everything.
    pub fn load(
        policies_dir: &Path,
        schema_file: &Path,
        entities_file: Option<&Path>,
    ) -> Result<PolicySnapshot, AuthzLoadError> {
        PolicySnapshot::load(policies_dir, schema_file, entities_file)
    }

    /// A store serving `snapshot`.
    pub fn new(snapshot: PolicySnapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The snapshot in force.
    pub fn current(&self) -> Arc<PolicySnapshot> {
        self.current.load_full()
    }

    /// Puts an already loaded set in force.
    pub fn replace(&self, snapshot: PolicySnapshot) {
        self.current.store(Arc::new(snapshot));
    }

    /// Loads a new set and puts it in force; on error the snapshot in force stays.
    pub fn reload(
        &self,
        policies_dir: &Path,
        schema_file: &Path,
        entities_file: Option<&Path>,
    ) -> Result<(), AuthzLoadError> {
        let snapshot = PolicySnapshot::load(policies_dir, schema_file, entities_file)?;
        self.current.store(Arc::new(snapshot));
        Ok(())
    }
}

fn load_schema(schema_file: &Path, problems: &mut Vec<LoadProblem>) -> Option<Schema> {
    let text = match std::fs::read_to_string(schema_file) {
        Ok(text) => text,
        Err(e) => {
            problems.push(LoadProblem::new(
                schema_file,
                format!("cannot read the schema: {e}"),
            ));
            return None;
        }
    };
    match Schema::from_cedarschema_str(&text) {
        Ok((schema, _warnings)) => Some(schema),
        Err(e) => {
            problems.push(LoadProblem::from_diagnostic(schema_file, Some(&text), &e));
            None
        }
    }
}

/// The policies of a folder, renamed to their final ids.
struct ParsedFiles {
    policies: Vec<cedar_policy::Policy>,
    refs: HashMap<PolicyId, PolicyRef>,
    texts: HashMap<PathBuf, String>,
}

fn load_policy_files(dir: &Path, problems: &mut Vec<LoadProblem>) -> ParsedFiles {
    let mut parsed = ParsedFiles {
        policies: Vec::new(),
        refs: HashMap::new(),
        texts: HashMap::new(),
    };
    let files = match list_cedar_files(dir) {
        Ok(files) => files,
        Err(e) => {
            problems.push(LoadProblem::new(
                dir,
                format!("cannot list policy files: {e}"),
            ));
            return parsed;
        }
    };
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(LoadProblem::new(&file, format!("cannot read: {e}")));
                continue;
            }
        };
        parse_file(&file, &text, &mut parsed, problems);
        parsed.texts.insert(file, text);
    }
    parsed
}

fn list_cedar_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "cedar") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Parses one file and names its policies. Cedar names the policies of a parsed text
/// `policy0`, `policy1`, ... in source order; each keeps its own text, which is found in the file
/// to give its line.
fn parse_file(file: &Path, text: &str, out: &mut ParsedFiles, problems: &mut Vec<LoadProblem>) {
    let set = match text.parse::<PolicySet>() {
        Ok(set) => set,
        Err(errors) => {
            for error in errors.iter() {
                problems.push(LoadProblem::from_diagnostic(file, Some(text), error));
            }
            return;
        }
    };
    if set.templates().next().is_some() {
        problems.push(LoadProblem::new(
            file,
            "templates (policies with `?principal` or `?resource`) are not supported; write static policies",
        ));
        return;
    }
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cursor = 0;
    // The line of `counted_to`, advanced as policies are found (counting from the start of the
    // file for each policy made loading 10 000 policies take seconds).
    let (mut line, mut counted_to) = (1, 0);
    for index in 0..set.num_of_policies() {
        let Some(policy) = set.policy(&PolicyId::new(format!("policy{index}"))) else {
            problems.push(LoadProblem::new(
                file,
                format!("policy {index} missing after parse"),
            ));
            continue;
        };

        // Locate the policy's own text after the previous one to find its line.
        let source = policy.to_cedar().unwrap_or_default();
        let offset = text
            .get(cursor..)
            .and_then(|rest| rest.find(&source))
            .map_or(cursor, |found| cursor + found);
        cursor = offset + source.len();
        line += text
            .get(counted_to..offset)
            .map_or(0, |between| between.matches('\n').count());
        counted_to = offset.max(counted_to);

        // Name it and refuse duplicates across all files.
        let id = policy
            .annotation("id")
            .map_or_else(|| format!("{stem}:{index}"), str::to_owned);
        let policy_id = PolicyId::new(&id);
        if let Some(first) = out.refs.get(&policy_id) {
            problems.push(
                LoadProblem::new(
                    file,
                    format!(
                        "duplicate policy id `{id}`, first defined at {}:{}",
                        first.file.display(),
                        first.line
                    ),
                )
                .at_offset(text, offset),
            );
            continue;
        }
        out.refs.insert(
            policy_id.clone(),
            PolicyRef {
                id,
                file: file.to_owned(),
                line,
            },
        );
        out.policies.push(policy.new_id(policy_id));
    }
}

/// Line and column (both from 1) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
