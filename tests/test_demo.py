"""The main job, ``python -m gradjit --quick``, run as a user would run it (in a subprocess).

Checks the talk's values, the Wengert list, the training log, the test accuracy (a low bar for the
short run) and the gradient check appear in the output, and that a missing scikit-learn is reported
with the command that installs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def quick_run() -> subprocess.CompletedProcess:
    pytest.importorskip("sklearn")
    return _run("-m", "gradjit", "--quick")


def test_exits_zero(quick_run: subprocess.CompletedProcess) -> None:
    assert quick_run.returncode == 0, quick_run.stderr


@pytest.mark.parametrize(
    "expected",
    [
        "f(3.5, 2.1, 1.1) = 5.81    df/da = 1\n",
        "f(3.5, 2.1, 1.1) = 3.0212327832711    df/da = 0.86320936664887\n",
        "f(3, 2) = 81    df/da = 108\n",
        "[[0. 0. 0.]\n   [0. 0. 0.]\n   [0. 0. 0.]]",
        "[[3. 0. 0.]\n   [0. 3. 0.]\n   [0. 0. 3.]]",
        "= sin v1",
        "guard bool(",
        "gj.check_grads(loss, params, order=2)",
    ],
)
def test_output_has(quick_run: subprocess.CompletedProcess, expected: str) -> None:
    assert expected in quick_run.stdout


def test_loop_and_recursion_both_shown(quick_run: subprocess.CompletedProcess) -> None:
    assert quick_run.stdout.count("f(3, 2) = 81    df/da = 108") == 2


def test_training_log_and_accuracy(quick_run: subprocess.CompletedProcess) -> None:
    losses = [float(x) for x in re.findall(r"train loss (\d+\.\d+)", quick_run.stdout)]
    assert len(losses) >= 2 and losses[-1] < losses[0], quick_run.stdout
    m = re.search(r"test accuracy: (\d+\.\d+)%", quick_run.stdout)
    assert m is not None, quick_run.stdout
    assert float(m.group(1)) > 80.0


def test_gradient_entry_agrees(quick_run: subprocess.CompletedProcess) -> None:
    m = re.search(r"rel\. error (\S+)", quick_run.stdout)
    assert m is not None, quick_run.stdout
    assert float(m.group(1)) < 1e-4


def test_missing_sklearn_says_how_to_install() -> None:
    code = "import sys; sys.modules['sklearn'] = None; from gradjit.__main__ import main; sys.exit(main(['--quick']))"
    proc = _run("-c", code)
    assert proc.returncode == 1
    assert "pip install" in proc.stderr and "scikit-learn" in proc.stderr
    assert "Traceback" not in proc.stderr
