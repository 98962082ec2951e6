//! `edgeward policy validate DIR`: strict validation against the schema (the proxy's loader),
//! then the lints of `edgeward_proxy::authz::lint`. Exit 1 on any error, or on warnings with
//! `--deny-warnings`.

use std::path::Path;

use edgeward_proxy::authz::lint::{lint, Severity};

use super::{load_checked, load_config, Failure, Outcome, SetFiles};

pub fn run(
    dir: &Path,
    files: &SetFiles,
    config: Option<&Path>,
    deny_warnings: bool,
) -> Result<Outcome, Failure> {
    let config = config.map(load_config).transpose()?;

    // Strict validation: the set the proxy would refuse is refused here, with every problem.
    let snapshot = match load_checked(dir, files) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            for problem in &e.problems {
                println!("{problem}");
            }
            return Ok(Outcome::No(format!(
                "validation failed: {} error(s); the proxy would refuse this set",
                e.problems.len()
            )));
        }
    };

    // Lints.
    let found = lint(&snapshot, config.as_ref());
    for finding in &found {
        println!("{finding}");
    }
    let errors = found
        .iter()
        .filter(|l| l.severity == Severity::Error)
        .count();
    let warnings = found.len() - errors;
    let summary = format!(
        "{} policies, {errors} error(s), {warnings} warning(s)",
        snapshot.policy_count()
    );
    Ok(if errors > 0 || (deny_warnings && warnings > 0) {
        Outcome::No(format!("validation failed: {summary}"))
    } else {
        println!("valid: {summary}");
        Outcome::Done
    })
}
