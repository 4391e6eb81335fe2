"""The docs work when followed.

Every shell block (```sh) in README.md and docs/*.md is run, in order, in a
copy of this checkout, as a user with the venv activated would type it
(`.venv/bin` first on PATH; PYTHONPATH is the copy, so `.venv/bin/ground`
runs this checkout's code). README comes first, so later docs can use what
it made (`runs/bench`). A block that cannot run here says so on the line
before it, with the reason:

    <!-- no-test: boards: serves emulated Picos until Ctrl-C -->

Also: no doc needs ../shared (a clone does not have it), every repository
path a doc names exists, and the scenarios in docs/SCENARIOS.md load.
"""

import glob
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
SHELL = ("sh", "bash", "shell")
NO_TEST = re.compile(r"<!--\s*no-test:\s*(\S.*?)\s*-->")
BLOCK_TIMEOUT_S = 600  # against a hang only; no block takes near it
PROGRAMS = ("tshark",)  # blocks using these skip when they are not installed


def _blocks():
    """(doc, line, language, text, no-test reason or None) for every fenced block."""
    out = []
    for doc in DOCS:
        text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
        for m in re.finditer(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", text, re.S | re.M):
            line = text.count("\n", 0, m.start()) + 1
            before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            skip = NO_TEST.search(before)
            out.append((doc, line, m.group(1), m.group(2), skip.group(1) if skip else None))
    return out


BLOCKS = _blocks()
SHELL_BLOCKS = [b for b in BLOCKS if b[2] in SHELL]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A copy of the checkout (no .git, runs, caches), with the same .venv."""
    dst = str(tmp_path_factory.mktemp("docs") / "fleetloop")
    shutil.copytree(ROOT, dst, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "__pycache__", ".pytest_cache", ".mypy_cache", ".hypothesis", "*.pcapng",
        "*.egg-info", "out", "build"))
    emulated = os.path.join(dst, "boards", "emulated")
    if os.path.isdir(emulated):
        shutil.rmtree(emulated)
    os.symlink(os.path.realpath(os.path.join(ROOT, ".venv")), os.path.join(dst, ".venv"))
    home = str(tmp_path_factory.mktemp("home"))  # no personal Wireshark profile or plugins in the way
    env = dict(os.environ, PATH=os.path.join(dst, ".venv", "bin") + os.pathsep + os.environ.get("PATH", ""),
               PYTHONPATH=dst, HOME=home, XDG_CONFIG_HOME=home)
    env.pop("VIRTUAL_ENV", None)
    return dst, env


def _run(sandbox, script, where):
    dst, env = sandbox
    p = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=dst, env=env, capture_output=True,
                       text=True, timeout=BLOCK_TIMEOUT_S)
    assert p.returncode == 0, "%s: exit %d\n--- stdout (end)\n%s\n--- stderr (end)\n%s" % (
        where, p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    return p


def test_docs_have_shell_blocks_and_every_skip_says_why():
    assert len(SHELL_BLOCKS) >= 8
    run = [b for b in SHELL_BLOCKS if b[4] is None]
    assert len(run) >= 5, "most command blocks must run here"
    for doc, line, lang, text, reason in BLOCKS:
        if reason is not None:
            assert lang in SHELL, "%s:%d: no-test marks a shell block only" % (doc, line)
            assert len(reason) > 8, "%s:%d: no-test needs a reason" % (doc, line)


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=["%s:%d" % (b[0], b[1]) for b in SHELL_BLOCKS])
def test_shell_block_runs(block, sandbox):
    doc, line, _, text, reason = block
    if reason is not None:
        pytest.skip("%s:%d: %s" % (doc, line, reason))
    for prog in PROGRAMS:
        if re.search(r"(^|\s)%s\s" % prog, text) and shutil.which(prog) is None:
            pytest.skip("%s:%d: needs %s, not installed" % (doc, line, prog))
    if "runs/bench/" in text and doc != "README.md" and not os.path.exists(os.path.join(sandbox[0], "runs", "bench")):
        _run(sandbox, ".venv/bin/ground run scenarios/bench.yaml --out runs/bench --quiet", "README's first command")
    _run(sandbox, text, "%s:%d" % (doc, line))


def test_no_doc_needs_the_shared_folder():
    for doc in DOCS:
        text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
        assert "../shared" not in text, "%s names ../shared, which a clone does not have" % doc


# Paths the docs name only as illustrations of an error or of the user's own file.
ILLUSTRATIONS = {
    "boards/rig-test.yaml",  # BOARDS.md: what errors in a user's rig file look like
    "scenarios/x.yaml",  # SCENARIOS.md: what an error message looks like
}
PATH_RE = re.compile(r"(?<![\w./-])((?:boards|scenarios|docs|tools|firmware|ground|hil|tests|bench)/[\w./-]*\w\.(?:yaml|yml|md|py|lua|ionrc|up))\b")


def test_every_repository_path_a_doc_names_exists():
    missing = []
    for doc in DOCS:
        text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
        for m in PATH_RE.finditer(text):
            path = m.group(1)
            if path in ILLUSTRATIONS or "<" in path or re.search(r"\b[A-Z]{2,}\b", path):  # KIND, NAME: placeholders
                continue
            if not os.path.exists(os.path.join(ROOT, path)) and not os.path.exists(os.path.join(ROOT, "docs", path)):
                missing.append("%s:%d: %s" % (doc, text.count("\n", 0, m.start()) + 1, path))
    assert not missing, "\n".join(missing)


def test_scenarios_in_scenarios_md_load():
    from ground import scenario

    text = open(os.path.join(ROOT, "docs", "SCENARIOS.md"), encoding="utf-8").read()
    examples = [b for b in BLOCKS if b[0] == "docs/SCENARIOS.md" and b[2] == "yaml" and b[3].startswith("name:")]
    assert examples, text[:200]
    for doc, line, _, body, _ in examples:
        sc = scenario.load_text(body, os.path.join(ROOT, "scenarios", "doc-example.yaml"))
        assert sc.nodes and sc.gates, "%s:%d" % (doc, line)
