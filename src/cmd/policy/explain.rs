//! `edgeward policy explain`: the decision for one request, the policies that made it (file
//! and line), evaluation errors, the canonical host and path, and the route and upstream tier
//! the proxy would pick. Exit 0 whatever the decision: the command answered.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use edgeward_certs::SpiffeId;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::query::{self, Query, Standalone, Target, DEFAULT_PEER_IP};
use super::{load_config, load_set, parse_spiffe_id, Failure, Outcome, SetFiles};

#[derive(Args)]
pub struct ExplainArgs {
    /// The peer's SPIFFE ID; leave out for an anonymous request.
    #[arg(long, value_parser = parse_spiffe_id)]
    identity: Option<SpiffeId>,
    /// The HTTP method (case-sensitive).
    #[arg(long)]
    method: String,
    /// The request URL, e.g. `https://site.example/api/x`.
    #[arg(long)]
    url: String,
    /// The proxy config: routes, node locality, context headers, and (without --policies)
    /// the policy set.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The policy folder [default: the config's `authz.policies`].
    #[arg(long)]
    policies: Option<PathBuf>,
    #[command(flatten)]
    files: SetFiles,
    /// Without --config: the route the request matches.
    #[arg(long, conflicts_with = "config")]
    route: Option<String>,
    /// Without --config: the route's service [default: the route].
    #[arg(long, conflicts_with = "config")]
    service: Option<String>,
    /// Without --config: the node's site.
    #[arg(long, conflicts_with = "config")]
    site: Option<String>,
    /// The peer address.
    #[arg(long, default_value = DEFAULT_PEER_IP)]
    peer_ip: IpAddr,
    /// The request time, RFC 3339 [default: now].
    #[arg(long, value_parser = parse_time)]
    time: Option<OffsetDateTime>,
    /// A request header `name: value` (repeatable); the config picks those policies see.
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once(':')
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("`{s}` is not `name: value`"))
}

/// `--url` must be absolute (`http://` or `https://`, then a host): anything else is bad input,
/// not a request to explain.
fn check_url(url: &str) -> Result<(), Failure> {
    let rest = ["https://", "http://"].iter().find_map(|scheme| {
        url.get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .map(|_| &url[scheme.len()..])
    });
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(()),
        _ => Err(anyhow!(
            "--url `{}`: expected an absolute URL such as `https://gw.example/api/x`",
            url.escape_default()
        )
        .into()),
    }
}

pub fn run(args: ExplainArgs) -> Result<Outcome, Failure> {
    check_url(&args.url)?;
    // The config (or a standalone one) and the policy set.
    let (config, snapshot, standalone) = match &args.config {
        Some(path) => {
            let config = load_config(path)?;
            let snapshot = match &args.policies {
                Some(dir) => load_set(dir, &args.files)?,
                None => {
                    let files = SetFiles {
                        schema: Some(config.authz.schema.clone()),
                        entities: config.authz.entities.clone(),
                    };
                    load_set(&config.authz.policies, &files)?
                }
            };
            (config, snapshot, false)
        }
        None => {
            let dir = args.policies.as_deref().ok_or_else(|| {
                anyhow!("give --config FILE, or --policies DIR with --route and --site")
            })?;
            let given = Standalone {
                route: args.route.clone(),
                service: args.service.clone(),
                site: args.site.clone(),
                ..Standalone::default()
            };
            let config = query::standalone_config(&given).map_err(|e| anyhow!(e))?;
            (config, load_set(dir, &args.files)?, true)
        }
    };

    // Decide as the proxy would.
    let query = Query {
        identity: args.identity,
        method: args.method,
        target: Target::Url(args.url),
        peer_ip: args.peer_ip,
        now_unix: args
            .time
            .unwrap_or_else(OffsetDateTime::now_utc)
            .unix_timestamp(),
        mtls: None,
        tls_version: None,
        alpn: None,
        headers: args.headers,
    };
    let explained = query::decide(&snapshot, &config, &query);
    let explained = if standalone {
        query::without_upstream(explained)
    } else {
        explained
    };

    if args.json {
        let text =
            serde_json::to_string_pretty(&explained.to_json()).map_err(anyhow::Error::from)?;
        println!("{text}");
        return Ok(Outcome::Done);
    }
    println!("decision: {}", explained.verdict());
    match (&explained.host, &explained.path) {
        (Some(host), Some(path)) => println!("canonical: host `{host}`, path `{path}`"),
        _ => println!("canonical: (not reached)"),
    }
    match &explained.route {
        Some(route) => {
            println!(
                "route: `{}` (service `{}`, mode {})",
                route.name, route.service, route.mode
            );
            if let Some((endpoint, tier)) = &route.upstream {
                println!(
                    "upstream: {endpoint} in cluster `{}`, tier {tier}",
                    route.cluster
                );
            }
        }
        None => println!("route: none"),
    }
    if explained.decision.reasons.is_empty() {
        let why = if explained.decision.allowed || !explained.decision.errors.is_empty() {
            ""
        } else {
            " (default deny: no permit applies)"
        };
        println!("policies: none{why}");
    } else {
        println!("policies:");
        for r in &explained.decision.reasons {
            println!("  {}:{}: `{}`", r.file.display(), r.line, r.id);
        }
    }
    for error in &explained.decision.errors {
        println!("error: {error}");
    }
    Ok(Outcome::Done)
}
