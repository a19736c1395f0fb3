//! The release tag rule is one rule: the CI workflow's `GREENLIGHT_TAG_RULE` and Greenlight's
//! default `tag_pattern` agree, on the pattern itself and on a table of tags.

use greenlight_shared::tag_rule::{TagRule, DEFAULT_TAG_PATTERN};

fn workflow_rule() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/github-actions/release.yml"
    );
    let text = std::fs::read_to_string(path).expect("release workflow");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("GREENLIGHT_TAG_RULE:"))
        .expect("GREENLIGHT_TAG_RULE in the workflow");
    line.split_once(':')
        .unwrap()
        .1
        .trim()
        .trim_matches('\'')
        .trim_matches('"')
        .to_string()
}

#[test]
fn workflow_and_greenlight_share_the_tag_rule() {
    assert_eq!(workflow_rule(), DEFAULT_TAG_PATTERN);
}

#[test]
fn workflow_rule_and_default_rule_agree_on_a_table_of_tags() {
    let workflow = regex_lite::Regex::new(&workflow_rule()).unwrap();
    let greenlight = TagRule::default();
    let table = [
        ("v1.4.2", true),
        ("v1.4.2-rc.1", true),
        ("v2.0.0_build.7", true),
        ("vX", true),
        ("latest", false),
        ("1.4.2", false),
        ("v", false),
        ("v1 2", false),
        ("v1.4.2;rm", false),
        ("V1.4.2", false),
        ("", false),
    ];
    for (tag, release) in table {
        assert_eq!(workflow.is_match(tag), release, "workflow on {tag:?}");
        assert_eq!(greenlight.is_release(tag), release, "greenlight on {tag:?}");
    }
}
