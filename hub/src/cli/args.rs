//! Positional arguments shared by several commands: `KIND NAME...` and `KIND/NAME`
//! targets, and durations such as `60s` or `1m30s`.

use std::time::Duration;

use skiff_api::Kind;

use super::error::CliError;

/// What a command was pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Targets {
    /// Named objects: from `KIND NAME...` (every kind of a `KIND1,KIND2` list with every
    /// name) or `KIND/NAME...`.
    Named(Vec<(Kind, String)>),
    /// Every object of these kinds (possibly filtered by selectors): `KIND[,KIND...]`.
    All(Vec<Kind>),
}

/// Parses `KIND[,KIND...] [NAME...]` or `KIND/NAME...`.
pub(crate) fn parse_targets(args: &[String]) -> Result<Targets, CliError> {
    let Some(first) = args.first() else {
        return Err(CliError::Usage(
            "you must specify the type of resource, e.g. `pods` or `deploy/web`".to_string(),
        ));
    };
    if first.contains('/') {
        let mut named = Vec::new();
        for a in args {
            let Some((k, n)) = a.split_once('/') else {
                return Err(CliError::Usage(format!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (got {a:?})"
                )));
            };
            if n.is_empty() || n.contains('/') {
                return Err(CliError::Usage(format!("{a:?} is not in KIND/NAME form")));
            }
            named.push((k.parse::<Kind>()?, n.to_string()));
        }
        return Ok(Targets::Named(named));
    }
    let mut kinds = Vec::new();
    for k in first.split(',').filter(|k| !k.is_empty()) {
        let kind = k.parse::<Kind>()?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        return Err(CliError::Usage(format!("no resource type in {first:?}")));
    }
    let names = &args[1..];
    if let Some(bad) = names.iter().find(|n| n.contains('/')) {
        return Err(CliError::Usage(format!(
            "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (got {bad:?})"
        )));
    }
    if names.is_empty() {
        return Ok(Targets::All(kinds));
    }
    Ok(Targets::Named(
        kinds
            .iter()
            .flat_map(|k| names.iter().map(move |n| (*k, n.clone())))
            .collect(),
    ))
}

/// `500ms`, `30s`, `2m`, `1h`, `1m30s`; a bare number is seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".to_string());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| format!("invalid duration {text:?}: missing unit"))?;
        if digits == 0 {
            return Err(format!("invalid duration {text:?}"));
        }
        let value: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("invalid duration {text:?}: unknown unit {u:?}")),
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(value * scale);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn targets_accept_kind_names_and_slash_forms() {
        assert_eq!(
            parse_targets(&strings(&["po"])).unwrap(),
            Targets::All(vec![Kind::Pod])
        );
        assert_eq!(
            parse_targets(&strings(&["deploy,svc,deployments"])).unwrap(),
            Targets::All(vec![Kind::Deployment, Kind::Service])
        );
        assert_eq!(
            parse_targets(&strings(&["deployments.apps", "a", "b"])).unwrap(),
            Targets::Named(vec![
                (Kind::Deployment, "a".to_string()),
                (Kind::Deployment, "b".to_string())
            ])
        );
        assert_eq!(
            parse_targets(&strings(&["pods,svc", "web"])).unwrap(),
            Targets::Named(vec![
                (Kind::Pod, "web".to_string()),
                (Kind::Service, "web".to_string())
            ])
        );
        assert_eq!(
            parse_targets(&strings(&["deploy/web", "svc/web"])).unwrap(),
            Targets::Named(vec![
                (Kind::Deployment, "web".to_string()),
                (Kind::Service, "web".to_string())
            ])
        );
        for bad in [&["widgets"][..], &["pods,widgets"], &["widget/x"]] {
            assert!(
                matches!(parse_targets(&strings(bad)), Err(CliError::UnknownKind(_))),
                "{bad:?}"
            );
        }
        for bad in [
            &["pod/a", "b"][..],
            &["pods", "deploy/a"],
            &[],
            &["pod/"],
            &[","],
        ] {
            assert!(
                matches!(parse_targets(&strings(bad)), Err(CliError::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10x").is_err());
    }
}
