//! `edgeward policy test DIR`: every case of `DIR/tests/*.toml`, decided as the proxy would,
//! pass or fail with a diff. Any bad test file stops the run before a case runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use edgeward_proxy::authz::PolicySnapshot;
use edgeward_proxy::config::Config;
use time::OffsetDateTime;

use super::cases::{self, Case, TestFile};
use super::query::{self, Explained};
use super::{Failure, Outcome};

pub fn run(
    snapshot: &PolicySnapshot,
    tests_dir: &Path,
    config_flag: Option<&Path>,
) -> Result<Outcome, Failure> {
    let now = OffsetDateTime::now_utc().unix_timestamp();

    // Read every file and every config it names; report all problems at once.
    let files = cases::list(tests_dir).map_err(|e| {
        Failure::from(anyhow!(
            "cannot list test files in {}: {e}",
            tests_dir.display()
        ))
    })?;
    if files.is_empty() {
        return Err(anyhow!("no test files (`*.toml`) in {}", tests_dir.display()).into());
    }
    let mut problems = Vec::new();
    let mut loaded: Vec<TestFile> = Vec::new();
    let mut configs: BTreeMap<PathBuf, Config> = BTreeMap::new();
    for path in &files {
        match cases::read(path, now) {
            Ok(file) => loaded.push(file),
            Err(found) => problems.extend(found),
        }
    }
    for file in &mut loaded {
        if file.config.is_none() {
            file.config = config_flag.map(Path::to_owned);
        }
        let Some(config_path) = &file.config else {
            continue;
        };
        for case in &file.cases {
            let s = &case.standalone;
            if s.route.is_some() || s.service.is_some() || s.site.is_some() {
                problems.push(format!(
                    "{}:{}:1: error: case `{}`: `route`, `service` and `site` come from the config {} here; remove them",
                    file.path.display(),
                    case.line,
                    case.name,
                    config_path.display()
                ));
            }
        }
        if !configs.contains_key(config_path) {
            match Config::load(config_path) {
                Ok(config) => {
                    configs.insert(config_path.clone(), config);
                }
                Err(e) => problems.push(format!("{}: error: {e}", file.path.display())),
            }
        }
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{problem}");
        }
        return Err(anyhow!(
            "{} problem(s) in the test files; no case was run",
            problems.len()
        )
        .into());
    }

    // Run every case.
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &loaded {
        println!("{}", file.path.display());
        let config = file.config.as_ref().and_then(|p| configs.get(p));
        for case in &file.cases {
            let explained = match config {
                Some(config) => query::decide(snapshot, config, &case.query),
                None => match query::standalone_config(&case.standalone) {
                    Ok(config) => {
                        query::without_upstream(query::decide(snapshot, &config, &case.query))
                    }
                    Err(e) => {
                        return Err(anyhow!(
                            "{}:{}:1: error: case `{}`: {e}",
                            file.path.display(),
                            case.line,
                            case.name
                        )
                        .into())
                    }
                },
            };
            match diff(case, &explained) {
                None => {
                    passed += 1;
                    println!("  pass  {}", case.name);
                }
                Some(diff) => {
                    failed += 1;
                    println!(
                        "  FAIL  {} ({}:{})",
                        case.name,
                        file.path.display(),
                        case.line
                    );
                    println!("{diff}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        Outcome::Done
    } else {
        Outcome::No(format!("{failed} of {} cases failed", passed + failed))
    })
}

/// The differences between what the case expects and what the proxy decides, as `-` expected
/// and `+` actual lines; `None` when the case passes.
pub fn diff(case: &Case, explained: &Explained) -> Option<String> {
    let mut lines = Vec::new();
    if explained.verdict() != case.expect.as_str() {
        lines.push(format!("        - decision: {}", case.expect.as_str()));
        lines.push(format!("        + decision: {}", explained.verdict()));
    }
    let actual = explained.policy_ids();
    if let Some(expected) = &case.policies {
        let mut expected = expected.clone();
        expected.sort();
        let mut sorted = actual.clone();
        sorted.sort();
        if expected != sorted {
            lines.push(format!("        - policies: [{}]", expected.join(", ")));
            lines.push(format!("        + policies: [{}]", sorted.join(", ")));
        }
    }
    if lines.is_empty() {
        return None;
    }
    for error in &explained.decision.errors {
        lines.push(format!("          error: {error}"));
    }
    if let (Some(host), Some(path)) = (&explained.host, &explained.path) {
        lines.push(format!("          canonical: host `{host}`, path `{path}`"));
    }
    Some(lines.join("\n"))
}
