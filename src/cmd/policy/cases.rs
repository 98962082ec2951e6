//! Test files of `edgeward policy test`: TOML, one `[[case]]` per request, read whole or not
//! at all. Unknown and duplicate keys are refused by the TOML parser with their line; every
//! case is checked (SPIFFE ID, target, time) before any is run.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use toml::Spanned;

use super::line_col;
use super::query::{Query, Standalone, Target, DEFAULT_PEER_IP};

/// The expected decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    config: Option<String>,
    #[serde(default)]
    case: Vec<Spanned<RawCase>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    identity: Option<Spanned<String>>,
    method: String,
    url: Option<String>,
    host: Option<String>,
    path: Option<String>,
    route: Option<String>,
    service: Option<String>,
    site: Option<String>,
    zone: Option<String>,
    region: Option<String>,
    peer_ip: Option<IpAddr>,
    time: Option<Spanned<String>>,
    mtls: Option<bool>,
    tls_version: Option<String>,
    alpn: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    expect: Expect,
    policies: Option<Vec<String>>,
}

/// One test case, checked.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// Where the case starts in its file.
    pub line: usize,
    pub query: Query,
    /// The route and node when the file has no config.
    pub standalone: Standalone,
    pub expect: Expect,
    pub policies: Option<Vec<String>>,
}

/// A test file, checked.
#[derive(Debug, Clone)]
pub struct TestFile {
    pub path: PathBuf,
    /// The proxy config the file names, resolved against the file's folder.
    pub config: Option<PathBuf>,
    pub cases: Vec<Case>,
}

/// Reads and checks a test file; each problem is `file:line:col: error: message`.
pub fn read(path: &Path, now_unix: i64) -> Result<TestFile, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![format!(
            "{}: error: cannot read the test file: {e}",
            path.display()
        )]
    })?;
    let at = |offset: usize, message: String| {
        let (line, col) = line_col(&text, offset);
        format!("{}:{line}:{col}: error: {message}", path.display())
    };
    let raw: RawFile = toml::from_str(&text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        vec![at(offset, e.message().trim_end().to_owned())]
    })?;

    let mut problems = Vec::new();
    let mut cases = Vec::new();
    for spanned in raw.case {
        let start = spanned.span().start;
        let raw = spanned.into_inner();

        // The identity, by the SPIFFE rules the certificate tooling enforces.
        let identity = match &raw.identity {
            None => None,
            Some(id) => match super::spiffe_id(id.get_ref()) {
                Ok(id) => Some(id),
                Err(e) => {
                    problems.push(at(id.span().start, format!("case `{}`: {e}", raw.name)));
                    continue;
                }
            },
        };

        // The target: a URL, or a host and a path.
        let target = match (&raw.url, &raw.host, &raw.path) {
            (Some(url), None, None) => Target::Url(url.clone()),
            (None, Some(host), Some(path)) => Target::HostPath {
                host: host.clone(),
                path: path.clone(),
            },
            _ => {
                problems.push(at(
                    start,
                    format!(
                        "case `{}`: give either `url`, or `host` and `path`",
                        raw.name
                    ),
                ));
                continue;
            }
        };

        // The time, RFC 3339; by default now.
        let now = match &raw.time {
            None => now_unix,
            Some(t) => match OffsetDateTime::parse(t.get_ref(), &Rfc3339) {
                Ok(t) => t.unix_timestamp(),
                Err(e) => {
                    problems.push(at(
                        t.span().start,
                        format!("case `{}`: `time` is not an RFC 3339 time: {e}", raw.name),
                    ));
                    continue;
                }
            },
        };
        let default_ip: IpAddr = DEFAULT_PEER_IP
            .parse()
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        cases.push(Case {
            line: line_col(&text, start).0,
            query: Query {
                identity,
                method: raw.method,
                target,
                peer_ip: raw.peer_ip.unwrap_or(default_ip),
                now_unix: now,
                mtls: raw.mtls,
                tls_version: raw.tls_version,
                alpn: raw.alpn,
                headers: raw.headers.into_iter().collect(),
            },
            standalone: Standalone {
                route: raw.route,
                service: raw.service,
                site: raw.site,
                zone: raw.zone,
                region: raw.region,
            },
            name: raw.name,
            expect: raw.expect,
            policies: raw.policies,
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let config = raw
        .config
        .map(|c| path.parent().unwrap_or(Path::new(".")).join(c));
    Ok(TestFile {
        path: path.to_owned(),
        config,
        cases,
    })
}

/// The `*.toml` files of a folder, sorted by name.
pub fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    list_ext(dir, "toml")
}

/// The files of a folder with extension `ext`, sorted by name.
pub fn list_ext(dir: &Path, ext: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == ext) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
