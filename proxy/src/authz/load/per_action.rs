//! Strict validation checks a policy once for every action it may apply to, and reports one
//! mistake once per action: "attribute `sitee` in context for Edgeward::Action::\"GET\" not
//! found", then the same for "POST", "PUT"... An operator sees seven errors for one typo. These
//! are merged into one problem that names every action.

use super::LoadProblem;

/// The problems, with those that differ only in the action they name merged into the first,
/// which then lists every action (sorted).
pub fn merge(problems: Vec<LoadProblem>) -> Vec<LoadProblem> {
    let mut merged: Vec<(Option<String>, LoadProblem, Vec<String>)> = Vec::new();
    for problem in problems {
        let Some((key, action)) = split_action(&problem.message) else {
            merged.push((None, problem, Vec::new()));
            continue;
        };
        let same = merged.iter_mut().find(|(k, p, _)| {
            k.as_deref() == Some(key.as_str())
                && p.file == problem.file
                && (p.line, p.column) == (problem.line, problem.column)
                && p.help == problem.help
        });
        match same {
            Some((_, _, actions)) => actions.push(action),
            None => merged.push((Some(key), problem, vec![action])),
        }
    }
    merged
        .into_iter()
        .map(|(key, mut problem, mut actions)| {
            if let (Some(key), true) = (key, actions.len() > 1) {
                // Cedar checks the actions in no fixed order; the message is the same each time.
                actions.sort();
                actions.dedup();
                let names: Vec<String> = actions.iter().map(|a| format!("\"{a}\"")).collect();
                problem.message = key.replacen(PLACE, &names.join(", "), 1);
            }
            problem
        })
        .collect()
}

/// Where the action's name was, in a message's key.
const PLACE: &str = "\u{0}";

/// The message with its first action name (`Action::"NAME"`) taken out, and the name.
fn split_action(message: &str) -> Option<(String, String)> {
    const MARK: &str = "Action::\"";
    let start = message.find(MARK)? + MARK.len();
    let len = message[start..].find('"')?;
    let name = &message[start..start + len];
    let key = format!(
        "{}{PLACE}{}",
        &message[..start - 1],
        &message[start + len + 1..]
    );
    Some((key, name.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn problem(line: usize, message: &str) -> LoadProblem {
        LoadProblem {
            file: PathBuf::from("a.cedar"),
            line: Some(line),
            column: Some(26),
            message: message.to_owned(),
            help: Some("did you mean `site`?".to_owned()),
        }
    }

    fn ctx(action: &str) -> String {
        format!("for policy `p`, attribute `sitee` in context for Edgeward::Action::\"{action}\" not found")
    }

    #[test]
    fn one_mistake_for_many_actions_is_one_problem_naming_them_all() {
        let found = merge(vec![
            problem(16, &ctx("GET")),
            problem(16, &ctx("POST")),
            problem(3, "unrelated"),
            problem(16, &ctx("PUT")),
            problem(26, &ctx("GET")),
        ]);
        let messages: Vec<&str> = found.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "for policy `p`, attribute `sitee` in context for Edgeward::Action::\"GET\", \"POST\", \"PUT\" not found",
                "unrelated",
                // Another place: another problem, with its one action as Cedar said it.
                &ctx("GET"),
            ]
        );
    }
}
