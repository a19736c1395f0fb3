//! How ECS moves production traffic to a release: all at once (`BLUE_GREEN`), in steps
//! (`LINEAR`: `stepPercent` every `stepBakeTimeInMinutes`) or a canary first (`CANARY`:
//! `canaryPercent` for `canaryBakeTimeInMinutes`, then the rest), each followed by the final
//! bake, watched by CloudWatch alarms and the circuit breaker. The service's
//! `deploymentConfiguration` is the team's: Greenlight reads it and says it in words, and never
//! changes it.
//!
//! [`progress`] says where a deployment stands ("canary 5% until 14:32, then 100%") from what
//! DescribeServiceDeployments reports whenever something invokes Greenlight (a state event, a
//! hook round, the operator's command): no polling, and an end time that is absolute needs no
//! later edit. ECS reports when a deployment last changed (`updatedAt`), not when its step
//! began: the step's end is counted from that change.

use chrono::{DateTime, TimeDelta, Utc};

/// How production traffic moves.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Strategy {
    /// All production traffic at once.
    #[default]
    BlueGreen,
    /// `step_percent` more every `bake_minutes`.
    Linear {
        step_percent: f64,
        bake_minutes: i32,
    },
    /// `percent` for `bake_minutes`, then the rest.
    Canary { percent: f64, bake_minutes: i32 },
}

/// A service's (or a deployment's) rollout settings, as ECS reports them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rollout {
    pub strategy: Strategy,
    /// The bake after all production traffic moved, before blue is removed.
    pub bake_minutes: i32,
    /// CloudWatch alarms that watch the deployment, and whether one in ALARM rolls it back.
    pub alarms: Vec<String>,
    pub alarms_roll_back: bool,
    /// Whether the deployment circuit breaker rolls a failing deployment back.
    pub circuit_breaker_rolls_back: bool,
}

/// ECS's defaults when the configuration names a strategy without its settings.
const DEFAULT_LINEAR_STEP: f64 = 10.0;
const DEFAULT_CANARY_PERCENT: f64 = 5.0;
const DEFAULT_STEP_BAKE_MINUTES: i32 = 6;

impl Rollout {
    /// The rollout of ECS's `deploymentConfiguration`; `None` for a strategy that is not a
    /// traffic shift of ECS's own (ROLLING).
    pub fn of(config: &aws_sdk_ecs::types::DeploymentConfiguration) -> Option<Self> {
        let strategy = match config.strategy()?.as_str() {
            "BLUE_GREEN" => Strategy::BlueGreen,
            "LINEAR" => {
                let linear = config.linear_configuration();
                Strategy::Linear {
                    step_percent: linear
                        .and_then(|l| l.step_percent())
                        .unwrap_or(DEFAULT_LINEAR_STEP),
                    bake_minutes: linear
                        .and_then(|l| l.step_bake_time_in_minutes())
                        .unwrap_or(DEFAULT_STEP_BAKE_MINUTES),
                }
            }
            "CANARY" => {
                let canary = config.canary_configuration();
                Strategy::Canary {
                    percent: canary
                        .and_then(|c| c.canary_percent())
                        .unwrap_or(DEFAULT_CANARY_PERCENT),
                    bake_minutes: canary
                        .and_then(|c| c.canary_bake_time_in_minutes())
                        .unwrap_or(DEFAULT_STEP_BAKE_MINUTES),
                }
            }
            _ => return None,
        };
        let alarms = config.alarms().filter(|a| a.enable());
        Some(Self {
            strategy,
            bake_minutes: config.bake_time_in_minutes().unwrap_or(0),
            alarms: alarms.map(|a| a.alarm_names().to_vec()).unwrap_or_default(),
            alarms_roll_back: alarms.is_some_and(|a| a.rollback()),
            circuit_breaker_rolls_back: config
                .deployment_circuit_breaker()
                .is_some_and(|c| c.enable() && c.rollback()),
        })
    }

    /// The production weights green reaches, step by step (the last is 100).
    pub fn steps(&self) -> Vec<f64> {
        match self.strategy {
            Strategy::BlueGreen => vec![100.0],
            Strategy::Canary { percent, .. } => vec![percent, 100.0],
            Strategy::Linear { step_percent, .. } => {
                let step = step_percent.clamp(1.0, 100.0);
                let mut weights = vec![];
                let mut w = step;
                while w < 100.0 - 1e-9 {
                    weights.push(w);
                    w += step;
                }
                weights.push(100.0);
                weights
            }
        }
    }

    /// The rollout in one line: "canary 5% for 10 min, then 100%; bake 15 min; alarms
    /// api-5xx (roll back); circuit breaker (roll back)".
    pub fn describe(&self) -> String {
        let mut parts = vec![match &self.strategy {
            Strategy::BlueGreen => "blue/green: 100% at once".to_string(),
            Strategy::Canary {
                percent,
                bake_minutes,
            } => format!(
                "canary {}% for {bake_minutes} min, then 100%",
                percent_text(*percent)
            ),
            Strategy::Linear {
                step_percent,
                bake_minutes,
            } => format!(
                "linear {}% every {bake_minutes} min ({} steps)",
                percent_text(*step_percent),
                self.steps().len()
            ),
        }];
        if self.bake_minutes > 0 {
            parts.push(format!("bake {} min", self.bake_minutes));
        }
        if !self.alarms.is_empty() {
            parts.push(format!(
                "alarms {}{}",
                self.alarms.join(", "),
                if self.alarms_roll_back {
                    " (roll back)"
                } else {
                    ""
                }
            ));
        }
        if self.circuit_breaker_rolls_back {
            parts.push("circuit breaker (roll back)".to_string());
        }
        parts.join("; ")
    }
}

/// The traffic line people read: where the deployment stands, then its plan ("canary 5% until
/// 14:32 UTC, then 100% (canary 5% for 10 min, then 100%; bake 15 min)").
pub fn traffic_line(rollout: &Rollout, at: &Position) -> String {
    let plan = rollout.describe();
    match progress(rollout, at) {
        Some(now) => format!("{now} ({plan})"),
        None => plan,
    }
}

impl Rollout {
    /// Blue/green at once, with no bake and no alarm: nothing to say beyond its states.
    pub fn is_plain(&self) -> bool {
        self.strategy == Strategy::BlueGreen && self.bake_minutes == 0 && self.alarms.is_empty()
    }
}

/// Where a service deployment stands, as DescribeServiceDeployments reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Position {
    /// ECS's lifecycle stage (`PRODUCTION_TRAFFIC_SHIFT`, `BAKE_TIME`, …).
    pub stage: Option<String>,
    /// The share of production traffic asked of green (the target revision), 0–100.
    pub weight: Option<f64>,
    /// When the deployment last changed (its step began then, or earlier).
    pub since: Option<DateTime<Utc>>,
}

/// Where the deployment stands, in words with an absolute end where there is one; `None` when
/// nothing is known.
pub fn progress(rollout: &Rollout, at: &Position) -> Option<String> {
    let until = |minutes: i32| {
        at.since.map(|t| {
            (t + TimeDelta::minutes(minutes.into()))
                .format("%H:%M UTC")
                .to_string()
        })
    };
    let weight = at.weight.unwrap_or(0.0);
    let stage = at.stage.as_deref()?;
    Some(match stage {
        "RECONCILE_SERVICE" | "PRE_SCALE_UP" | "SCALE_UP" | "POST_SCALE_UP" => {
            "starting green".to_string()
        }
        "TEST_TRAFFIC_SHIFT" | "POST_TEST_TRAFFIC_SHIFT" => {
            "checking green on test traffic".to_string()
        }
        "PRODUCTION_TRAFFIC_SHIFT" | "POST_PRODUCTION_TRAFFIC_SHIFT" if weight < 100.0 => {
            match &rollout.strategy {
                Strategy::BlueGreen => "shifting production traffic".to_string(),
                Strategy::Canary {
                    percent,
                    bake_minutes,
                } => match until(*bake_minutes) {
                    Some(t) => format!("canary {}% until {t}, then 100%", percent_text(*percent)),
                    None => format!("canary {}%, then 100%", percent_text(*percent)),
                },
                Strategy::Linear {
                    step_percent,
                    bake_minutes,
                } => {
                    let next = (weight + step_percent).min(100.0);
                    let now = percent_text(weight);
                    match until(*bake_minutes) {
                        Some(t) => format!("linear {now}% → {}% at {t}", percent_text(next)),
                        None => format!("linear {now}% → {}%", percent_text(next)),
                    }
                }
            }
        }
        "PRODUCTION_TRAFFIC_SHIFT" | "POST_PRODUCTION_TRAFFIC_SHIFT" | "BAKE_TIME"
            if rollout.bake_minutes > 0 =>
        {
            match until(rollout.bake_minutes) {
                Some(t) => format!("100% on green, baking until {t}"),
                None => "100% on green, baking".to_string(),
            }
        }
        "PRODUCTION_TRAFFIC_SHIFT" | "POST_PRODUCTION_TRAFFIC_SHIFT" | "BAKE_TIME" => {
            "100% on green".to_string()
        }
        "CLEAN_UP" => "100% on green, removing blue".to_string(),
        _ => return None,
    })
}

/// A point of a deployment that a CI job may wait for (`greenlight deploy --wait-until`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Milestone {
    /// All production traffic is on green (the final bake may still run).
    TrafficShifted,
    /// The final bake is over: blue is being removed, or the deployment succeeded.
    Baked,
}

impl Milestone {
    /// Whether a deployment in `status` at `at` has reached the milestone (a deployment that
    /// succeeded has reached every one).
    pub fn reached(self, status: &str, at: &Position) -> bool {
        if status == "SUCCESSFUL" {
            return true;
        }
        if status != "IN_PROGRESS" {
            return false;
        }
        let stage = at.stage.as_deref().unwrap_or_default();
        match self {
            Self::TrafficShifted => match stage {
                "PRODUCTION_TRAFFIC_SHIFT" => at.weight.is_some_and(|w| w >= 100.0),
                "POST_PRODUCTION_TRAFFIC_SHIFT" | "BAKE_TIME" | "CLEAN_UP" => true,
                _ => false,
            },
            Self::Baked => stage == "CLEAN_UP",
        }
    }
}

/// What ECS says about a deployment that rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RollbackSignals {
    /// ECS's reason for the rollback (`rollback.reason`).
    pub reason: Option<String>,
    /// Alarms that went to ALARM during the deployment.
    pub triggered_alarms: Vec<String>,
    /// The circuit breaker tripped, with its count and threshold.
    pub circuit_breaker: Option<(i32, i32)>,
}

/// Why a deployment rolled back, in words: an alarm (named), the circuit breaker, the health
/// hook (its reason), an operator (who), or ECS's own reason.
pub fn rollback_cause(
    signals: &RollbackSignals,
    hook_reason: Option<&str>,
    operator: Option<&str>,
) -> Option<String> {
    let ecs_reason = signals
        .reason
        .as_deref()
        .map(|r| format!(" ({})", clip(r)))
        .unwrap_or_default();
    if !signals.triggered_alarms.is_empty() {
        return Some(format!(
            "alarm {} went to ALARM{ecs_reason}",
            signals.triggered_alarms.join(", ")
        ));
    }
    if let Some((failed, threshold)) = signals.circuit_breaker {
        return Some(format!(
            "the deployment circuit breaker tripped ({failed} of {threshold} tasks failed){ecs_reason}"
        ));
    }
    if let Some(who) = operator {
        return Some(format!("rolled back by {who}"));
    }
    if let Some(reason) = hook_reason {
        return Some(format!("the health hook failed green: {}", clip(reason)));
    }
    signals.reason.as_deref().map(|r| clip(r).to_string())
}

fn clip(text: &str) -> &str {
    match text.char_indices().nth(300) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// `5`, `12.5`: a percentage as people write it.
fn percent_text(p: f64) -> String {
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round() as i64)
    } else {
        format!("{p:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{
        CanaryConfiguration, DeploymentAlarms, DeploymentCircuitBreaker, DeploymentConfiguration,
        DeploymentStrategy, LinearConfiguration,
    };

    fn at(stage: &str, weight: f64) -> Position {
        Position {
            stage: Some(stage.into()),
            weight: Some(weight),
            since: DateTime::parse_from_rfc3339("2026-12-05T14:22:00Z")
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }

    #[test]
    fn each_strategy_reads_from_ecs_and_says_itself() {
        let canary = DeploymentConfiguration::builder()
            .strategy(DeploymentStrategy::from("CANARY"))
            .canary_configuration(
                CanaryConfiguration::builder()
                    .canary_percent(5.0)
                    .canary_bake_time_in_minutes(10)
                    .build(),
            )
            .bake_time_in_minutes(15)
            .alarms(
                DeploymentAlarms::builder()
                    .alarm_names("api-5xx")
                    .enable(true)
                    .rollback(true)
                    .build()
                    .unwrap(),
            )
            .deployment_circuit_breaker(
                DeploymentCircuitBreaker::builder()
                    .enable(true)
                    .rollback(true)
                    .build(),
            )
            .build();
        let canary = Rollout::of(&canary).unwrap();
        assert_eq!(canary.steps(), [5.0, 100.0]);
        assert_eq!(
            canary.describe(),
            "canary 5% for 10 min, then 100%; bake 15 min; alarms api-5xx (roll back); circuit breaker (roll back)"
        );
        let linear = DeploymentConfiguration::builder()
            .strategy(DeploymentStrategy::from("LINEAR"))
            .linear_configuration(
                LinearConfiguration::builder()
                    .step_percent(30.0)
                    .step_bake_time_in_minutes(5)
                    .build(),
            )
            .build();
        let linear = Rollout::of(&linear).unwrap();
        assert_eq!(linear.steps(), [30.0, 60.0, 90.0, 100.0]);
        assert_eq!(linear.describe(), "linear 30% every 5 min (4 steps)");
        let rolling = DeploymentConfiguration::builder()
            .strategy(DeploymentStrategy::from("ROLLING"))
            .build();
        assert_eq!(Rollout::of(&rolling), None);
        let bare = DeploymentConfiguration::builder()
            .strategy(DeploymentStrategy::from("LINEAR"))
            .build();
        assert_eq!(Rollout::of(&bare).unwrap().steps().len(), 10);
    }

    #[test]
    fn progress_names_the_step_and_when_it_ends() {
        let canary = Rollout {
            strategy: Strategy::Canary {
                percent: 5.0,
                bake_minutes: 10,
            },
            bake_minutes: 40,
            ..Rollout::default()
        };
        assert_eq!(
            progress(&canary, &at("PRODUCTION_TRAFFIC_SHIFT", 5.0)).as_deref(),
            Some("canary 5% until 14:32 UTC, then 100%")
        );
        assert_eq!(
            progress(&canary, &at("BAKE_TIME", 100.0)).as_deref(),
            Some("100% on green, baking until 15:02 UTC")
        );
        let linear = Rollout {
            strategy: Strategy::Linear {
                step_percent: 10.0,
                bake_minutes: 2,
            },
            ..Rollout::default()
        };
        assert_eq!(
            progress(&linear, &at("PRODUCTION_TRAFFIC_SHIFT", 30.0)).as_deref(),
            Some("linear 30% → 40% at 14:24 UTC")
        );
        assert_eq!(
            progress(&linear, &at("BAKE_TIME", 100.0)).as_deref(),
            Some("100% on green")
        );
        assert_eq!(
            progress(&Rollout::default(), &at("POST_TEST_TRAFFIC_SHIFT", 0.0)).as_deref(),
            Some("checking green on test traffic")
        );
        assert_eq!(progress(&Rollout::default(), &Position::default()), None);
    }

    #[test]
    fn milestones_are_reached_by_stage_and_weight_never_by_a_rollback() {
        use Milestone::*;
        let shifting = at("PRODUCTION_TRAFFIC_SHIFT", 40.0);
        assert!(!TrafficShifted.reached("IN_PROGRESS", &shifting));
        assert!(TrafficShifted.reached("IN_PROGRESS", &at("PRODUCTION_TRAFFIC_SHIFT", 100.0)));
        let baking = at("BAKE_TIME", 100.0);
        assert!(TrafficShifted.reached("IN_PROGRESS", &baking));
        assert!(!Baked.reached("IN_PROGRESS", &baking));
        assert!(Baked.reached("IN_PROGRESS", &at("CLEAN_UP", 100.0)));
        assert!(Baked.reached("SUCCESSFUL", &Position::default()));
        assert!(!TrafficShifted.reached("ROLLBACK_IN_PROGRESS", &baking));
    }

    #[test]
    fn a_rollback_says_what_caused_it() {
        let alarm = RollbackSignals {
            reason: Some("CloudWatch alarm api-5xx in ALARM".into()),
            triggered_alarms: vec!["api-5xx".into()],
            circuit_breaker: None,
        };
        assert_eq!(
            rollback_cause(&alarm, Some("ignored"), None).as_deref(),
            Some("alarm api-5xx went to ALARM (CloudWatch alarm api-5xx in ALARM)")
        );
        let breaker = RollbackSignals {
            circuit_breaker: Some((3, 3)),
            ..RollbackSignals::default()
        };
        assert!(rollback_cause(&breaker, None, None)
            .unwrap()
            .starts_with("the deployment circuit breaker tripped (3 of 3"));
        let plain = RollbackSignals::default();
        assert_eq!(
            rollback_cause(
                &plain,
                Some("http_probe failed"),
                Some("arn:aws:iam::1:user/ana")
            )
            .as_deref(),
            Some("rolled back by arn:aws:iam::1:user/ana")
        );
        assert_eq!(
            rollback_cause(&plain, Some("http_probe failed"), None).as_deref(),
            Some("the health hook failed green: http_probe failed")
        );
        assert_eq!(rollback_cause(&plain, None, None), None);
    }
}
