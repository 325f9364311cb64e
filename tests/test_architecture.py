"""The import contracts of pyproject.toml ([tool.importlinter]) hold: no module imports a layer above
its own, so no import circle between layers (a core module importing the service fails here too)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    if not lint_imports.exists():
        pytest.fail(f"{lint_imports} is missing: install the test extra (pip install -e '.[test]')")
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("old, new, names", [
    ("atoll.output", "atoll.capture", ["capture", "JobLog", "current", "MIN_MAX_BYTES"]),
    ("atoll.control", "atoll.progress", ["RunControl", "using", "current"]),
    ("atoll.executors.base", "atoll.executors.interpreter", ["Executor", "bind", "identity"]),
])
def test_renamed_modules_stay_importable_with_a_deprecation_warning(old, new, names):
    code = (f"import warnings, importlib\n"
            f"with warnings.catch_warnings(record=True) as caught:\n"
            f"    warnings.simplefilter('always')\n"
            f"    old = importlib.import_module({old!r})\n"
            f"new = importlib.import_module({new!r})\n"
            f"assert any(w.category is DeprecationWarning and {new!r} in str(w.message) for w in caught)\n"
            f"assert all(getattr(old, n) is getattr(new, n) for n in {names!r})\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_every_operator_of_the_dsl_is_one_object():
    import pickle

    from atoll.operators import OPERATORS, Whole
    from atoll.pipeline import AGGREGATE, BRANCHING, NARROW, TWO_INPUTS, WHOLE_NO_FUNCTION, Pipeline

    # each operator in exactly one family (in any order: later families add to each)
    families = [*NARROW, *AGGREGATE, "to", *BRANCHING, *TWO_INPUTS, *WHOLE_NO_FUNCTION]
    assert sorted(OPERATORS) == sorted(families) and len(set(families)) == len(families)
    for name, op in OPERATORS.items():
        assert op.name == name and callable(getattr(Pipeline, name))
        assert pickle.loads(pickle.dumps(op)) is op
        assert op.joins_pass is not isinstance(op, Whole)
    stage = Pipeline().forkMap(abs, None).stages[0]
    assert stage.operator is OPERATORS["forkMap"] and stage.op == "forkMap"
    assert stage.branches[0].stages[0].operator is OPERATORS["map"]  # a bare function branch maps
    assert pickle.loads(pickle.dumps(stage)).operator is stage.operator
