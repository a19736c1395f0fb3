//! Elastic Load Balancing v2: target health of the green target group, and the test listener.

use async_trait::async_trait;

use crate::error::{AwsError, AwsErrorKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetState {
    pub id: String,
    pub port: Option<i32>,
    /// healthy, initial, unhealthy, unused, draining, unavailable
    pub state: String,
    pub reason: Option<String>,
}

/// Where a listener answers: `http://<load balancer DNS>:<port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerEndpoint {
    pub protocol: String,
    pub host: String,
    pub port: i32,
}

impl ListenerEndpoint {
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.protocol.eq_ignore_ascii_case("HTTPS") {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}:{}{path}", self.host, self.port)
    }
}

/// What a listener rule matches a request on, as far as a probe can say it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleMatch {
    /// Host header patterns (any one matches).
    pub hosts: Vec<String>,
    /// Path patterns (any one matches).
    pub paths: Vec<String>,
    /// Query string conditions, all of which must match: each a list of pairs of which any
    /// one matches (a pair without a key matches a value).
    pub queries: Vec<Vec<(Option<String>, String)>>,
    /// Conditions a probe does not satisfy: an HTTP header, a source IP, a method other than
    /// GET, a regular expression.
    pub unsatisfiable: Vec<String>,
}

#[async_trait]
pub trait LoadBalancingApi: Send + Sync {
    async fn target_group_arn(&self, name: &str) -> Result<String, AwsError>;
    async fn target_health(&self, target_group_arn: &str) -> Result<Vec<TargetState>, AwsError>;
    async fn listener_endpoint(&self, listener_arn: &str) -> Result<ListenerEndpoint, AwsError>;
    /// The conditions of a listener rule (DescribeRules).
    async fn rule_match(&self, rule_arn: &str) -> Result<RuleMatch, AwsError>;
}

#[derive(Debug, Clone)]
pub struct LoadBalancing(pub aws_sdk_elasticloadbalancingv2::Client);

#[async_trait]
impl LoadBalancingApi for LoadBalancing {
    async fn target_group_arn(&self, name: &str) -> Result<String, AwsError> {
        let resource = format!("target group {name}");
        let out = self
            .0
            .describe_target_groups()
            .names(name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeTargetGroups", &resource, e))?;
        out.target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .map(str::to_string)
            .ok_or_else(|| {
                AwsError::new(
                    "DescribeTargetGroups",
                    resource,
                    AwsErrorKind::NotFound,
                    "no such target group",
                )
            })
    }

    async fn target_health(&self, target_group_arn: &str) -> Result<Vec<TargetState>, AwsError> {
        let out = self
            .0
            .describe_target_health()
            .target_group_arn(target_group_arn)
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(
                    "DescribeTargetHealth",
                    format!("target group {target_group_arn}"),
                    e,
                )
            })?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .map(|d| TargetState {
                id: d
                    .target()
                    .and_then(|t| t.id())
                    .unwrap_or_default()
                    .to_string(),
                port: d.target().and_then(|t| t.port()),
                state: d
                    .target_health()
                    .and_then(|h| h.state())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|| "unknown".to_string()),
                reason: d
                    .target_health()
                    .and_then(|h| h.reason())
                    .map(|r| r.as_str().to_string()),
            })
            .collect())
    }

    async fn rule_match(&self, rule_arn: &str) -> Result<RuleMatch, AwsError> {
        let resource = format!("listener rule {rule_arn}");
        let out = self
            .0
            .describe_rules()
            .rule_arns(rule_arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeRules", &resource, e))?;
        let rule = out.rules().first().ok_or_else(|| {
            AwsError::new(
                "DescribeRules",
                &resource,
                AwsErrorKind::NotFound,
                "no such rule",
            )
        })?;
        let mut found = RuleMatch::default();
        for c in rule.conditions() {
            // Each condition names its values in its config, or (the older form) in `Values`.
            let or_values = |configured: Option<&[String]>| {
                configured
                    .filter(|v| !v.is_empty())
                    .unwrap_or(c.values())
                    .to_vec()
            };
            let regex = !c.regex_values().is_empty()
                || c.host_header_config()
                    .is_some_and(|h| !h.regex_values().is_empty())
                || c.path_pattern_config()
                    .is_some_and(|p| !p.regex_values().is_empty());
            match c.field().unwrap_or_default() {
                field if regex => found
                    .unsatisfiable
                    .push(format!("{field} (a regular expression)")),
                "host-header" => found
                    .hosts
                    .extend(or_values(c.host_header_config().map(|h| h.values()))),
                "path-pattern" => found
                    .paths
                    .extend(or_values(c.path_pattern_config().map(|p| p.values()))),
                "query-string" => found.queries.push(
                    c.query_string_config()
                        .map(|q| q.values())
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|kv| {
                            Some((kv.key().map(str::to_string), kv.value()?.to_string()))
                        })
                        .collect(),
                ),
                "http-request-method"
                    if or_values(c.http_request_method_config().map(|m| m.values()))
                        .iter()
                        .any(|m| m == "GET") => {}
                other => found.unsatisfiable.push(other.to_string()),
            }
        }
        Ok(found)
    }

    async fn listener_endpoint(&self, listener_arn: &str) -> Result<ListenerEndpoint, AwsError> {
        let resource = format!("listener {listener_arn}");
        let listeners = self
            .0
            .describe_listeners()
            .listener_arns(listener_arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeListeners", &resource, e))?;
        let listener = listeners.listeners().first().ok_or_else(|| {
            AwsError::new(
                "DescribeListeners",
                &resource,
                AwsErrorKind::NotFound,
                "no such listener",
            )
        })?;
        let lb_arn = listener.load_balancer_arn().unwrap_or_default().to_string();
        let lbs = self
            .0
            .describe_load_balancers()
            .load_balancer_arns(&lb_arn)
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(
                    "DescribeLoadBalancers",
                    format!("load balancer {lb_arn}"),
                    e,
                )
            })?;
        let host = lbs
            .load_balancers()
            .first()
            .and_then(|lb| lb.dns_name())
            .ok_or_else(|| {
                AwsError::new(
                    "DescribeLoadBalancers",
                    format!("load balancer {lb_arn}"),
                    AwsErrorKind::NotFound,
                    "no DNS name",
                )
            })?;
        Ok(ListenerEndpoint {
            protocol: listener
                .protocol()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "HTTP".to_string()),
            host: host.to_string(),
            port: listener.port().unwrap_or(80),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_url_uses_scheme_host_port_and_path() {
        let e = ListenerEndpoint {
            protocol: "HTTP".into(),
            host: "web1-123.us-east-1.elb.amazonaws.com".into(),
            port: 8080,
        };
        assert_eq!(
            e.url("/api/health"),
            "http://web1-123.us-east-1.elb.amazonaws.com:8080/api/health"
        );
        let e = ListenerEndpoint {
            protocol: "HTTPS".into(),
            host: "lb".into(),
            port: 8443,
        };
        assert_eq!(e.url("/"), "https://lb:8443/");
    }
}
