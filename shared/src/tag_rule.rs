//! The release tag rule: which image tags are releases.
//!
//! The same pattern is enforced by the CI half (`infra/github-actions/release.yml`,
//! `GREENLIGHT_TAG_RULE`); a test in the tests crate keeps the two in agreement.

use regex_lite::Regex;

/// A release tag is `v` followed by at least one of `[0-9A-Za-z._-]`: `v1.4.2`, `v1.4.2-rc.1`.
pub const DEFAULT_TAG_PATTERN: &str = r"^v[0-9A-Za-z._-]+$";

/// Tags that never deploy on their own, whatever the pattern says: they move with every push.
const FLOATING_TAGS: &[&str] = &["latest"];

#[derive(Debug, Clone)]
pub struct TagRule {
    pattern: Regex,
}

impl TagRule {
    pub fn new(pattern: &str) -> Result<Self, regex_lite::Error> {
        Ok(Self {
            pattern: Regex::new(pattern)?,
        })
    }

    pub fn is_release(&self, tag: &str) -> bool {
        tag.len() <= TAG_MAX && !FLOATING_TAGS.contains(&tag) && self.pattern.is_match(tag)
    }
}

/// The longest image tag a registry client pushes (the OCI distribution spec's tag grammar;
/// ECR's own API takes up to 300).
pub const TAG_MAX: usize = 128;

/// The order of release versions: runs of digits compare as numbers (`v1.10.0` after
/// `v1.9.0`), anything else as text, and a pre-release (`v2.0.0-rc.1`) comes before its
/// release (`v2.0.0`). Versions that differ only in leading zeros are told apart as text.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut x, mut y) = (chunks(a), chunks(b));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            // What follows a common start decides: `-…` is a pre-release, anything else newer.
            (None, Some(rest)) => {
                return if rest.starts_with('-') {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (Some(rest), None) => {
                return if rest.starts_with('-') {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (Some(p), Some(q)) => {
                let order = match (
                    p.as_bytes()[0].is_ascii_digit(),
                    q.as_bytes()[0].is_ascii_digit(),
                ) {
                    (true, true) => {
                        let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                        p.len().cmp(&q.len()).then_with(|| p.cmp(q))
                    }
                    // A pre-release part sorts before any other part at its place, as it
                    // sorts before the end: the order stays total whatever a custom tag
                    // pattern lets through (`v1-rc` < `v1` < `v1+b`).
                    _ => match (p.starts_with('-'), q.starts_with('-')) {
                        (true, false) => Ordering::Less,
                        (false, true) => Ordering::Greater,
                        _ => p.cmp(q),
                    },
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// `v1.10.0-rc.2` → `v`, `1`, `.`, `10`, `.`, `0`, `-rc.`, `2`.
fn chunks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let digit = first.is_ascii_digit();
        let end = rest
            .find(|c: char| c.is_ascii_digit() != digit)
            .unwrap_or(rest.len());
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

impl Default for TagRule {
    fn default() -> Self {
        Self::new(DEFAULT_TAG_PATTERN).expect("the default tag pattern compiles")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rule_accepts_version_tags() {
        let rule = TagRule::default();
        for tag in ["v1.4.2", "v1.4.2-rc.1", "v2.0.0_build.7", "vX"] {
            assert!(rule.is_release(tag), "{tag} should be a release");
        }
    }

    #[test]
    fn default_rule_rejects_everything_else() {
        let rule = TagRule::default();
        for tag in [
            "latest",
            "1.4.2",
            "v",
            "v1 2",
            "v1.4.2;rm",
            "V1.4.2",
            "",
            "v1.4.2\n",
        ] {
            assert!(!rule.is_release(tag), "{tag:?} should not be a release");
        }
    }

    #[test]
    fn versions_are_ordered_by_their_numbers() {
        use std::cmp::Ordering::*;
        for (a, b, order) in [
            ("v1.10.0", "v1.9.0", Greater),
            ("v1.9.0", "v1.10.0", Less),
            ("v2.0.0", "v1.99.99", Greater),
            ("v1.4.2", "v1.4.2", Equal),
            ("v2.0.0-rc.1", "v2.0.0", Less),
            ("v2.0.0-rc.2", "v2.0.0-rc.10", Less),
            ("v1.4.2.1", "v1.4.2", Greater),
            ("v1.4.2_build.7", "v1.4.2", Greater),
            ("v01", "v1", Less),
            ("vB", "vA", Greater),
            ("v1+b", "v1-rc", Greater),
            ("v1-rc", "v1.0", Less),
        ] {
            assert_eq!(compare_versions(a, b), order, "{a} vs {b}");
        }
        // A total order: sorting any of these any way round gives one result.
        let mut tags = [
            "v1+b", "v1", "v1-rc", "v1.0", "v1.10", "v1.9", "v1_b", "v01",
        ];
        tags.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            tags,
            ["v1-rc", "v01", "v1", "v1+b", "v1.0", "v1.9", "v1.10", "v1_b"]
        );
    }

    #[test]
    fn a_tag_longer_than_ecr_allows_is_not_a_release() {
        let rule = TagRule::default();
        assert!(rule.is_release(&format!("v{}", "1".repeat(TAG_MAX - 1))));
        assert!(!rule.is_release(&format!("v{}", "1".repeat(TAG_MAX))));
    }

    #[test]
    fn latest_never_deploys_even_if_a_custom_pattern_matches_it() {
        let rule = TagRule::new(r"^[a-z0-9.]+$").unwrap();
        assert!(rule.is_release("v1"));
        assert!(!rule.is_release("latest"));
    }
}
