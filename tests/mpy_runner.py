# Runs the core's test files under the MicroPython unix port (pytest does not
# run there). Usage, from the repo root:
#     micropython -X heapsize=192K tests/mpy_runner.py tests/core [-k substring]
#     micropython -X heapsize=192K tests/mpy_runner.py tests/core/test_wire.py
#     micropython -X heapsize=192K tests/mpy_runner.py --firmware build/mpy tests/core/test_wire.py
# --firmware DIR imports the core from DIR (its .mpy image, as `make test-mpy`
# builds it with mpy-cross: what a board runs, not compiled on the heap at
# import); without it, from firmware/ sources.
# `make test-mpy` runs one file per process, so each file gets a fresh 192K
# heap as a board would, and one file's garbage cannot fragment the next's;
# it starts the runner as `MICROPYPATH=tests:.frozen micropython -m mpy_runner`
# so no machine's paths are on the heap and a run allocates the same anywhere.
# Every test_*.py file in the folder is imported and each `test_*` function
# with no parameters is called; a file whose first line is
# "# cpython-only" is skipped. Prints one line per failure and a closing
# "N passed, N failed" line; exit status 1 on any failure.

import gc
import os
import sys


def main(argv):
    firmware = "firmware"
    if len(argv) > 2 and argv[1] == "--firmware":
        firmware = argv[2]
        argv = argv[:1] + argv[3:]
    target = argv[1] if len(argv) > 1 else "tests/core"
    pattern = argv[3] if len(argv) > 3 and argv[2] == "-k" else None
    if target.endswith(".py"):
        cut = target.rfind("/")
        folder, names = target[:cut], [target[cut + 1 :]]
    else:
        folder, names = target, sorted(os.listdir(target))
    sys.path.insert(0, folder)
    sys.path.insert(0, firmware)
    passed = failed = skipped = 0
    low_water = None
    for fname in names:
        if not (fname.startswith("test_") and fname.endswith(".py")):
            continue
        with open(folder + "/" + fname) as f:
            if f.readline().strip() == "# cpython-only":
                skipped += 1
                continue
        modname = fname[:-3]
        mod = __import__(modname)
        for name in sorted(dir(mod)):
            if not name.startswith("test_"):
                continue
            if pattern is not None and pattern not in modname + "::" + name:
                continue
            fn = getattr(mod, name)
            gc.collect()
            try:
                fn()
                passed += 1
                print("PASS", modname + "::" + name)
            except Exception as e:
                failed += 1
                print("FAIL", modname + "::" + name)
                sys.print_exception(e)
            gc.collect()
            free = gc.mem_free()
            if low_water is None or free < low_water:
                low_water = free
        del sys.modules[modname]
    print("heap: %d bytes free at the lowest point between tests" % (low_water or 0))
    if skipped:
        print("%d cpython-only files skipped" % skipped)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not (passed or skipped) else 0


sys.exit(main(sys.argv))
