//! Duplicates in an entities file that JSON parsers let through: a key given twice in one
//! object (serde_json keeps the last one silently) and an entity listed twice. Either means
//! the file does not say what its author thinks, so both are refused with file and line.
//!
//! [`check`] runs on the raw text before the file is parsed; `edgeward policy` calls it before
//! loading a set, and the proxy's loader should call it too (one function, both sides).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::load::LoadProblem;

enum Frame {
    Object {
        keys: HashSet<String>,
        expect_key: bool,
    },
    Array,
}

/// Every duplicate key and duplicate entity uid in `text`, with line and column. Malformed
/// JSON yields no problems here: the parser reports it.
pub fn check(file: &Path, text: &str) -> Vec<LoadProblem> {
    let mut problems = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut entity_starts = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                let Some((value, end)) = read_string(text, i) else {
                    return problems;
                };
                i = end;
                if let Some(Frame::Object { keys, expect_key }) = stack.last_mut() {
                    if *expect_key {
                        *expect_key = false;
                        if !keys.insert(value.clone()) {
                            problems.push(
                                LoadProblem::new(file, format!("duplicate key `{value}` in one object; a JSON reader would keep only the last"))
                                    .at_offset(text, start),
                            );
                        }
                    }
                }
                continue;
            }
            b'{' => {
                if stack.len() == 1 && matches!(stack.first(), Some(Frame::Array)) {
                    entity_starts.push(i);
                }
                stack.push(Frame::Object {
                    keys: HashSet::new(),
                    expect_key: true,
                });
            }
            b'[' => stack.push(Frame::Array),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                if let Some(Frame::Object { expect_key, .. }) = stack.last_mut() {
                    *expect_key = true;
                }
            }
            _ => {}
        }
        i += 1;
    }

    // Entities listed twice, by uid.
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let Ok(entries) = serde_json::from_str::<Vec<serde_json::Value>>(text) else {
        return problems;
    };
    for (entry, start) in entries.iter().zip(entity_starts) {
        let uid = &entry["uid"];
        let (Some(ty), Some(id)) = (uid["type"].as_str(), uid["id"].as_str()) else {
            continue;
        };
        let key = (ty.to_owned(), id.to_owned());
        if let Some(first) = seen.get(&key) {
            let (line, _) = super::load::line_col(text, *first);
            problems.push(
                LoadProblem::new(
                    file,
                    format!("entity `{ty}::\"{id}\"` is listed twice, first at line {line}"),
                )
                .at_offset(text, start),
            );
        } else {
            seen.insert(key, start);
        }
    }
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

/// The string starting at the quote at `start`, unescaped enough to compare keys, and the
/// offset after its closing quote.
fn read_string(text: &str, start: usize) -> Option<(String, usize)> {
    let bytes = text.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => {
                let raw = text.get(start..=i)?;
                let value = serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_owned());
                return Some((value, i + 1));
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<String> {
        check(Path::new("e.json"), text)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_clean_file_has_no_problems() {
        let text = include_str!("../../../policies/entities.json");
        assert_eq!(found(text), Vec::<String>::new());
    }

    #[test]
    fn a_key_given_twice_in_one_object_is_refused_with_its_line() {
        let text = "[\n {\"uid\": {\"type\": \"Edgeward::Group\", \"id\": \"a\"},\n  \"attrs\": {}, \"attrs\": {}, \"parents\": []}\n]";
        assert_eq!(
            found(text),
            ["e.json:3:16: error: duplicate key `attrs` in one object; a JSON reader would keep only the last"]
        );
    }

    #[test]
    fn the_same_key_in_sibling_objects_and_in_strings_is_fine() {
        let text = r#"[{"uid": {"type": "T", "id": "a\"b,"}, "attrs": {"k": 1}, "parents": []},
            {"uid": {"type": "T", "id": "c"}, "attrs": {"k": 1}, "parents": []}]"#;
        assert_eq!(found(text), Vec::<String>::new());
    }

    #[test]
    fn an_entity_listed_twice_is_refused() {
        let text = "[\n{\"uid\": {\"type\": \"T\", \"id\": \"a\"}},\n{\"uid\": {\"type\": \"T\", \"id\": \"a\"}}\n]";
        assert_eq!(
            found(text),
            ["e.json:3:1: error: entity `T::\"a\"` is listed twice, first at line 2"]
        );
    }
}
