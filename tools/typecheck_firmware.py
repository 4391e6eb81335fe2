"""Type-check firmware/ against the MicroPython rp2 (Raspberry Pi Pico) stubs.

The stub packages (micropython-rp2-rpi-pico-stubs, micropython-stdlib-stubs)
install their .pyi files loose in site-packages, where mypy's PEP 561 search
does not look; micropython-stubs' own advice is a `typings` folder used as
both mypy_path and custom typeshed. This copies the installed stubs into
build/typings (git-ignored) and runs mypy with MicroPython's stdlib instead of
CPython's, so `import machine` resolves and CPython-only APIs are errors.
"""

import importlib.metadata
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPINGS = os.path.join(ROOT, "build", "typings")
BOARD_STUBS = "micropython-rp2-rpi_pico-stubs"
STDLIB_STUBS = "micropython-stdlib-stubs"


def _copy_dist(name, dest):
    dist = importlib.metadata.distribution(name)
    n = 0
    for f in dist.files or ():
        if f.suffix != ".pyi" and f.name != "VERSIONS":
            continue
        src = f.locate()
        out = os.path.join(dest, str(f))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        shutil.copyfile(src, out)
        n += 1
    if not n:
        sys.exit("typecheck: package %s has no stub files" % name)
    return n


def main():
    shutil.rmtree(TYPINGS, ignore_errors=True)
    boards = _copy_dist(BOARD_STUBS, os.path.join(TYPINGS, "board"))
    stdlib = _copy_dist(STDLIB_STUBS, os.path.join(TYPINGS, "typeshed"))
    firmware = os.path.join(ROOT, "firmware")
    files = sorted(
        os.path.join(d, f) for d, _, fs in os.walk(firmware) for f in fs if f.endswith(".py")
    )
    # _mpy_shed (helpers the stubs import) ships beside stdlib/ in the stdlib package.
    path = [os.path.join(TYPINGS, "board"), os.path.join(TYPINGS, "typeshed"), firmware]
    env = dict(os.environ, MYPYPATH=os.pathsep.join(path))
    # The stubs have a few errors of their own (e.g. machine.SDCard defined
    # twice): not ours to report. Errors in *our* uses of them still are.
    stub_modules = sorted(n.split(".")[0] for n in os.listdir(os.path.join(TYPINGS, "board")))
    ini = os.path.join(TYPINGS, "mypy.ini")
    with open(ini, "w") as f:
        f.write("[mypy]\n")
        for m in ["_mpy_shed"] + stub_modules:
            f.write("[mypy-%s,%s.*]\nignore_errors = True\n" % (m, m))
    cmd = [
        sys.executable, "-m", "mypy", "--config-file", ini,
        "--custom-typeshed-dir", os.path.join(TYPINGS, "typeshed"),
        "--no-site-packages", "--check-untyped-defs", "--explicit-package-bases",
        "--cache-dir", os.path.join(ROOT, "build", "mypy-cache"),
        *files,
    ]
    print("typecheck: %d firmware files against %d rp2 + %d MicroPython stdlib stubs" % (len(files), boards, stdlib))
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
