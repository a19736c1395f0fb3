"""The guard scripts/test runs against import cycles between modules: it passes on the
workspace and fails, naming the loop, on a crate whose modules import each other."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "module-cycles"


def run(*crates: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *crates], capture_output=True, text=True)


def test_the_workspace_has_no_import_cycle():
    result = run()
    assert result.returncode == 0, result.stdout
    assert "no import cycle" in result.stdout


def test_modules_that_import_each_other_are_named(tmp_path: pathlib.Path):
    src = tmp_path / "crate" / "src"
    (src / "aws").mkdir(parents=True)
    (src / "lib.rs").write_text("pub mod aws;\npub mod engine;\npub mod model;\n")
    (src / "aws" / "mod.rs").write_text("pub mod ecs;\n")
    (src / "aws" / "ecs.rs").write_text("use crate::engine::ACTIVE;\n// crate::model in a comment\n")
    (src / "engine.rs").write_text("use crate::aws::ecs::{Api, Reads};\nuse crate::model::Status;\n")
    (src / "model.rs").write_text("#[cfg(test)]\nmod tests {\n    use crate::engine::Run;\n}\n")
    result = run(str(tmp_path / "crate"))
    assert result.returncode == 1, result.stdout
    assert "aws::ecs -> engine -> aws::ecs" in result.stdout
    # A test module's imports and a comment are not dependencies.
    assert "model" not in result.stdout.replace("import cycle", "")
