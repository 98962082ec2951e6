//! Lifetimes given on the command line: `24h`, `7d`, `1y`, `90m`, or a combination (`1d12h`).

use std::time::Duration;

/// Why a lifetime was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    #[error("ttl `{0}` is negative: give a positive duration such as `24h` or `7d`")]
    Negative(String),
    #[error("ttl `{0}` is zero: give a positive duration such as `24h` or `7d`")]
    Zero(String),
    #[error("ttl `{input}` is not a duration ({reason}): use a number and a unit, e.g. `90m`, `24h`, `7d`, `1y`")]
    Unparseable { input: String, reason: String },
    #[error("ttl `{0}` is longer than 100 years")]
    TooLong(String),
}

/// Parses a positive lifetime. Years count 365.25 days, as humantime does.
pub fn parse_ttl(input: &str) -> Result<Duration, TtlError> {
    let trimmed = input.trim();
    if trimmed.starts_with('-') {
        return Err(TtlError::Negative(input.to_owned()));
    }
    let d = humantime::parse_duration(trimmed).map_err(|e| TtlError::Unparseable {
        input: input.to_owned(),
        reason: e.to_string(),
    })?;
    if d.is_zero() {
        return Err(TtlError::Zero(input.to_owned()));
    }
    if d > Duration::from_secs(100 * 366 * 86_400) {
        return Err(TtlError::TooLong(input.to_owned()));
    }
    Ok(d)
}

/// Renders a duration for people: `3d 4h`, `12m`, `45s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins) = (s / 86_400, (s % 86_400) / 3_600, (s % 3_600) / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_units() {
        assert_eq!(parse_ttl("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_ttl("90m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_ttl("1d12h").unwrap(), Duration::from_secs(129_600));
        assert_eq!(parse_ttl("10y").unwrap(), Duration::from_secs(315_576_000));
    }

    #[test]
    fn refuses_zero_negative_and_garbage() {
        assert!(matches!(parse_ttl("0s"), Err(TtlError::Zero(_))));
        assert!(matches!(parse_ttl("0"), Err(TtlError::Zero(_))));
        assert!(matches!(parse_ttl("-1h"), Err(TtlError::Negative(_))));
        assert!(matches!(
            parse_ttl("soon"),
            Err(TtlError::Unparseable { .. })
        ));
        assert!(matches!(parse_ttl(""), Err(TtlError::Unparseable { .. })));
        assert!(matches!(parse_ttl("12"), Err(TtlError::Unparseable { .. })));
        assert!(matches!(parse_ttl("1000y"), Err(TtlError::TooLong(_))));
    }

    #[test]
    fn renders_for_people() {
        assert_eq!(human(Duration::from_secs(45)), "45s");
        assert_eq!(human(Duration::from_secs(3_700)), "1h 1m");
        assert_eq!(human(Duration::from_secs(3 * 86_400 + 4 * 3_600)), "3d 4h");
    }
}
