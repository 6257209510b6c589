"""docs/robustness.md cannot drift: its table is ``render()`` of the cases, every test it names
exists, and every case is run by a test of this folder."""
from __future__ import annotations

import ast
import re

import robustness_cases as rc

HERE = rc.REPO / "tests" / "robustness"


def test_docs_table_is_the_rendered_cases():
    doc = rc.DOC.read_text(encoding="utf-8")
    assert doc.count(rc.BEGIN) == 1 and doc.count(rc.END) == 1
    assert rc.replace_table(doc) == doc, (
        "docs/robustness.md differs from tests/robustness/robustness_cases.py: run "
        "'.venv/bin/python tests/robustness/robustness_cases.py --write'")


def test_every_named_test_exists():
    functions: dict[str, set[str]] = {}
    for case in rc.CASES_LIST:
        assert case.tests, case.key
        for node_id in case.tests:
            path, name = node_id.split("::")
            if path not in functions:
                tree = ast.parse((rc.REPO / path).read_text(encoding="utf-8"))
                functions[path] = {n.name for n in ast.walk(tree)
                                   if isinstance(n, ast.FunctionDef)}
            assert name in functions[path], f"{case.key}: {node_id} does not exist"


def test_every_case_is_run_by_a_test_here():
    sources = "\n".join(p.read_text(encoding="utf-8") for p in sorted(HERE.glob("test_*.py"))
                        if p.name != "test_robustness_table.py")
    used = set(re.findall(r"""["']((?:video|gaps|array|dataset|ckpt|write)-[a-z0-9-]+)["']""",
                          sources))
    # rows about training runs are proven by tests/engine/test_train.py (named in the table)
    own = {c.key for c in rc.CASES_LIST if not c.key.startswith("run-")}
    assert own - used == set(), f"cases no test here runs: {sorted(own - used)}"
    assert used - set(rc.CASES) == set(), f"unknown case keys: {sorted(used - set(rc.CASES))}"
    for case in rc.CASES_LIST:
        if case.key.startswith("run-"):
            assert all(t.startswith("tests/engine/") for t in case.tests), case.key


def test_error_rows_are_one_sentence():
    for case in rc.CASES_LIST:
        for text in (case.cli if case.code == 2 else "", case.blender):
            assert "\n" not in text and "Traceback" not in text, case.key
