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
        !FLOATING_TAGS.contains(&tag) && self.pattern.is_match(tag)
    }
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
    fn latest_never_deploys_even_if_a_custom_pattern_matches_it() {
        let rule = TagRule::new(r"^[a-z0-9.]+$").unwrap();
        assert!(rule.is_release("v1"));
        assert!(!rule.is_release("latest"));
    }
}
