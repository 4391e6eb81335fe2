"""Exit codes, and the one wrapper that turns a verb's outcome into one, for
both command lines (`ground`, `hil`).

    0    ok: the run finished and every gate held; the replay is identical; ...
    1    a failed gate, invariant or comparison (the tool worked: the fleet did not)
    2    bad input: a scenario, rig or trace the tool refuses (the message
         names file:line, board, node or link), a file it cannot read, a bad
         argument (argparse uses 2 too)
    3    an internal error: a bug in fleetloop, not in the input (the
         traceback is printed, and says so)
    130  interrupted (Ctrl-C / SIGINT)

`main_wrapper(prog, fn, args)` runs a verb and maps what it raises. Bad input
is the ValueError family (ConfigError, TraceError, PcapError, ReplayError,
... all derive from it: the project's convention for "your input is wrong")
and OSError naming a file; anything else is a bug, and so is a ValueError
the interpreter raised in the project's own code rather than a `raise`
statement (a tuple unpacked with the wrong length, an int() of its own
data: `_a_bug`). `-v` adds the traceback to a bad-input error too.
"""

import linecache
import os
import sys
import sysconfig
import traceback

OK = 0
FAILED = 1
BAD_INPUT = 2
INTERNAL = 3
INTERRUPTED = 130

EPILOG = """exit status:
  0    ok (every gate and invariant held; a replay identical)
  1    a gate, invariant or replay comparison failed; a board failed
       (to flash, to boot) or is missing
  2    bad input: the message names the file:line, board, node or link
       (also: bad arguments, a file that cannot be read, a torn trace
       without --allow-torn, an --out folder that exists without --force)
  3    internal error: a bug in fleetloop; the traceback is printed
  130  interrupted (Ctrl-C)"""


class InputError(ValueError):
    """Bad input found by the command line itself (a file it cannot read, an
    --out folder that exists): the message is the whole story."""


def readable(path):
    """Raise InputError("cannot read: PATH (reason)") unless path is a
    readable file; return path."""
    try:
        with open(path, "rb"):
            pass
    except IsADirectoryError:
        raise InputError("cannot read: %s (a folder, not a file)" % path) from None
    except OSError as e:
        raise InputError("cannot read: %s (%s)" % (path, e.strerror or e)) from None
    return path


def fresh_folder(path, force, what="--out"):
    """Refuse an existing, non-empty folder unless force (the caller then
    overwrites the files it writes there and nothing else)."""
    if os.path.isdir(path) and os.listdir(path) and not force:
        raise InputError("%s %s: the folder exists and is not empty (a run's results?); "
                         "give a new folder, or --force to write into it" % (what, path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError("%s %s: exists and is not a folder" % (what, path))
    return path


def main_wrapper(prog, fn, args, verbose=False):
    """fn(args) -> exit code, with every exception mapped to one (see the
    module comment). Messages go to stderr, one line each."""
    try:
        code = fn(args)
        sys.stdout.flush()
        return OK if code is None else code
    except KeyboardInterrupt:
        print("%s: interrupted" % prog, file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (`| head`): nothing left to say, nowhere to say it
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 141  # what a shell reports for a process killed by SIGPIPE
    except (ValueError, OSError) as e:
        if isinstance(e, OSError) and not getattr(e, "filename", None) or isinstance(e, ValueError) and _a_bug(e):
            return _internal(prog)
        if verbose:
            traceback.print_exc()
        print("%s: error: %s" % (prog, _text(e)), file=sys.stderr)
        return BAD_INPUT
    except Exception:
        return _internal(prog)


# the project's packages (in a checkout or installed), and where Python's own modules and other installed
# packages live: code in neither is a script's, and counts as the project's too
_OURS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), d) + os.sep
              for d in ("ground", "hil", "firmware"))
_LIBRARIES = tuple(sorted({os.path.abspath(sysconfig.get_paths(vars=v)[k]) + os.sep
                           for v in (None, {"base": sys.base_prefix, "platbase": sys.base_prefix})
                           for k in ("stdlib", "platstdlib", "purelib", "platlib")}))


def _a_bug(e):
    """True for a ValueError the interpreter raised in the project's own
    code (no `raise` statement at the innermost frame: an unpacking, a
    conversion of the run's own data), not one it raised on purpose."""
    tb = e.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    path = tb.tb_frame.f_code.co_filename
    if path.startswith("<"):
        return False  # frozen: the standard library's
    path = os.path.abspath(path)
    if path.startswith(_LIBRARIES) and not path.startswith(_OURS):
        return False  # the standard library's and other packages' ValueErrors are theirs to word
    return not linecache.getline(path, tb.tb_lineno).lstrip().startswith("raise")


def _text(e):
    if isinstance(e, OSError):
        return "%s: %s" % (e.filename, e.strerror or e)
    return str(e)


def _internal(prog):
    traceback.print_exc()
    print("%s: internal error: this is a bug in fleetloop, not in your input; please report it with the "
          "traceback above (exit %d)" % (prog, INTERNAL), file=sys.stderr)
    return INTERNAL


def version(prog):
    """`PROG 0.1.0 (fleetloop, Python 3.x)`: ground.__version__, the one version."""
    from ground import __version__

    return "%s %s (fleetloop, Python %d.%d)" % (prog, __version__, sys.version_info[0], sys.version_info[1])
