"""Rebuild ``math_verify_suite.jsonl`` from a checkout of huggingface/Math-Verify.

Usage (SOURCES.md names the commit)::

    python tests/data/verifier/make_math_verify_suite.py /path/to/Math-Verify \\
        > tests/data/verifier/math_verify_suite.jsonl

The cases are read by pytest's own collection of Math-Verify's ``tests/`` (every parametrised
case, with its arguments), not by parsing the files; ``options`` records how the test function
calls math-verify (extraction targets and any non-default option).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_PLUGIN = """
import json, os

def pytest_collection_modifyitems(session, config, items):
    cases = []
    for item in items:
        spec = getattr(item, "callspec", None)
        params = {k: (v if isinstance(v, (str, int, float, bool, list)) else repr(v))
                  for k, v in (spec.params.items() if spec else [])}
        cases.append({"nodeid": item.nodeid, "params": params})
    with open(os.environ["MV_SUITE_OUT"], "w") as handle:
        json.dump(cases, handle)
"""

# How each test function of Math-Verify calls ``compare_strings`` (match types and options).
_MATCH_TYPES = {
    "test_number_extraction": ["expr"],
    "test_latex_notation": ["latex"],
    "test_latex_notation_math": ["latex"],
    "test_relations_math": ["latex"],
    "test_matrix_extraction": ["latex"],
    "test_set_rel_assymetry": ["latex"],
}
_PRECISION = {"test_float_precision": 5, "test_sqrt_precision": 5, "test_symbols": 5}


def collect(checkout: Path) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        plugin = Path(tmp) / "mv_suite_plugin.py"
        plugin.write_text(_PLUGIN, encoding="utf-8")
        out = Path(tmp) / "cases.json"
        env = dict(os.environ, MV_SUITE_OUT=str(out), PYTHONPATH=tmp)
        subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "mv_suite_plugin"],
            cwd=checkout,
            env=env,
            check=True,
            capture_output=True,
        )
        return json.loads(out.read_text(encoding="utf-8"))


def rows(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    per_test: dict[str, int] = {}
    for case in cases:
        params = case["params"]
        test = case["nodeid"].split("[")[0]
        function = test.split("::")[1]
        index = per_test.get(test, 0)
        per_test[test] = index + 1
        row: dict[str, Any] = {"id": f"mv{len(out):03d}", "test": test, "case": index}
        if "gold" in params:
            match_types = _MATCH_TYPES.get(function, ["latex", "expr"])
            options = {"match_types": match_types}
            for key in ("precision", "strict", "allow_set_relation_comp"):
                if key in params:
                    options[key] = params[key]
            if function in _PRECISION:
                options["precision"] = _PRECISION[function]
            expected = params.get("expected", params.get("result"))
            row |= {
                "gold": params["gold"],
                "pred": params["pred"],
                "expected": bool(expected),
                "options": options,
            }
        elif "config" in params:  # StringExtractionConfig cases: the expected letter, if any
            letters = params["expected"]
            row |= {
                "pred": params["pred"],
                "expected_letter": letters[-1] if letters else None,
                "options": {"string_extraction": params["config"]},
            }
        else:
            continue
        out.append(row)
    # test_precision's one string assert (its other four compare sympy objects, not strings).
    out.append(
        {
            "id": f"mv{len(out):03d}",
            "test": "tests/test_all.py::test_precision",
            "case": 4,
            "gold": "$\\frac{1}{3}$",
            "pred": "0.3333$",
            "expected": True,
            "options": {"match_types": ["latex", "expr"], "precision": 4},
        }
    )
    return out


def main() -> None:
    checkout = Path(sys.argv[1])
    for row in rows(collect(checkout)):
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
