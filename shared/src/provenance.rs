//! Who shipped a release: the OCI annotations the release workflow writes on the image
//! manifest (`infra/github-actions/release.yml`), read by the deployer with one BatchGetImage,
//! kept on the release in the ledger and shown in Slack.
//!
//! Annotations are set by whoever pushes the image, so they are untrusted: each is validated by
//! its shape (a commit is 7 to 64 hex digits; a link is an `https://` URL with nothing Slack's
//! link syntax gives meaning to; an actor is a short login), and anything else is left out.
//! An image without them deploys as before, with the fields absent.

use serde::{Deserialize, Serialize};

pub const REVISION: &str = "org.opencontainers.image.revision";
pub const SOURCE: &str = "org.opencontainers.image.source";
/// Greenlight's own keys: the CI run that built the image, and who started it.
pub const RUN_URL: &str = "dev.greenlight.run-url";
pub const ACTOR: &str = "dev.greenlight.actor";

const MAX_URL: usize = 300;
const MAX_ACTOR: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The commit the image was built from (full SHA as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The source repository's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl Provenance {
    /// From an image manifest's (or image index's) JSON text: its top-level `annotations`.
    pub fn from_manifest(manifest: &str) -> Self {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(manifest) else {
            return Self::default();
        };
        let annotation = |key: &str| {
            value
                .get("annotations")
                .and_then(|a| a.get(key))
                .and_then(|v| v.as_str())
        };
        Self {
            revision: annotation(REVISION).map(String::from),
            source: annotation(SOURCE).map(String::from),
            run_url: annotation(RUN_URL).map(String::from),
            actor: annotation(ACTOR).map(String::from),
        }
        .checked()
    }

    /// Only the values of the right shape (also for what is read back from the ledger, which
    /// anyone allowed to write the table could have changed).
    pub fn checked(self) -> Self {
        Self {
            revision: self.revision.filter(|r| is_revision(r)),
            source: self.source.filter(|u| is_link(u)),
            run_url: self.run_url.filter(|u| is_link(u)),
            actor: self.actor.filter(|a| is_actor(a)),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The commit's first 7 characters.
    pub fn short_revision(&self) -> Option<&str> {
        self.revision.as_deref().and_then(|r| r.get(..7))
    }

    /// A link to the commit, where the source is a GitHub-style repository URL.
    pub fn commit_url(&self) -> Option<String> {
        let (source, revision) = (self.source.as_deref()?, self.revision.as_deref()?);
        Some(format!(
            "{}/commit/{revision}",
            source.trim_end_matches('/')
        ))
    }
}

fn is_revision(text: &str) -> bool {
    (7..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An `https://` URL without spaces, control characters, or `<`, `>`, `|` (Slack's link
/// syntax), and of a sensible length.
pub fn is_link(text: &str) -> bool {
    text.len() <= MAX_URL
        && text.starts_with("https://")
        && text.len() > "https://".len()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '|'))
}

/// A login as GitHub allows them, and bot names such as `dependabot[bot]`.
fn is_actor(text: &str) -> bool {
    (1..=MAX_ACTOR).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(annotations: serde_json::Value) -> String {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:00", "size": 1},
            "layers": [],
            "annotations": annotations,
        })
        .to_string()
    }

    #[test]
    fn the_release_workflows_annotations_are_read() {
        let p = Provenance::from_manifest(&manifest(serde_json::json!({
            REVISION: "9fceb02d0ae598e95dc970b74767f19372d61af8",
            SOURCE: "https://github.com/acme/web",
            RUN_URL: "https://github.com/acme/web/actions/runs/123/attempts/1",
            ACTOR: "dependabot[bot]",
            "org.opencontainers.image.version": "v1.4.2",
        })));
        assert_eq!(p.short_revision(), Some("9fceb02"));
        assert_eq!(
            p.commit_url().as_deref(),
            Some("https://github.com/acme/web/commit/9fceb02d0ae598e95dc970b74767f19372d61af8")
        );
        assert_eq!(p.actor.as_deref(), Some("dependabot[bot]"));
        assert!(p.run_url.is_some());
    }

    #[test]
    fn values_read_back_are_checked_again_and_a_short_commit_is_no_panic() {
        let p = Provenance {
            revision: Some("abc".into()),
            source: Some("https://x|y".into()),
            run_url: None,
            actor: Some("octocat".into()),
        };
        assert_eq!(p.short_revision(), None);
        let p = p.checked();
        assert_eq!(
            (p.revision, p.source, p.actor.as_deref()),
            (None, None, Some("octocat"))
        );
    }

    #[test]
    fn an_image_without_annotations_has_no_provenance() {
        assert!(Provenance::from_manifest(&manifest(serde_json::json!({}))).is_empty());
        assert!(Provenance::from_manifest(r#"{"schemaVersion":2}"#).is_empty());
        assert!(Provenance::from_manifest("not json").is_empty());
    }

    #[test]
    fn annotations_of_the_wrong_shape_are_left_out() {
        let p = Provenance::from_manifest(&manifest(serde_json::json!({
            REVISION: "main; rm -rf /",
            SOURCE: "javascript:alert(1)",
            RUN_URL: "https://evil.example/|click here>",
            ACTOR: "<!channel> everyone",
        })));
        assert!(p.is_empty(), "{p:?}");
        let p = Provenance::from_manifest(&manifest(serde_json::json!({
            RUN_URL: format!("https://example.com/{}", "a".repeat(5_000)),
            ACTOR: "a".repeat(500),
            REVISION: "abc",
        })));
        assert!(p.is_empty(), "{p:?}");
    }
}
