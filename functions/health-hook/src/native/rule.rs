//! The request a probe must send for the test listener rule to match it: host, path and every
//! query-string condition, or why no probe can.

use greenlight_shared::aws::elb::RuleMatch;

/// The host to name and the query to send so that a GET of `path` matches the rule, or why
/// none can.
pub fn probe_of(
    rule: &RuleMatch,
    host: Option<&str>,
    path: &str,
) -> Result<(Option<String>, String), String> {
    if let Some(field) = rule.unsatisfiable.first() {
        return Err(format!("matches on {field}, which a probe does not send"));
    }
    let wild = |p: &str| p.contains(['*', '?']);
    let host = match (host, rule.hosts.as_slice()) {
        (host, []) => host.map(str::to_string),
        (Some(h), patterns)
            if patterns
                .iter()
                .any(|p| glob(&p.to_lowercase(), &h.to_lowercase())) =>
        {
            Some(h.to_string())
        }
        (None, patterns) => match patterns.iter().find(|p| !wild(p)) {
            Some(p) => Some(p.clone()),
            None => return Err(format!("matches hosts {patterns:?} only")),
        },
        (Some(h), patterns) => {
            return Err(format!("matches hosts {patterns:?}, not health.host {h}"))
        }
    };
    if !rule.paths.is_empty() && !rule.paths.iter().any(|p| glob(p, path)) {
        return Err(format!(
            "matches paths {:?}, not health.path {path}",
            rule.paths
        ));
    }
    // Every query-string condition must match: one literal pair of each.
    let mut pairs = vec![];
    for condition in &rule.queries {
        match condition
            .iter()
            .find(|(k, v)| !wild(v) && !k.as_deref().is_some_and(wild))
        {
            Some((Some(k), v)) => pairs.push(format!("{}={}", escaped(k), escaped(v))),
            Some((None, v)) => pairs.push(escaped(v)),
            None => return Err(format!("matches query strings {condition:?} only")),
        }
    }
    let query = if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    };
    Ok((host, query))
}

/// Whether `text` matches an ALB pattern (`*` any run of characters, `?` one character).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // The classic two-pointer match with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// A query key or value, percent-encoded but for the characters URLs leave as they are.
fn escaped(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The listener ARN of a listener rule ARN.
pub fn listener_of_rule(rule: &str) -> Option<String> {
    let (head, path) = rule.split_once(":listener-rule/")?;
    let (listener_path, _rule_id) = path.rsplit_once('/')?;
    Some(format!("{head}:listener/{listener_path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_made_to_match_the_test_listener_rule_or_says_why_it_cannot() {
        let rule = |hosts: &[&str], paths: &[&str]| RuleMatch {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            ..RuleMatch::default()
        };
        let ok = |r: &RuleMatch, host: Option<&str>| probe_of(r, host, "/api/health");
        assert_eq!(ok(&rule(&[], &[]), None), Ok((None, String::new())));
        assert_eq!(
            ok(&rule(&["web2.test.internal"], &["/api/*"]), None),
            Ok((Some("web2.test.internal".into()), String::new()))
        );
        assert_eq!(
            ok(&rule(&["*.test.internal"], &[]), Some("Web2.Test.Internal")),
            Ok((Some("Web2.Test.Internal".into()), String::new()))
        );
        assert!(ok(&rule(&["*.test.internal"], &[]), None).is_err());
        assert!(ok(&rule(&["a.example"], &[]), Some("b.example")).is_err());
        assert!(ok(&rule(&[], &["/web2/*"]), None)
            .unwrap_err()
            .contains("not health.path /api/health"));
        let with_query = RuleMatch {
            queries: vec![
                vec![(Some("lane".into()), "green test".into())],
                vec![
                    (Some("env".into()), "t*".into()),
                    (Some("env".into()), "test".into()),
                ],
            ],
            ..RuleMatch::default()
        };
        assert_eq!(
            ok(&with_query, None),
            Ok((None, "?lane=green%20test&env=test".into()))
        );
        let by_header = RuleMatch {
            unsatisfiable: vec!["http-header".into()],
            ..RuleMatch::default()
        };
        assert!(ok(&by_header, None).unwrap_err().contains("http-header"));
        assert!(glob("/api/?ealth", "/api/health") && glob("*", "") && !glob("/a*b", "/ac"));
    }

    #[test]
    fn a_rules_listener_is_the_rule_arn_without_its_id() {
        assert_eq!(
            listener_of_rule("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee").as_deref(),
            Some("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2")
        );
        assert_eq!(
            listener_of_rule("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/x/1/2"),
            None
        );
    }
}
