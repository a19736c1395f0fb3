"""The size budget scripts/package holds the arm64 artifacts to (infra/size-budget.toml,
checked by scripts/size-budget): it names every function of the stack, and the check fails,
naming the excess, on an artifact over its line or unknown to the budget."""
import importlib.machinery
import importlib.util
import json
import pathlib
import re
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "size-budget"
BUDGET = ROOT / "infra" / "size-budget.toml"

loader = importlib.machinery.SourceFileLoader("size_budget", str(SCRIPT))
spec = importlib.util.spec_from_loader("size_budget", loader)
size_budget = importlib.util.module_from_spec(spec)
loader.exec_module(size_budget)


def budget() -> dict:
    with open(BUDGET, "rb") as f:
        return tomllib.load(f)


def template_functions() -> set[str]:
    text = (ROOT / "infra" / "template.yaml").read_text()
    return set(re.findall(r"^  ([A-Za-z0-9]+):\n    Type: AWS::Serverless::Function$", text, re.M))


def test_every_function_of_the_stack_has_a_budget():
    lines = budget()
    assert set(lines) == template_functions() and len(lines) == 4
    for name, limits in lines.items():
        assert set(limits) == {"bootstrap_bytes", "zip_bytes"}, name
        assert 0 < limits["zip_bytes"] < limits["bootstrap_bytes"], name


def test_artifacts_within_their_budget_pass(tmp_path: pathlib.Path):
    lines = budget()
    sizes = {name: dict(limits) for name, limits in lines.items()}
    assert size_budget.check(lines, sizes) == []
    path = tmp_path / "sizes.json"
    path.write_text(json.dumps(sizes))
    result = subprocess.run([sys.executable, str(SCRIPT), str(BUDGET), str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "DeployerFunction" in result.stdout


def test_an_artifact_over_its_budget_or_unknown_to_it_fails_naming_it(tmp_path: pathlib.Path):
    lines = budget()
    sizes = {name: dict(limits) for name, limits in lines.items()}
    sizes["NotifierFunction"]["zip_bytes"] += 1
    sizes["ExtraFunction"] = {"bootstrap_bytes": 1, "zip_bytes": 1}
    errors = size_budget.check(lines, sizes)
    assert len(errors) == 2
    assert any(e.startswith("NotifierFunction's zip is") and "1 over its budget" in e for e in errors)
    assert "ExtraFunction has no size budget" in errors
    path = tmp_path / "sizes.json"
    path.write_text(json.dumps(sizes))
    result = subprocess.run([sys.executable, str(SCRIPT), str(BUDGET), str(path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "NotifierFunction's zip is" in result.stderr
