"""Checks of the infrastructure templates.

- cfn-lint and checkov (offline) on infra/template.yaml and infra/example-service.yaml;
- the EventBridge patterns of template.yaml against the sample events in events/;
- least privilege of the three function roles, and the wiring the Rust code relies on
  (environment variables, hook function name, ledger table, failure destinations);
- the blue/green deployment group and the CI release role of example-service.yaml.

Run: python -m pytest infra/tests -q   (tools from requirements-test.txt)
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).resolve().parents[1]
ROOT = INFRA.parent
EVENTS = ROOT / "events"
SAM_TEMPLATE = INFRA / "template.yaml"
EXAMPLE_TEMPLATE = INFRA / "example-service.yaml"
TEMPLATES = [SAM_TEMPLATE, EXAMPLE_TEMPLATE]
EXPANDED_SAM_TEMPLATE = "template.expanded.json"

# Values given to list parameters when event patterns are evaluated.
PARAMETER_VALUES = {
    "ManagedApplications": ["web1", "web2"],
    "ManagedServices": ["web2"],
}

# Actions that support no resource-level permissions: IAM accepts only Resource "*" for them
# (Service Authorization Reference: no resource type listed for the action). Every other
# action of the function roles must name its resources.
RESOURCE_STAR_ALLOWED = {
    # read-only; ECS authorizes it against no resource
    "ecs:DescribeTaskDefinition",
    # CodeDeploy deployment targets and lifecycle hook reports: no resource type
    "codedeploy:ListDeploymentTargets",
    "codedeploy:BatchGetDeploymentTargets",
    "codedeploy:PutLifecycleEventHookExecutionStatus",
    # Elastic Load Balancing v2 Describe* actions: no resource type
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeRules",
}

# AWS managed policies a function role may carry, and why.
ALLOWED_MANAGED_POLICIES = {
    # network interfaces of the health hook when it runs in a VPC (HookSubnetIds)
    "AWSLambdaENIManagementAccess",
}

# What each function calls (the Rust code's AWS adapters); the role must allow it.
REQUIRED_ACTIONS = {
    "DeployerFunction": {
        "ecr:BatchGetImage",
        "ecr:DescribeImages",
        "codedeploy:GetDeploymentGroup",
        "codedeploy:CreateDeployment",
        "codedeploy:GetDeployment",
        "codedeploy:ListDeployments",
        "codedeploy:GetDeploymentConfig",
        "codedeploy:RegisterApplicationRevision",
        "ecs:DescribeServices",
        "ecs:DescribeTaskDefinition",
        "ecs:RegisterTaskDefinition",
        "ecs:TagResource",
        "ecs:UpdateService",
        "ecs:ContinueServiceDeployment",
        "codedeploy:ContinueDeployment",
        "codedeploy:StopDeployment",
        "ecs:ListServiceDeployments",
        "ecs:DescribeServiceDeployments",
        "ecs:DescribeServiceRevisions",
        "iam:PassRole",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "ssm:GetParameter",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:SendMessage",
    },
    "HealthHookFunction": {
        "codedeploy:GetDeployment",
        "codedeploy:GetDeploymentGroup",
        "codedeploy:ListDeploymentTargets",
        "codedeploy:BatchGetDeploymentTargets",
        "codedeploy:PutLifecycleEventHookExecutionStatus",
        "ecs:DescribeTaskSets",
        "ecs:DescribeServiceDeployments",
        "ecs:DescribeServiceRevisions",
        "ecs:DescribeServices",
        "ecs:ListTagsForResource",
        "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeRules",
        "ssm:GetParameter",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:SendMessage",
    },
    "NotifierFunction": {
        "codedeploy:GetDeployment",
        "ecs:ListServiceDeployments",
        "ecs:DescribeServiceDeployments",
        "ecs:DescribeServiceRevisions",
        "ecs:ListTagsForResource",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "ssm:GetParameter",
        "secretsmanager:GetSecretValue",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:SendMessage",
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
    },
    "ApproverFunction": {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "ecs:DescribeServiceDeployments",
        "ecs:ContinueServiceDeployment",
        "codedeploy:GetDeployment",
        "codedeploy:ContinueDeployment",
        "codedeploy:StopDeployment",
        "secretsmanager:GetSecretValue",
        "ssm:GetParameter",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    },
}

FUNCTIONS = list(REQUIRED_ACTIONS)
# Invoked asynchronously (by events), each with an on-failure destination; the approver is
# invoked by its function URL and answers its caller.
ASYNC_FUNCTIONS = ["DeployerFunction", "HealthHookFunction", "NotifierFunction"]


# ------------------------------------------------------------------------------------------------
# Template loading (CloudFormation short-form tags)
# ------------------------------------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads !Ref, !Sub, !GetAtt, !If, ... as their long JSON forms."""


def _construct_intrinsic(loader: CfnLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass


LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"


def expand_language_extensions(template: dict, values: dict[str, list[str]]) -> dict:
    """The template as CloudFormation's `AWS::LanguageExtensions` transform hands it on (its
    `Fn::ForEach` loops unrolled) for the given list-parameter values, by cfn-lint's
    implementation of that transform; SAM's transform comes after it."""
    from cfnlint.template.transforms._language_extensions import language_extension

    template = copy.deepcopy(template)
    for name, value in values.items():
        template["Parameters"][name]["Default"] = ",".join(value)
    cfn = types.SimpleNamespace(template=template, regions=["us-east-1"], filename=str(SAM_TEMPLATE))
    matches, expanded = language_extension(cfn)
    assert not matches, f"LanguageExtensions transform failed: {[m.message for m in matches]}"
    assert not any(k.startswith("Fn::ForEach") for k in expanded["Resources"])
    expanded["Transform"] = [t for t in expanded["Transform"] if t != LANGUAGE_EXTENSIONS]
    return expanded


def sam_template(values: dict[str, list[str]] = PARAMETER_VALUES) -> dict:
    """infra/template.yaml after the LanguageExtensions transform, for these parameter values."""
    return expand_language_extensions(load_template(SAM_TEMPLATE), values)


@pytest.fixture(scope="module")
def sam() -> dict:
    return sam_template()


@pytest.fixture(scope="module")
def example() -> dict:
    return load_template(EXAMPLE_TEMPLATE)


def resources_of_type(template: dict, type_name: str) -> dict:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_name}


def getatt(value) -> list | None:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return value["Fn::GetAtt"]
    return None


def sub_text(value) -> str | None:
    """The template string of a !Sub, or a plain string."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return None


# ------------------------------------------------------------------------------------------------
# Linters
# ------------------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """A console script of this interpreter's environment, else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} is not installed: pip install -r requirements-test.txt")


def offline_env() -> dict:
    env = dict(os.environ)
    env.update(
        {
            "BC_SKIP_MAPPING": "TRUE",  # no download of the guideline mapping
            "LOG_LEVEL": "WARNING",
        }
    )
    # No platform API key: checkov must not talk to any platform.
    for key in ("BC_API_KEY", "PRISMA_API_URL", "CKV_API_KEY"):
        env.pop(key, None)
    return env


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_reports_nothing(template: Path):
    result = subprocess.run(
        [tool("cfn-lint"), str(template)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Exit code is a bit mask: 2 errors, 4 warnings, 8 informational; 0 means a clean report.
    assert result.returncode == 0, f"cfn-lint {template.name}:\n{result.stdout}{result.stderr}"


def test_sam_template_translates_and_the_result_lints_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """What `sam deploy` hands CloudFormation: the SAM transform, then plain cfn-lint on it.

    cfn-lint checks SAM resources against SAM's schemas only; the translator catches what only
    the transform sees (Globals merging, EventInvokeConfig, generated resources).
    """
    from samtranslator.public.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict:
            return {}

    template = sam_template()
    template["Globals"]["Function"]["CodeUri"] = "s3://example-bucket/greenlight.zip"  # as `sam package` does
    if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the translator wants a region
    try:
        translated = transform(template, {}, NoManagedPolicies())
    except InvalidDocumentException as e:
        pytest.fail("SAM transform failed: " + "; ".join(c.message for c in e.causes))
    resources = translated["Resources"]
    for function in FUNCTIONS:
        assert resources[function]["Type"] == "AWS::Lambda::Function"
    # The function URL: public, the function checks Slack's signature itself.
    assert resources["ApproverFunctionUrl"]["Properties"]["AuthType"] == "NONE"
    for function in ASYNC_FUNCTIONS:
        invoke_config = resources[f"{function}EventInvokeConfig"]["Properties"]
        # Rules target the unqualified function, which runs $LATEST: the config must apply there.
        assert invoke_config["Qualifier"] == "$LATEST"
    out = tmp_path / "translated.json"
    out.write_text(json.dumps(translated, indent=1), encoding="utf-8")
    # W2001: the parameters Fn::ForEach loops over are used up by the LanguageExtensions
    # transform, which the translated template has already been through.
    result = subprocess.run(
        [tool("cfn-lint"), str(out), "--ignore-checks", "W2001"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"cfn-lint on the translated template:\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # checkov does not unroll Fn::ForEach: the per-application policies are scanned in the
    # template as the LanguageExtensions transform leaves it.
    expanded = tmp_path_factory.mktemp("checkov") / EXPANDED_SAM_TEMPLATE
    expanded.write_text(
        json.dumps(sam_template(), indent=1),
        encoding="utf-8",
    )
    # JSON output (instead of --quiet) keeps the skipped checks, which are verified below.
    cmd = [tool("checkov")]
    for template in [*TEMPLATES, expanded]:
        cmd += ["-f", str(template)]
    cmd += ["--framework", "cloudformation", "--skip-download", "--compact", "-o", "json"]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env=offline_env(), cwd=INFRA, check=False
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov gave no JSON report (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    if isinstance(report, list):  # one report per framework; only cloudformation is asked for
        (report,) = report
    report["exit_code"] = result.returncode
    return report


def test_checkov_finds_no_failed_check(checkov_report: dict):
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in checkov_report["results"].get("failed_checks", [])
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0, summary
    assert checkov_report["exit_code"] == 0
    scanned = {Path(c["file_path"]).name for c in checkov_report["results"].get("passed_checks", [])}
    assert scanned == {t.name for t in TEMPLATES} | {EXPANDED_SAM_TEMPLATE}, f"checkov scanned {scanned}"
    policies = {
        c["resource"]
        for c in checkov_report["results"].get("passed_checks", [])
        if Path(c["file_path"]).name == EXPANDED_SAM_TEMPLATE
    }
    assert "AWS::IAM::Policy.DeployerCodeDeployweb1" in policies, sorted(policies)


def _template_skips(template: dict) -> set[tuple[str, str, str]]:
    skips = set()
    for name, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            skips.add((name, skip["id"], skip.get("comment", "")))
    return skips


@pytest.mark.parametrize("template_path", TEMPLATES, ids=lambda p: p.name)
def test_every_checkov_skip_is_explained_and_used(template_path: Path, checkov_report: dict):
    template = sam_template() if template_path == SAM_TEMPLATE else load_template(template_path)
    skips = _template_skips(template)
    for name, check_id, comment in skips:
        assert len(comment.strip()) >= 20, f"{name}: skip of {check_id} needs a written reason"
    skipped = {
        (c["resource"].split(".", 1)[1], c["check_id"])
        for c in checkov_report["results"].get("skipped_checks", [])
        if Path(c["file_path"]).name == template_path.name
    }
    unused = {(name, check_id) for name, check_id, _ in skips} - skipped
    assert not unused, f"skips for checks that do not run on these resources: {sorted(unused)}"


# ------------------------------------------------------------------------------------------------
# EventBridge patterns against the sample events
# ------------------------------------------------------------------------------------------------


def resolve_pattern(value):
    """Replace parameter references with test values; refuse any other intrinsic."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return PARAMETER_VALUES[value["Ref"]]
        assert not any(k.startswith("Fn::") for k in value), f"unexpected intrinsic in pattern: {value}"
        return {k: resolve_pattern(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_pattern(v) for v in value]
    return value


def _value_matches(expected, actual) -> bool:
    if isinstance(expected, dict):
        if "prefix" in expected:
            return isinstance(actual, str) and actual.startswith(expected["prefix"])
        if "anything-but" in expected:
            excluded = expected["anything-but"]
            excluded = excluded if isinstance(excluded, list) else [excluded]
            return actual not in excluded
        if "exists" in expected:
            return expected["exists"]
        raise AssertionError(f"pattern operator not supported by this matcher: {expected}")
    # EventBridge compares JSON values exactly: "1" does not match 1, true does not match "true".
    return type(expected) is type(actual) and expected == actual


def event_matches(pattern: dict, event: dict) -> bool:
    """A small EventBridge matcher: nested objects, lists of exact values (any of)."""
    for key, expected in pattern.items():
        if isinstance(expected, dict):
            actual = event.get(key)
            if not isinstance(actual, dict) or not event_matches(expected, actual):
                return False
            continue
        assert isinstance(expected, list), f"pattern leaf {key!r} must be a list, got {expected!r}"
        if key not in event:
            if any(isinstance(e, dict) and e.get("exists") is False for e in expected):
                continue
            return False
        actual = event[key]
        values = actual if isinstance(actual, list) else [actual]
        if not any(_value_matches(e, v) for e in expected for v in values):
            return False
    return True


def load_event(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


def rules_targeting(template: dict, function: str) -> dict:
    rules = {}
    for name, rule in resources_of_type(template, "AWS::Events::Rule").items():
        for target in rule["Properties"]["Targets"]:
            if getatt(target["Arn"]) == [function, "Arn"]:
                rules[name] = rule
    return rules


def single_rule(template: dict, function: str, source: str) -> tuple[str, dict]:
    found = {
        name: rule
        for name, rule in rules_targeting(template, function).items()
        if rule["Properties"].get("EventPattern", {}).get("source") == [source]
    }
    assert len(found) == 1, f"expected one {source} rule for {function}, found {sorted(found)}"
    return next(iter(found.items()))


def pattern_of(rule: dict) -> dict:
    return resolve_pattern(rule["Properties"]["EventPattern"])


ECR_SAMPLES = ["ecr-push-version", "ecr-push-latest", "ecr-push-failed", "ecr-delete", "ecr-archive-untagged"]
CODEDEPLOY_SAMPLES = [
    "codedeploy-start",
    "codedeploy-ready",
    "codedeploy-success",
    "codedeploy-failure",
    "codedeploy-stop",
]
ECS_DEPLOYMENT_SAMPLES = [
    "ecs-deployment-state-change-in-progress",
    "ecs-deployment-state-change-completed",
    "ecs-deployment-state-change-failed",
]


def test_sample_events_exist():
    for name in ECR_SAMPLES + CODEDEPLOY_SAMPLES + ECS_DEPLOYMENT_SAMPLES:
        assert (EVENTS / f"{name}.json").is_file(), name


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("ecr-push-version", True),
        ("ecr-push-latest", True),  # delivered; the deployer's tag rule skips `latest`
        ("ecr-push-failed", False),
        ("ecr-delete", False),
        ("ecr-archive-untagged", False),
    ],
)
def test_ecr_rule_matches_successful_pushes_only(sam: dict, sample: str, expected: bool):
    _, rule = single_rule(sam, "DeployerFunction", "aws.ecr")
    assert event_matches(pattern_of(rule), load_event(sample)) is expected


def test_ecr_rule_takes_every_repository_so_onboarding_needs_no_stack_update(sam: dict):
    _, rule = single_rule(sam, "DeployerFunction", "aws.ecr")
    event = load_event("ecr-push-version")
    event["detail"]["repository-name"] = "web3-onboarded-later"
    assert event_matches(pattern_of(rule), event)
    assert "repository-name" not in pattern_of(rule)["detail"]


@pytest.mark.parametrize("sample", CODEDEPLOY_SAMPLES)
def test_notifier_rule_matches_every_deployment_state(sam: dict, sample: str):
    _, rule = single_rule(sam, "NotifierFunction", "aws.codedeploy")
    assert event_matches(pattern_of(rule), load_event(sample))


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("codedeploy-start", False),
        ("codedeploy-ready", False),
        ("codedeploy-success", True),
        ("codedeploy-failure", True),
        ("codedeploy-stop", True),
    ],
)
def test_deployer_state_rule_matches_finished_deployments_only(sam: dict, sample: str, expected: bool):
    _, rule = single_rule(sam, "DeployerFunction", "aws.codedeploy")
    assert event_matches(pattern_of(rule), load_event(sample)) is expected


@pytest.mark.parametrize("sample", ECS_DEPLOYMENT_SAMPLES)
def test_notifier_takes_every_native_deployment_state(sam: dict, sample: str):
    _, rule = single_rule(sam, "NotifierFunction", "aws.ecs")
    assert event_matches(pattern_of(rule), load_event(sample))


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("ecs-deployment-state-change-in-progress", False),
        ("ecs-deployment-state-change-completed", True),
        ("ecs-deployment-state-change-failed", True),
    ],
)
def test_deployer_takes_native_deployment_events_that_may_end_one(sam: dict, sample: str, expected: bool):
    _, rule = single_rule(sam, "DeployerFunction", "aws.ecs")
    assert event_matches(pattern_of(rule), load_event(sample)) is expected


def test_ecs_rules_take_every_service_so_onboarding_needs_no_stack_update(sam: dict):
    event = load_event("ecs-deployment-state-change-completed")
    event["resources"] = ["arn:aws:ecs:us-east-1:111122223333:service/other/web9-onboarded-later"]
    for function in ("NotifierFunction", "DeployerFunction"):
        _, rule = single_rule(sam, function, "aws.ecs")
        assert event_matches(pattern_of(rule), event)
        assert "resources" not in pattern_of(rule)


def test_codedeploy_rules_take_every_application_so_onboarding_needs_no_stack_update(sam: dict):
    event = load_event("codedeploy-success")
    event["detail"]["application"] = "web3-onboarded-later"
    for function in ("NotifierFunction", "DeployerFunction"):
        _, rule = single_rule(sam, function, "aws.codedeploy")
        assert event_matches(pattern_of(rule), event)
        assert "application" not in pattern_of(rule).get("detail", {})


def test_rules_do_not_cross_sources(sam: dict):
    _, ecr_rule = single_rule(sam, "DeployerFunction", "aws.ecr")
    for sample in CODEDEPLOY_SAMPLES:
        assert not event_matches(pattern_of(ecr_rule), load_event(sample))
    for function in ("NotifierFunction", "DeployerFunction"):
        _, rule = single_rule(sam, function, "aws.codedeploy")
        for sample in ECR_SAMPLES + ECS_DEPLOYMENT_SAMPLES:
            assert not event_matches(pattern_of(rule), load_event(sample))
        _, rule = single_rule(sam, function, "aws.ecs")
        for sample in ECR_SAMPLES + CODEDEPLOY_SAMPLES:
            assert not event_matches(pattern_of(rule), load_event(sample))


def test_deployer_sweeps_the_queues_on_a_schedule(sam: dict):
    (schedule,) = [
        rule for rule in rules_targeting(sam, "DeployerFunction").values() if "ScheduleExpression" in rule["Properties"]
    ]
    assert schedule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    assert "EventPattern" not in schedule["Properties"]
    # The scheduled event's envelope, as the deployer routes it.
    assert load_event("scheduled-sweep")["source"] == "aws.events"


def test_matcher_itself():
    assert event_matches({"a": ["x"]}, {"a": "x"})
    assert event_matches({"a": ["x", "y"]}, {"a": ["z", "y"]})
    assert not event_matches({"a": ["x"]}, {"a": "y"})
    assert not event_matches({"a": ["x"]}, {})
    assert event_matches({"d": {"b": [1]}}, {"d": {"b": 1, "c": 2}})
    assert not event_matches({"d": {"b": ["1"]}}, {"d": {"b": 1}})
    assert not event_matches({"d": {"b": [1]}}, {"d": "flat"})


def test_every_rule_is_wired_reliably(sam: dict):
    rules = resources_of_type(sam, "AWS::Events::Rule")
    assert len(rules) == 6
    permissions = resources_of_type(sam, "AWS::Lambda::Permission")
    queue_policy = next(iter(resources_of_type(sam, "AWS::SQS::QueuePolicy").values()))
    (statement,) = queue_policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    allowed_sources = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    for name, rule in rules.items():
        assert rule["Properties"]["State"] == "ENABLED"
        (target,) = rule["Properties"]["Targets"]
        assert getatt(target["DeadLetterConfig"]["Arn"]) == ["FailedEventsQueue", "Arn"], name
        assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1, name
        function = getatt(target["Arn"])[0]
        granted = [
            p
            for p in permissions.values()
            if p["Properties"]["FunctionName"] == {"Ref": function}
            and p["Properties"]["Principal"] == "events.amazonaws.com"
            and getatt(p["Properties"]["SourceArn"]) == [name, "Arn"]
        ]
        assert len(granted) == 1, f"{name} needs one lambda:InvokeFunction permission for {function}"
        assert {"Fn::GetAtt": [name, "Arn"]} in allowed_sources, f"queue policy must admit {name}"


# ------------------------------------------------------------------------------------------------
# IAM: least privilege of the function roles
# ------------------------------------------------------------------------------------------------


def flatten_if(value) -> list:
    """Both branches of an Fn::If (AWS::NoValue dropped), as a flat list."""
    if isinstance(value, dict) and "Fn::If" in value:
        _, when_true, when_false = value["Fn::If"]
        return flatten_if(when_true) + flatten_if(when_false)
    if value == {"Ref": "AWS::NoValue"}:
        return []
    if isinstance(value, list):
        out = []
        for item in value:
            out += flatten_if(item)
        return out
    return [value]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def role_of(template: dict, function: str) -> tuple[str, dict]:
    role_ref = template["Resources"][function]["Properties"]["Role"]
    name = getatt(role_ref)[0]
    return name, template["Resources"][name]


def role_statements(template: dict, role_name: str) -> list[dict]:
    role = template["Resources"][role_name]
    statements = []
    for policy in flatten_if(role["Properties"].get("Policies", [])):
        statements += flatten_if(policy["PolicyDocument"]["Statement"])
    for resource in template["Resources"].values():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            props = resource["Properties"]
            roles = as_list(props.get("Roles", [])) + ([props["RoleName"]] if "RoleName" in props else [])
            if {"Ref": role_name} in roles:
                statements += flatten_if(props["PolicyDocument"]["Statement"])
    return statements


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_has_its_own_role(sam: dict, function: str):
    role_name, role = role_of(sam, function)
    others = [f for f in FUNCTIONS if f != function and role_of(sam, f)[0] == role_name]
    assert not others, f"{function} shares {role_name} with {others}"
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_role_has_no_wildcard_action_and_no_star_resource_beyond_the_allow_list(sam: dict, function: str):
    role_name, _ = role_of(sam, function)
    statements = role_statements(sam, role_name)
    assert statements
    for statement in statements:
        sid = statement.get("Sid", statement)
        assert statement["Effect"] == "Allow", sid
        assert "NotAction" not in statement and "NotResource" not in statement, sid
        actions = as_list(statement["Action"])
        for action in actions:
            assert "*" not in action, f"{role_name}/{sid}: wildcard action {action}"
        resources = flatten_if(statement["Resource"])
        if "*" in resources:
            extra = set(actions) - RESOURCE_STAR_ALLOWED
            assert not extra, f"{role_name}/{sid}: Resource '*' for {sorted(extra)}, which support resource scoping"
            assert resources == ["*"], f"{role_name}/{sid}: mix of '*' and scoped resources"
        for resource in resources:
            text = sub_text(resource)
            if text is not None and text != "*":
                # Hand-written ARNs stay in this account (and region, where the service has one).
                assert "${AWS::AccountId}" in text, f"{role_name}/{sid}: {text} is not scoped to the account"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_role_allows_what_the_function_calls(sam: dict, function: str):
    role_name, _ = role_of(sam, function)
    granted = {a for s in role_statements(sam, role_name) for a in as_list(s["Action"])}
    missing = REQUIRED_ACTIONS[function] - granted
    assert not missing, f"{role_name} lacks {sorted(missing)}"
    unexpected = granted - REQUIRED_ACTIONS[function]
    assert not unexpected, f"{role_name} grants more than {function} calls: {sorted(unexpected)}"


# What the Rust tests saw each function call, through their fault proxies (each matrix
# records the union of its calls in target/greenlight-calls/<function>.json).
CALLS_DIR = ROOT / "target" / "greenlight-calls"
RECORDED = {
    "DeployerFunction": "deployer",
    "HealthHookFunction": "health-hook",
    "NotifierFunction": "notifier",
    "ApproverFunction": "approver",
}
SERVICE_OF_OPERATION = {
    **{op: "dynamodb" for op in ["GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem"]},
    **{
        op: "ecs"
        for op in [
            "DescribeServices",
            "DescribeTaskDefinition",
            "RegisterTaskDefinition",
            "DescribeTaskSets",
            "DescribeServiceDeployments",
            "DescribeServiceRevisions",
            "ListServiceDeployments",
            "UpdateService",
            "ListTagsForResource",
            "ContinueServiceDeployment",
        ]
    },
    **{
        op: "elasticloadbalancing"
        for op in [
            "DescribeTargetGroups",
            "DescribeTargetHealth",
            "DescribeListeners",
            "DescribeLoadBalancers",
            "DescribeRules",
        ]
    },
    **{
        op: "codedeploy"
        for op in [
            "GetDeployment",
            "GetDeploymentGroup",
            "CreateDeployment",
            "ListDeployments",
            "ListDeploymentTargets",
            "BatchGetDeploymentTargets",
            "PutLifecycleEventHookExecutionStatus",
            "ContinueDeployment",
            "StopDeployment",
        ]
    },
    "GetParameter": "ssm",
    "GetSecretValue": "secretsmanager",
    "BatchGetImage": "ecr",
    "DescribeImages": "ecr",
}
# Authorized without a call of their own: TransactWriteItems as the writes it contains; what
# Lambda does for the function (logs, the on-failure queue); what CreateDeployment and
# RegisterTaskDefinition need besides themselves; the config read at cold start (the in-process
# matrices of the deployer and notifier load no config).
NOT_A_CALL_OF_ITS_OWN = {
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "sqs:SendMessage",
    "iam:PassRole",
    "ecs:TagResource",
    "codedeploy:RegisterApplicationRevision",
    "codedeploy:GetDeploymentConfig",
    "ssm:GetParameter",
}
# What Lambda calls as the notifier's role to read the ledger's stream for the verdict mapping.
STREAM_READS = {
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
}


def actions_of(operation: str) -> set[str]:
    if operation == "TransactWriteItems":
        return {"dynamodb:PutItem", "dynamodb:UpdateItem"}
    assert operation in SERVICE_OF_OPERATION, f"a call the role map does not know: {operation}"
    return {f"{SERVICE_OF_OPERATION[operation]}:{operation}"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_role_grants_exactly_the_calls_the_tests_saw(sam: dict, function: str):
    path = CALLS_DIR / f"{RECORDED[function]}.json"
    assert path.exists(), f"{path} is missing: the Rust tests record it (scripts/test runs them first)"
    derived = set().union(*(actions_of(op) for op in json.loads(path.read_text())))
    role_name, _ = role_of(sam, function)
    granted = {a for s in role_statements(sam, role_name) for a in as_list(s["Action"])}
    assert not derived - granted, f"{role_name} lacks {sorted(derived - granted)}, which the code calls"
    stream = STREAM_READS if function == "NotifierFunction" else set()
    unused = granted - derived - NOT_A_CALL_OF_ITS_OWN - stream
    if function == "ApproverFunction":
        # The approver's matrix runs the handler with its secrets in memory (no Secrets Manager).
        unused -= {"secretsmanager:GetSecretValue"}
    assert not unused, f"{role_name} grants {sorted(unused)}, which no test saw called"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_role_managed_policies_are_the_allowed_ones(sam: dict, function: str):
    _, role = role_of(sam, function)
    for arn in flatten_if(role["Properties"].get("ManagedPolicyArns", [])):
        name = sub_text(arn).rsplit("/", 1)[-1]
        assert name in ALLOWED_MANAGED_POLICIES, f"{function}: managed policy {name}"


CODEDEPLOY_ARN = "arn:${AWS::Partition}:codedeploy:${AWS::Region}:${AWS::AccountId}:"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_codedeploy_actions_are_scoped_to_the_managed_applications(sam: dict, function: str):
    role_name, _ = role_of(sam, function)
    scoped = set()
    for statement in role_statements(sam, role_name):
        actions = as_list(statement["Action"])
        if not any(a.startswith("codedeploy:") for a in actions):
            continue
        resources = [sub_text(r) for r in flatten_if(statement["Resource"])]
        if resources == ["*"]:
            assert set(actions) <= RESOURCE_STAR_ALLOWED, statement
            continue
        scoped |= set(resources)
    groups = {f"{CODEDEPLOY_ARN}deploymentgroup:{app}/*" for app in PARAMETER_VALUES["ManagedApplications"]}
    applications = {f"{CODEDEPLOY_ARN}application:{app}" for app in PARAMETER_VALUES["ManagedApplications"]}
    # CreateDeployment also reads the group's deployment configuration (CodeDeployDefault.* or
    # the account's own): configurations belong to no application.
    configs = {f"{CODEDEPLOY_ARN}deploymentconfig:*"}
    expected = groups | applications | configs if function == "DeployerFunction" else groups
    assert scoped == expected, f"{role_name}: CodeDeploy resources {sorted(scoped)}"


def test_each_managed_application_gets_its_own_policies():
    apps = ["web1", "checkout-api", "admin.portal", "team-a-*"]
    template = sam_template({"ManagedApplications": apps})
    policies = {k: v for k, v in resources_of_type(template, "AWS::IAM::Policy").items() if "CodeDeploy" in k}
    for app in apps:
        logical = re.sub("[^0-9A-Za-z]", "", app)
        for role in ("Deployer", "HealthHook", "Notifier", "Approver"):
            policy = policies.pop(f"{role}CodeDeploy{logical}")["Properties"]
            assert policy["Roles"] == [{"Ref": f"{role}Role"}]
            # Policy names take IAM's characters only (no `*`): the entry's alphanumerics.
            assert policy["PolicyName"] == f"greenlight-codedeploy-{logical}"
            text = json.dumps(policy["PolicyDocument"])
            assert f":deploymentgroup:{app}/*" in text
            assert ":deploymentgroup:*" not in text and ":application:*" not in text
    assert not policies, f"policies not written per application: {sorted(policies)}"


ECS_SERVICE_ARN = "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:service/${EcsClusterName}/"


def update_service_grants(template: dict) -> dict[str, dict]:
    """The policies (by logical id) of any role that allow ecs:UpdateService."""
    grants = {}
    for logical, resource in resources_of_type(template, "AWS::IAM::Policy").items():
        statements = flatten_if(resource["Properties"]["PolicyDocument"]["Statement"])
        if any("ecs:UpdateService" in as_list(s["Action"]) for s in statements):
            grants[logical] = resource
    return grants


def test_update_service_is_scoped_to_each_managed_service_only_for_the_deployer():
    services = ["web2", "checkout-api", "team-b-*"]
    template = sam_template({**PARAMETER_VALUES, "ManagedServices": services})
    for role in ("HealthHookRole", "NotifierRole"):
        assert not any("ecs:UpdateService" in as_list(s["Action"]) for s in role_statements(template, role))
    inline = template["Resources"]["DeployerRole"]["Properties"].get("Policies", [])
    assert "ecs:UpdateService" not in json.dumps(inline), "UpdateService on the whole cluster"
    grants = update_service_grants(template)
    for service in services:
        policy = grants.pop(f"DeployerEcsService{re.sub('[^0-9A-Za-z]', '', service)}")
        assert policy["Condition"] == "DeploysNativeServices"
        assert policy["Properties"]["Roles"] == [{"Ref": "DeployerRole"}]
        update, approve = policy["Properties"]["PolicyDocument"]["Statement"]
        assert as_list(update["Action"]) == ["ecs:UpdateService"]
        assert [sub_text(r) for r in flatten_if(update["Resource"])] == [f"{ECS_SERVICE_ARN}{service}"]
        # The approval gate continues or rolls back that service's deployments only.
        assert as_list(approve["Action"]) == ["ecs:ContinueServiceDeployment"]
        deployments = ECS_SERVICE_ARN.replace(":service/", ":service-deployment/")
        assert [sub_text(r) for r in flatten_if(approve["Resource"])] == [f"{deployments}{service}/*"]
        approver = template["Resources"][f"ApproverEcsService{re.sub('[^0-9A-Za-z]', '', service)}"]
        assert approver["Condition"] == "DeploysNativeServices"
        assert approver["Properties"]["PolicyDocument"]["Statement"] == [approve]
    assert not grants, f"UpdateService granted beyond the managed services: {sorted(grants)}"


def test_no_managed_service_means_no_update_service(sam: dict):
    """The default (CodeDeploy only) creates no UpdateService policy: CloudFormation reads the
    empty list as one empty entry, and every policy the loop writes is under a condition that is
    false exactly when the list is empty."""
    assert load_template(SAM_TEMPLATE)["Parameters"]["ManagedServices"]["Default"] == ""
    assert sam["Conditions"]["DeploysNativeServices"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "ManagedServices"}]}, ""]}]
    }
    grants = update_service_grants(sam)
    assert grants and all(g["Condition"] == "DeploysNativeServices" for g in grants.values())


def test_the_operator_policy_allows_what_the_command_calls_and_nothing_else(sam: dict):
    """`greenlight status|history` and `--wait` read the apps (Scan of the queue items), each
    queue and release (GetItem) and each app's releases (Query): cli/src/main.rs and
    HistoryLedger in shared/src/ledger/. `deploy|rollback|plan` invoke the deployer
    (cli/src/deploy.rs); `status` and `--wait-until` read a native deployment
    (DescribeServiceDeployments, in the stack's cluster); STS GetCallerIdentity needs no
    permission."""
    policy = sam["Resources"]["OperatorPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    ledger, invoke, deployments = policy["Properties"]["PolicyDocument"]["Statement"]
    assert set(as_list(ledger["Action"])) == {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"}
    assert ledger["Resource"] == {"Fn::GetAtt": ["ReleaseLedgerTable", "Arn"]}
    assert as_list(invoke["Action"]) == ["lambda:InvokeFunction"]
    assert invoke["Resource"] == {"Fn::GetAtt": ["DeployerFunction", "Arn"]}
    assert as_list(deployments["Action"]) == ["ecs:DescribeServiceDeployments"]
    assert "service-deployment/${EcsClusterName}/*" in json.dumps(deployments["Resource"])
    assert "Roles" not in policy["Properties"] and "Users" not in policy["Properties"]
    ledger_rust = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "shared" / "src" / "ledger").rglob("*.rs"))
    for call in (".scan()", ".query()", ".get_item()"):
        assert call in ledger_rust, call
    cli_rust = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "cli" / "src").glob("*.rs"))
    assert ".invoke()" in cli_rust and ".get_caller_identity()" in cli_rust
    assert ".service_deployment(" in cli_rust
    aws_clients = set(re.findall(r"aws_sdk_(\w+)::Client", cli_rust))
    assert aws_clients == {"dynamodb", "ecs", "lambda", "sts"}, aws_clients
    assert sam["Outputs"]["OperatorPolicyArn"]["Value"] == {"Ref": "OperatorPolicy"}


def test_pass_role_is_limited_to_ecs_tasks_and_listed_roles(sam: dict):
    pass_role = [
        (function, s)
        for function in FUNCTIONS
        for s in role_statements(sam, role_of(sam, function)[0])
        if "iam:PassRole" in as_list(s["Action"])
    ]
    assert [f for f, _ in pass_role] == ["DeployerFunction"]
    for _, statement in pass_role:
        assert as_list(statement["Action"]) == ["iam:PassRole"]
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
        assert statement["Resource"] != "*"
        text = json.dumps(statement["Resource"])
        assert '"Ref": "TaskRoleArns"' in text and '"Ref": "ExecutionRoleArns"' in text


def test_tagging_is_allowed_only_while_registering(sam: dict):
    statements = role_statements(sam, role_of(sam, "DeployerFunction")[0])
    (tag,) = [s for s in statements if "ecs:TagResource" in as_list(s["Action"])]
    assert tag["Condition"] == {"StringEquals": {"ecs:CreateAction": "RegisterTaskDefinition"}}


# ------------------------------------------------------------------------------------------------
# Functions, table, reliability
# ------------------------------------------------------------------------------------------------


def function_props(template: dict, function: str) -> dict:
    return template["Resources"][function]["Properties"]


def test_globals_set_runtime_and_shared_environment(sam: dict):
    glob = sam["Globals"]["Function"]
    assert glob["Runtime"] == "provided.al2023"
    assert glob["Architectures"] == ["arm64"]
    assert glob["Handler"] == "bootstrap"
    assert glob["MemorySize"] == 128
    env = glob["Environment"]["Variables"]
    assert sub_text(env["GREENLIGHT_CONFIG"]) == "ssm:${ConfigParameterName}"
    assert env["GREENLIGHT_LEDGER_TABLE"] == {"Ref": "ReleaseLedgerTable"}
    assert env["RUST_LOG"] == "info"


@pytest.mark.parametrize(
    ("function", "binary", "timeout"),
    [
        ("DeployerFunction", "greenlight-deployer", 30),
        ("HealthHookFunction", "greenlight-health-hook", 300),
        ("NotifierFunction", "greenlight-notifier", 60),
        ("ApproverFunction", "greenlight-approver", 10),
    ],
)
def test_function_build_and_limits(sam: dict, function: str, binary: str, timeout: int):
    resource = sam["Resources"][function]
    assert resource["Type"] == "AWS::Serverless::Function"
    assert resource["Metadata"]["BuildMethod"] == "rust-cargolambda"
    assert resource["Metadata"]["BuildProperties"]["Binary"] == binary
    props = resource["Properties"]
    assert props["Timeout"] == timeout
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    log_group = sam["Resources"][props["LoggingConfig"]["LogGroup"]["Ref"]]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert sam["Parameters"]["LogRetentionDays"]["Default"] == 30


def test_hook_function_name_lets_codedeploy_invoke_it(sam: dict):
    name = sub_text(function_props(sam, "HealthHookFunction")["FunctionName"])
    assert name.startswith("CodeDeployHook_")
    deployer_env = function_props(sam, "DeployerFunction")["Environment"]["Variables"]
    assert deployer_env["GREENLIGHT_HOOK_FUNCTION"] == {"Ref": "HealthHookFunction"}


def test_notifier_reads_webhook_from_the_secret(sam: dict):
    env = function_props(sam, "NotifierFunction")["Environment"]["Variables"]
    assert sub_text(env["GREENLIGHT_SLACK_WEBHOOK"]) == "secretsmanager:${SlackWebhookSecret}"
    secret = sam["Resources"]["SlackWebhookSecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert "GenerateSecretString" in secret["Properties"]
    assert "SecretString" not in secret["Properties"]


def test_ledger_table(sam: dict):
    table = sam["Resources"]["ReleaseLedgerTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == "Retain"
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True


@pytest.mark.parametrize("function", ASYNC_FUNCTIONS)
def test_failed_invocations_land_in_the_failure_queue(sam: dict, function: str):
    config = function_props(sam, function)["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 2
    on_failure = config["DestinationConfig"]["OnFailure"]
    assert on_failure["Type"] == "SQS"
    assert getatt(on_failure["Destination"]) == ["FailedEventsQueue", "Arn"]


def test_failure_queue_and_alarms(sam: dict):
    queue = sam["Resources"]["FailedEventsQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    alarms = resources_of_type(sam, "AWS::CloudWatch::Alarm").values()
    errors = {
        a["Properties"]["Dimensions"][0]["Value"]["Ref"]
        for a in alarms
        if a["Properties"]["MetricName"] == "Errors"
    }
    assert errors == set(FUNCTIONS)
    queue_alarms = [a for a in alarms if a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"]
    assert len(queue_alarms) == 1
    for alarm in alarms:
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        assert alarm["Properties"]["Threshold"] == 0
        assert alarm["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"
    assert "KmsMasterKeyId" in sam["Resources"]["AlarmTopic"]["Properties"]


def test_outputs(sam: dict):
    outputs = sam["Outputs"]
    for key in (
        "DeployerFunctionArn",
        "HealthHookFunctionName",
        "NotifierFunctionArn",
        "ReleaseLedgerTableName",
        "FailedEventsQueueUrl",
        "ApprovalRequestUrl",
        "SlackSigningSecretArn",
    ):
        assert key in outputs


# ------------------------------------------------------------------------------------------------
# Example service
# ------------------------------------------------------------------------------------------------


def test_example_deployment_group_is_blue_green_with_rollback(example: dict):
    (group,) = resources_of_type(example, "AWS::CodeDeploy::DeploymentGroup").values()
    props = group["Properties"]
    assert props["DeploymentStyle"] == {"DeploymentType": "BLUE_GREEN", "DeploymentOption": "WITH_TRAFFIC_CONTROL"}
    assert sub_text(props["DeploymentGroupName"]) == "${AppName}-bluegreen"
    (pair,) = props["LoadBalancerInfo"]["TargetGroupPairInfoList"]
    assert len(pair["TargetGroups"]) == 2
    assert pair["ProdTrafficRoute"]["ListenerArns"] == [{"Ref": "ProductionListener"}]
    assert pair["TestTrafficRoute"]["ListenerArns"] == [{"Ref": "TestListener"}]
    assert props["AutoRollbackConfiguration"]["Enabled"] is True
    assert set(props["AutoRollbackConfiguration"]["Events"]) == {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"}
    assert props["AlarmConfiguration"]["Enabled"] is True
    assert props["AlarmConfiguration"]["Alarms"]
    termination = props["BlueGreenDeploymentConfiguration"]["TerminateBlueInstancesOnDeploymentSuccess"]
    assert termination["Action"] == "TERMINATE" and termination["TerminationWaitTimeInMinutes"] > 0
    role = example["Resources"][getatt(props["ServiceRoleArn"])[0]]["Properties"]
    assert [sub_text(a).rsplit("/", 1)[-1] for a in role["ManagedPolicyArns"]] == ["AWSCodeDeployRoleForECS"]


def test_example_service_and_listeners(example: dict):
    (service,) = resources_of_type(example, "AWS::ECS::Service").values()
    assert service["Properties"]["DeploymentController"] == {"Type": {"Ref": "BlueGreenEngine"}}
    assert example["Parameters"]["BlueGreenEngine"]["Default"] == "CODE_DEPLOY"
    assert example["Parameters"]["BlueGreenEngine"]["AllowedValues"] == ["CODE_DEPLOY", "ECS"]
    ports = sorted(l["Properties"]["Port"] for l in resources_of_type(example, "AWS::ElasticLoadBalancingV2::Listener").values())
    assert ports == [80, 8080]
    for tg in resources_of_type(example, "AWS::ElasticLoadBalancingV2::TargetGroup").values():
        assert tg["Properties"]["TargetType"] == "ip"
        assert tg["Properties"]["HealthCheckPath"] == {"Ref": "HealthCheckPath"}
    assert example["Parameters"]["HealthCheckPath"]["Default"] == "/api/health"
    assert example["Parameters"]["ContainerPort"]["Default"] == 3000
    assert example["Parameters"]["AppName"]["Default"] == "web1"


def test_example_native_variant_is_ecs_blue_green_with_the_hook_before_production(example: dict):
    """BlueGreenEngine=ECS: the BLUE_GREEN strategy, the Greenlight hook at
    POST_TEST_TRAFFIC_SHIFT through a role that may invoke it alone, listener rules forwarding
    to both target groups, the load balancer role with AWS's managed policy; CodeDeploy's
    resources only for CODE_DEPLOY."""
    conditions = example["Conditions"]
    assert conditions["UseNativeBlueGreen"] == {"Fn::Equals": [{"Ref": "BlueGreenEngine"}, "ECS"]}
    (service,) = resources_of_type(example, "AWS::ECS::Service").values()
    condition, native, otherwise = service["Properties"]["DeploymentConfiguration"]["Fn::If"]
    assert (condition, otherwise) == ("UseNativeBlueGreen", {"Ref": "AWS::NoValue"})
    assert native["Strategy"] == "BLUE_GREEN" and native["BakeTimeInMinutes"] > 0
    (hook,) = native["LifecycleHooks"]
    assert hook["LifecycleStages"] == ["POST_TEST_TRAFFIC_SHIFT"]
    assert sub_text(hook["HookTargetArn"]).endswith(":function:${HealthHookFunctionName}")
    assert getatt(hook["RoleArn"]) == ["HookInvokeRole", "Arn"]
    assert native["Alarms"]["Rollback"] is True and len(native["Alarms"]["AlarmNames"]) == 2
    (lb,) = service["Properties"]["LoadBalancers"]
    condition, advanced, otherwise = lb["AdvancedConfiguration"]["Fn::If"]
    assert (condition, otherwise) == ("UseNativeBlueGreen", {"Ref": "AWS::NoValue"})
    assert advanced["AlternateTargetGroupArn"] == {"Ref": "GreenTargetGroup"}
    assert advanced["ProductionListenerRule"] == {"Ref": "ProductionListenerRule"}
    assert advanced["TestListenerRule"] == {"Ref": "TestListenerRule"}
    for name, listener in [("ProductionListenerRule", "ProductionListener"), ("TestListenerRule", "TestListener")]:
        rule = example["Resources"][name]
        assert rule["Condition"] == "UseNativeBlueGreen"
        assert rule["Properties"]["ListenerArn"] == {"Ref": listener}
        (action,) = rule["Properties"]["Actions"]
        weights = {t["TargetGroupArn"]["Ref"]: t["Weight"] for t in action["ForwardConfig"]["TargetGroups"]}
        assert weights == {"BlueTargetGroup": 1, "GreenTargetGroup": 0}
    invoke = example["Resources"]["HookInvokeRole"]
    (trust,) = invoke["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "ecs.amazonaws.com"}
    (statement,) = [s for p in invoke["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert statement["Action"] == "lambda:InvokeFunction"
    assert sub_text(statement["Resource"]) == sub_text(hook["HookTargetArn"])
    lb_role = example["Resources"]["EcsLoadBalancerRole"]["Properties"]
    assert [sub_text(a).rsplit("/", 1)[-1] for a in lb_role["ManagedPolicyArns"]] == [
        "AmazonECSInfrastructureRolePolicyForLoadBalancers"
    ]
    assert ":iam::aws:policy/AmazonECSInfrastructureRolePolicyForLoadBalancers" in sub_text(lb_role["ManagedPolicyArns"][0])
    for name in ["Application", "DeploymentGroup", "CodeDeployServiceRole"]:
        assert example["Resources"][name]["Condition"] == "UseCodeDeploy", name
    (rule,) = example["Rules"].values()
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "BlueGreenEngine"}, "ECS"]}


def test_example_release_role_is_limited_to_branch_and_repository(example: dict):
    role = example["Resources"]["ReleaseWorkflowRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    cond = trust["Condition"]["StringEquals"]
    assert cond["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    assert sub_text(cond["token.actions.githubusercontent.com:sub"]) == (
        "repo:${GitHubRepository}:ref:refs/heads/${ReleaseBranch}"
    )
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    for statement in statements:
        actions = as_list(statement["Action"])
        assert all("*" not in a for a in actions)
        if statement["Resource"] == "*":
            assert actions == ["ecr:GetAuthorizationToken"]
        else:
            assert getatt(statement["Resource"]) == ["Repository", "Arn"]
    pushed = {a for s in statements for a in as_list(s["Action"])}
    assert {"ecr:PutImage", "ecr:CompleteLayerUpload", "ecr:GetAuthorizationToken"} <= pushed


def test_example_repository_keeps_release_tags_immutable(example: dict):
    repo = example["Resources"]["Repository"]["Properties"]
    assert repo["ImageScanningConfiguration"]["ScanOnPush"] is True
    assert repo["ImageTagMutability"] in ("IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION")
    if repo["ImageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION":
        values = [f["ImageTagMutabilityExclusionFilterValue"] for f in repo["ImageTagMutabilityExclusionFilters"]]
        assert values == ["latest"]


def test_example_config_matches_example_service():
    import tomllib

    config = tomllib.loads((INFRA / "greenlight.example.toml").read_text(encoding="utf-8"))
    app = config["apps"]["web1"]
    assert app["deployment_group"] == "web1-bluegreen"
    assert app["health"]["path"] == "/api/health"
    assert re.fullmatch(config["defaults"]["tag_pattern"], "v1.4.2")
    assert not re.fullmatch(config["defaults"]["tag_pattern"], "latest")
    assert config["defaults"]["hooks"] == ["AfterAllowTestTraffic"]


# Each role's ledger writes, by the key prefix of the items it writes.
WRITE_PREFIX = {
    "DeployerFunction": "app#*",
    "HealthHookFunction": "app#*",
    "NotifierFunction": "notice#*",
    "ApproverFunction": "app#*",
}
LEDGER_WRITES = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_ledger_writes_are_scoped_to_the_items_each_function_owns(sam: dict, function: str):
    role_name, _ = role_of(sam, function)
    writing = [s for s in role_statements(sam, role_name) if LEDGER_WRITES & set(as_list(s["Action"]))]
    assert writing, f"{role_name} writes nothing to the ledger"
    for statement in writing:
        condition = statement.get("Condition", {})
        keys = condition.get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
        assert as_list(keys) == [WRITE_PREFIX[function]], f"{role_name}/{statement.get('Sid')}: {condition}"
        # No write rides along in a statement with reads (the condition would scope them too).
        assert set(as_list(statement["Action"])) <= LEDGER_WRITES, statement


def test_verdicts_and_queue_changes_reach_the_notifier_through_the_ledgers_stream_and_only_they(sam: dict):
    table = sam["Resources"]["ReleaseLedgerTable"]["Properties"]
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    mapping = sam["Resources"]["VerdictStreamMapping"]["Properties"]
    assert mapping["FunctionName"] == {"Ref": "NotifierFunction"}
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["ReleaseLedgerTable", "StreamArn"]}
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["FailedEventsQueue", "Arn"]}
    verdicts, rounds, queue = (json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"])
    for pattern, attribute in ((verdicts, "hook_event"), (rounds, "hook_round")):
        assert pattern["eventName"] == ["MODIFY"]
        assert pattern["dynamodb"]["NewImage"]["pk"] == {"S": [{"prefix": "app#"}]}
        assert pattern["dynamodb"]["NewImage"][attribute] == {"S": [{"exists": True}]}
        assert len(pattern["dynamodb"]["NewImage"]) == 2
    # The queue's changes of a release run (a claim becomes pending or superseded by a MODIFY;
    # an archived run is history).
    assert queue["eventName"] == ["MODIFY"]
    assert queue["dynamodb"]["NewImage"] == {
        "pk": {"S": [{"prefix": "app#"}]},
        "release_status": {"S": ["pending", "superseded"]},
        "archived_at": {"S": [{"exists": False}]},
    }
    # The stream is read by the notifier's role, and only the stream.
    (reads,) = [s for s in role_statements(sam, role_of(sam, "NotifierFunction")[0]) if s.get("Sid") == "ReadLedgerStream"]
    assert set(as_list(reads["Action"])) == STREAM_READS
    assert "/stream/*" in json.dumps(reads["Resource"])
    for other in ("DeployerFunction", "HealthHookFunction"):
        granted = {a for s in role_statements(sam, role_of(sam, other)[0]) for a in as_list(s["Action"])}
        assert not granted & STREAM_READS, other


def test_the_approval_endpoint_is_a_function_url_checked_by_the_signing_secret(sam: dict):
    props = function_props(sam, "ApproverFunction")
    # Slack cannot sign with SigV4: the function checks Slack's signature itself, first.
    assert props["FunctionUrlConfig"] == {"AuthType": "NONE"}
    assert props["Timeout"] <= 10
    env = props["Environment"]["Variables"]
    assert sub_text(env["GREENLIGHT_SLACK_SIGNING_SECRET"]) == "secretsmanager:${SlackSigningSecret}"
    secret = sam["Resources"]["SlackSigningSecret"]["Properties"]
    assert "GenerateSecretString" in secret and "SecretString" not in secret
    assert getatt(sam["Outputs"]["ApprovalRequestUrl"]["Value"]) == ["ApproverFunctionUrl", "FunctionUrl"]
    # Its role: the ledger's approval writes on release items, the engines' continue and
    # rollback, scoped to the managed applications and services; no deploy, no notice.
    granted = {a for s in role_statements(sam, role_of(sam, "ApproverFunction")[0]) for a in as_list(s["Action"])}
    assert not granted & {"ecs:UpdateService", "codedeploy:CreateDeployment", "dynamodb:PutItem", "dynamodb:DeleteItem"}
