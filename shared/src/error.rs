//! Errors of AWS calls, reduced to what the handlers decide on.
//!
//! Adapters match the SDK's modeled errors (`into_service_error()`) and map them to an
//! [`AwsErrorKind`]; the handlers never see SDK error types. Throttling and 5xx answers are
//! retried by the SDK's standard retry policy before they get here.

use std::error::Error as StdError;
use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;

pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// The named resource does not exist (service, deployment group, task definition, ...).
    NotFound,
    AccessDenied,
    /// The deployment group already has an active deployment.
    DeploymentLimitExceeded,
    /// The lifecycle hook was already reported.
    AlreadyCompleted,
    /// Still throttled after the SDK's retries.
    Throttled,
    /// The request was refused as invalid.
    Invalid,
    /// Network, timeout, 5xx after retries, or an answer that could not be read.
    Unavailable,
}

impl fmt::Display for AwsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFound => "not found",
            Self::AccessDenied => "access denied",
            Self::DeploymentLimitExceeded => "busy: a deployment is in progress",
            Self::AlreadyCompleted => "already completed",
            Self::Throttled => "throttled",
            Self::Invalid => "invalid request",
            Self::Unavailable => "unavailable",
        })
    }
}

/// A failed AWS call: which operation, on which resource, what kind of failure, and why.
#[derive(Debug, thiserror::Error)]
#[error("{operation} on {resource}: {kind}: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    pub resource: String,
    pub kind: AwsErrorKind,
    pub message: String,
}

impl AwsError {
    pub fn new(
        operation: &'static str,
        resource: impl Into<String>,
        kind: AwsErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            operation,
            resource: resource.into(),
            kind,
            message: message.into(),
        }
    }

    /// Maps an SDK error by its error code; `classify` names the operation's modeled codes.
    pub fn from_sdk<E, R>(
        operation: &'static str,
        resource: impl Into<String>,
        err: SdkError<E, R>,
    ) -> Self
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata
            + StdError
            + Send
            + Sync
            + 'static,
        R: fmt::Debug,
    {
        let message = describe_sdk_error(&err);
        let kind = match &err {
            SdkError::ServiceError(service) => kind_of_code(Some(&error_code(service.err()))),
            _ => AwsErrorKind::Unavailable,
        };
        Self::new(operation, resource, kind, message)
    }
}

/// The error code of a service error: from the wire metadata, or else the modeled shape's
/// name, which the generated Display of a modeled error starts with.
pub fn error_code<E>(e: &E) -> String
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + StdError,
{
    match e.code() {
        Some(code) => code.to_string(),
        None => e
            .to_string()
            .split(|c: char| c == ':' || c.is_whitespace())
            .next()
            .filter(|w| !w.is_empty())
            .unwrap_or("UnknownError")
            .to_string(),
    }
}

/// The kind of failure an AWS error code stands for. Codes are stable; messages are not.
pub fn kind_of_code(code: Option<&str>) -> AwsErrorKind {
    match code.unwrap_or_default() {
        "DeploymentLimitExceededException" => AwsErrorKind::DeploymentLimitExceeded,
        "LifecycleEventAlreadyCompletedException" => AwsErrorKind::AlreadyCompleted,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnauthorizedOperation"
        | "UnrecognizedClientException" => AwsErrorKind::AccessDenied,
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "ProvisionedThroughputExceededException"
        | "RequestLimitExceeded" => AwsErrorKind::Throttled,
        "ServiceNotFoundException"
        | "ServiceNotActiveException"
        | "ClusterNotFoundException"
        | "DeploymentGroupDoesNotExistException"
        | "ApplicationDoesNotExistException"
        | "DeploymentDoesNotExistException"
        | "DeploymentTargetDoesNotExistException"
        | "ParameterNotFound"
        | "ResourceNotFoundException"
        | "TargetGroupNotFound"
        | "ListenerNotFound"
        | "LoadBalancerNotFound"
        | "ImageNotFoundException"
        | "RepositoryNotFoundException" => AwsErrorKind::NotFound,
        "ClientException"
        | "InvalidParameterException"
        | "ValidationException"
        | "InvalidRoleException"
        | "InvalidDeploymentIdException"
        | "InvalidLifecycleEventHookExecutionIdException"
        | "InvalidLifecycleEventHookExecutionStatusException" => AwsErrorKind::Invalid,
        _ => AwsErrorKind::Unavailable,
    }
}

/// A one-line description of an SDK error: code and message for service errors, the
/// underlying cause otherwise (the SDK's own Display says only "service error").
pub fn describe_sdk_error<E, R>(err: &SdkError<E, R>) -> String
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + StdError + 'static,
    R: fmt::Debug,
{
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            format!("{}: {}", error_code(e), e.message().unwrap_or("no message"))
        }
        other => {
            let mut text = other.to_string();
            let mut source = other.source();
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

/// Why an event could not be read, safe to log and answer: [`redact_quoted`], and what the
/// parser names as an unknown variant or field is taken out too (in an event it came from
/// whoever sent it; in the config, an operator's own misspelt key is worth naming).
pub fn redact_event_error(message: &str) -> String {
    let mut message = message.to_string();
    for marker in ["unknown variant `", "unknown field `"] {
        if let Some(start) = message.find(marker).map(|i| i + marker.len()) {
            if let Some(len) = message[start..].find('`') {
                message.replace_range(start..start + len, "…");
            }
        }
    }
    redact_quoted(&message)
}

/// Why an event or document could not be read, safe to log and answer: every double-quoted
/// value the parser quoted is taken out (it may be a secret or megabytes of input), and the
/// rest is clipped to 200 characters. Keys stay (parsers quote them in backticks).
pub fn redact_quoted(message: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in message.chars() {
        match (c, quoted) {
            ('"', false) => {
                quoted = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                quoted = false;
                out.push('"');
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out.trim().chars().take(200).collect()
}
