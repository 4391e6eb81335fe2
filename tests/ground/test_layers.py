"""The layering (docs/ARCHITECTURE.md): the engine (ground/) imports nothing
from the board layer (hil/); hil/ builds on the engine. Every module of both
says its one job in an opening docstring and stays under about 600 lines."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_LINES = 620  # "about 600"


def _modules(package):
    folder = os.path.join(ROOT, package)
    return sorted(os.path.join(package, n) for n in os.listdir(folder) if n.endswith(".py"))


def _imported(tree):
    """(line, module name) of every import in the tree, at any depth (lazy imports too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for a in node.names:  # `from hil import x` and `from . import` do not hide a name
                yield node.lineno, node.module + "." + a.name


def _opening_comment(text):
    """The `#` comment block a module opens with (some say their job that way)."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def _parse(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        text = f.read()
    return text, ast.parse(text, rel)


def hil_imports(rel):
    _, tree = _parse(rel)
    return ["%s:%d: imports %s" % (rel, line, name) for line, name in _imported(tree)
            if name == "hil" or name.startswith("hil.")]


@pytest.mark.parametrize("rel", _modules("ground"))
def test_no_engine_module_imports_the_board_layer(rel):
    assert hil_imports(rel) == []


def test_the_check_sees_an_import_of_hil_at_any_depth(tmp_path, monkeypatch):
    # The check itself must be able to fail: a lazy import inside a function counts.
    (tmp_path / "ground").mkdir()
    (tmp_path / "ground" / "bad.py").write_text('"""x"""\n\ndef f():\n    from hil import rig\n    import hil.flash\n')
    monkeypatch.setattr(__import__(__name__), "ROOT", str(tmp_path))
    assert hil_imports("ground/bad.py") == ["ground/bad.py:4: imports hil", "ground/bad.py:4: imports hil.rig",
                                           "ground/bad.py:5: imports hil.flash"]


@pytest.mark.parametrize("rel", _modules("ground") + _modules("hil"))
def test_every_module_says_its_job_and_stays_small(rel):
    text, tree = _parse(rel)
    if rel.endswith(("__init__.py", "__main__.py")) and len(text.splitlines()) < 10:
        return
    doc = ast.get_docstring(tree) or _opening_comment(text)
    assert doc and len(doc.split()) >= 5, "%s: no opening docstring saying its one job" % rel
    n = len(text.splitlines())
    assert n <= MAX_LINES, "%s: %d lines; split it (about 600 at most)" % (rel, n)
