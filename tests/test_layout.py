"""The package layout's rules: commands import library modules, never each other, and importing a
library module has no side effects on TensorFlow's devices or matplotlib's backend."""

import ast
import pathlib
import subprocess
import sys

from tests.conftest import PROJECT_ROOT

COMMANDS = set("train evaluate predict eda bench port cv prepare explain export serve".split())


def _imported_artjax_modules(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("artjax"):
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("artjax")}
    return found


def test_no_module_imports_a_command():
    commands = {f"artjax.{c}" for c in COMMANDS}
    offenders = {
        str(path.relative_to(PROJECT_ROOT)): sorted(_imported_artjax_modules(path) & commands)
        for path in (PROJECT_ROOT / "artjax").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    for command in COMMANDS:  # every command is a module with a main
        assert "def main(" in (PROJECT_ROOT / "artjax" / f"{command}.py").read_text()


def test_every_command_sets_up_its_process_before_any_import():
    from tests import command_server

    for command in sorted(COMMANDS):
        body = ast.parse((PROJECT_ROOT / "artjax" / f"{command}.py").read_text()).body
        code = [n for n in body if not isinstance(n, ast.Expr)]  # the docstring
        assert isinstance(code[0], ast.ImportFrom) and code[0].module == "__future__", command
        first = ast.unparse(code[1])  # before any other import: artjax.startup
        assert first.startswith("if __name__ == '__main__':"), command
        assert "startup.before_imports()" in first, command
    # the tests' command server preloads every command (tests/command_server.py)
    assert set(command_server.PRELOADED) == {f"artjax.{c}" for c in COMMANDS}


def test_importing_the_library_changes_no_process_state():
    # Record what importing does to TensorFlow's devices and matplotlib's backend: nothing.
    code = (
        "import matplotlib, tensorflow as tf; calls = []; "
        "tf.config.set_visible_devices = lambda *a, **k: calls.append('set_visible_devices'); "
        "matplotlib.use = lambda *a, **k: calls.append('matplotlib.use'); "
        "import artjax.trainer, artjax.evaluation, artjax.serving.inference, artjax.benchmarks, "
        "artjax.data.exploration, artjax.models.porting, artjax.cli; print(calls); "
        "artjax.cli.setup_process(); print(calls)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-3:-1] == ["[]", "['set_visible_devices']"]


def test_every_experiment_builds_a_config_of_known_keys():
    from artjax import configs
    from tests.conftest import PROJECT_ROOT, experiment_config

    def keys(d, prefix=""):
        found = set()
        for k, v in d.items():
            found |= keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
        return found

    known = keys(configs.base_config().to_dict())
    for path in sorted((PROJECT_ROOT / "experiments").glob("*.py")):
        config = experiment_config(path.name, {})
        assert keys(config.to_dict()) <= known, path.name


def test_tests_of_one_xdist_group_run_on_one_worker(tmp_path):
    # `make test` relies on --dist loadgroup to build each expensive module fixture once; some
    # pytest releases silently ignore the marks (pytest-xdist#1386), which costs minutes.
    (tmp_path / "test_grouped.py").write_text(
        "import os, pytest\n"
        "pytestmark = pytest.mark.xdist_group('shared')\n"
        "@pytest.mark.parametrize('i', range(6))\n"
        "def test_worker(i):\n"
        "    with open(f'worker_{i}', 'w') as f:\n"
        "        f.write(os.environ['PYTEST_XDIST_WORKER'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p"]
        + ["no:cacheprovider", "test_grouped.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    workers = {(tmp_path / f"worker_{i}").read_text() for i in range(6)}
    assert len(workers) == 1, workers
