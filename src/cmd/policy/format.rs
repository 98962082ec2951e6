//! `edgeward policy format [--check] DIR`: Cedar's own formatter (`cedar-policy-formatter`, the
//! one behind `cedar format`, line width 80, indent 2) over every `*.cedar` file of DIR.

use std::path::Path;

use anyhow::anyhow;
use cedar_policy::PolicySet;
use cedar_policy_formatter::{policies_str_to_pretty, Config};
use miette::Diagnostic;

use super::{line_col, Failure, Outcome};

pub fn run(dir: &Path, check: bool) -> Result<Outcome, Failure> {
    let files = super::cases::list_ext(dir, "cedar").map_err(|e| {
        Failure::from(anyhow!(
            "cannot list policy files in {}: {e}",
            dir.display()
        ))
    })?;

    // Format everything in memory first: a file that does not parse stops the run unwritten.
    let mut problems = Vec::new();
    let mut changed = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::from(anyhow!("cannot read {}: {e}", file.display())))?;
        if let Err(errors) = text.parse::<PolicySet>() {
            for error in errors.iter() {
                let offset = error
                    .labels()
                    .and_then(|mut l| l.next())
                    .map_or(0, |l| l.offset());
                let (line, col) = line_col(&text, offset);
                problems.push(format!("{}:{line}:{col}: error: {error}", file.display()));
            }
            continue;
        }
        match policies_str_to_pretty(&text, &Config::default()) {
            Ok(pretty) if pretty != text => changed.push((file, pretty)),
            Ok(_) => {}
            Err(e) => {
                let causes: Vec<String> = e.chain().map(ToString::to_string).collect();
                problems.push(format!("{}: error: {}", file.display(), causes.join(": ")));
            }
        }
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{problem}");
        }
        return Err(anyhow!(
            "{} file(s) cannot be formatted; nothing was written",
            problems.len()
        )
        .into());
    }

    // Report or write.
    if check {
        for (file, _) in &changed {
            println!("would reformat {}", file.display());
        }
        return Ok(if changed.is_empty() {
            println!("{} file(s) already formatted", files.len());
            Outcome::Done
        } else {
            Outcome::No(format!("{} file(s) need formatting", changed.len()))
        });
    }
    for (file, pretty) in &changed {
        std::fs::write(file, pretty)
            .map_err(|e| Failure::from(anyhow!("cannot write {}: {e}", file.display())))?;
        println!("formatted {}", file.display());
    }
    println!("{} file(s), {} reformatted", files.len(), changed.len());
    Ok(Outcome::Done)
}
