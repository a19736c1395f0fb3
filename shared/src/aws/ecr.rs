//! ECR: what the release workflow wrote on an image (its provenance), read with one call, and
//! the image an operator's request names (by tag or digest).

use async_trait::async_trait;
use aws_sdk_ecr::types::ImageIdentifier;

use crate::error::AwsError;
use crate::provenance::Provenance;

/// The manifest types a pushed image can have; ECR answers with the one it stores.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// An image of a repository: its digest and every tag it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryImage {
    pub digest: String,
    pub tags: Vec<String>,
}

#[async_trait]
pub trait RegistryApi: Send + Sync {
    /// The provenance annotations of the image `repository@digest` (empty when it has none).
    async fn provenance(&self, repository: &str, digest: &str) -> Result<Provenance, AwsError>;
    /// The image `reference` (a tag, or a `sha256:` digest) names in `repository`; NotFound
    /// when there is none.
    async fn image(&self, repository: &str, reference: &str) -> Result<RegistryImage, AwsError>;
}

#[derive(Debug, Clone)]
pub struct Ecr(pub aws_sdk_ecr::Client);

#[async_trait]
impl RegistryApi for Ecr {
    async fn provenance(&self, repository: &str, digest: &str) -> Result<Provenance, AwsError> {
        let out = self
            .0
            .batch_get_image()
            .repository_name(repository)
            .image_ids(ImageIdentifier::builder().image_digest(digest).build())
            .set_accepted_media_types(Some(MANIFEST_TYPES.iter().map(|t| t.to_string()).collect()))
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(
                    "BatchGetImage",
                    format!("ECR image {repository}@{digest}"),
                    e,
                )
            })?;
        Ok(out
            .images()
            .first()
            .and_then(|image| image.image_manifest())
            .map(Provenance::from_manifest)
            .unwrap_or_default())
    }

    async fn image(&self, repository: &str, reference: &str) -> Result<RegistryImage, AwsError> {
        let id = if reference.starts_with("sha256:") {
            ImageIdentifier::builder().image_digest(reference)
        } else {
            ImageIdentifier::builder().image_tag(reference)
        };
        let what = || format!("ECR image {repository}:{reference}");
        let out = self
            .0
            .describe_images()
            .repository_name(repository)
            .image_ids(id.build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeImages", what(), e))?;
        out.image_details()
            .iter()
            .find_map(|image| {
                Some(RegistryImage {
                    digest: image.image_digest()?.to_string(),
                    tags: image.image_tags().to_vec(),
                })
            })
            .ok_or_else(|| {
                AwsError::new(
                    "DescribeImages",
                    what(),
                    crate::AwsErrorKind::NotFound,
                    "no such image",
                )
            })
    }
}
