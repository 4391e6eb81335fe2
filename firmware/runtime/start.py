# The board's boot, for main.py: board.json read and checked, the node's
# identity, saved state and replay ceilings restored, the core built, the
# link, clock, LED and watchdog made into a runtime.shell.Shell (not yet
# running). See firmware/main.py for what the board does with it.
#
# Heap (docs/HEAP.md): this module and the ones that only read board.json
# (runtime.boardcfg, runtime.identity, runtime.version) are boot-only. They
# are dropped from sys.modules (forget) before the core's modules load and,
# for this one, once the Shell is built, so a board's 192K holds them only
# while they run. What is kept of them holds no function: a BoardConfig and
# BootError are classes without methods.

import gc
import sys

BOARD_FILE = "board.json"
VERSION_FILE = "version.json"
STATE_DIR = "state"
CRASH_FILE = "crash.txt"
CRASH_OLD_FILE = "crash.old.txt"  # the crash already reported at a boot
BOOT_ONLY = ("runtime.boardcfg", "runtime.identity", "runtime.version")


class BootError(Exception):
    """Cannot start: one line for the person at the console."""


def build(board_file=BOARD_FILE, version_file=None, state_dir=STATE_DIR, link=None, clock=None):
    """The Shell for this board, not yet running; BootError if it cannot be.

    Touches hardware (LED pin, UART) but does not start the watchdog.
    `link` and `clock` are for tests; by default they come from board.json.
    """
    import bootinfo
    from runtime import boardcfg, identity
    from runtime.store import Store, StoreError

    slot = bootinfo.slot  # the running image (bootslot.py): a slot's, or the root's
    if version_file is None:
        version_file = "slots/%s/%s" % (slot, VERSION_FILE) if slot else VERSION_FILE
    try:
        board = boardcfg.load(board_file, version_file)
    except boardcfg.ConfigError as e:
        raise BootError(str(e))
    pending = _record_exists(state_dir + "/update")  # an update under way (runtime/updboot.py)
    if pending:
        from runtime import updboot

        updboot.check_early(state_dir, board.auth_key)  # on a young heap
        gc.collect()

    notes = []
    uid = identity.unique_id()
    id_store = Store(state_dir, "identity")
    try:
        node_id, how = identity.choose_node_id(board.node_id, id_store, uid)
    except StoreError as e:
        raise BootError("%s (cannot store identity)" % e)
    for p in id_store.problems:
        notes.append("store: " + p)
    if node_id not in board.members:
        raise BootError(
            '%s: key "members": node %d (from %s) is not listed' % (board_file, node_id, how)
        )
    try:
        cfg = boardcfg.core_config(board)
    except ValueError as e:
        raise BootError("%s: %s" % (board_file, e))
    board.market = None  # its arguments live on in cfg.market (a region's roster as an array): free the JSON list
    seed = board.seed if board.seed is not None else identity.derive_seed(uid, node_id)
    # board.json is read: its reader's code goes before the core's loads.
    del boardcfg, identity
    for name in BOOT_ONLY:
        forget(name)
    gc.collect()
    from node import node as node_mod
    from runtime.clock import MissionClock
    from runtime.led import StatusLed, open_pin
    from runtime.shell import Shell
    from runtime.watchdog import Watchdog

    if cfg.market is not None:  # the market tier's code too, before any table (node/region.py preload)
        from node import region

        region.preload(cfg, node_id)
        del region
    if board.journal:
        from runtime import journal  # noqa: F401
    gc.collect()
    state = Store(state_dir, "node%d" % node_id)
    saved = state.read()
    for p in state.problems:
        notes.append("store: " + p)
    if state.recovered:
        notes.append("store: " + state.recovered)
    saved_parts = None  # [(term, vote, counter)]: the node's, then its regional seat's
    kept = None  # then the market section (node/durable.py): an elector's ledger, a holder's leases
    if saved is not None:
        try:
            saved_parts = node_mod.restore_all(saved)
        except ValueError as e:
            notes.append("%s: %s; starting from term 0" % (state.path, e))
            saved = None
        else:
            kept = saved[14 * len(saved_parts):] or None  # (restore_all read 14 bytes a part)
    # The replay ceilings: every auth counter accepted before this boot is
    # refused after it (docs/PROTOCOL.md "Authentication and replay"). Read
    # before the node's tables are allocated: a large region's file is a few
    # KB, easier to find in one piece on a young heap.
    seen_store = None
    seen = None
    if cfg.auth_key:  # only signed counters have ceilings: without a key, no store
        seen_store = Store(state_dir, "seen%d" % node_id)
        seen = seen_store.read()
        for p in seen_store.problems + ([seen_store.recovered] if seen_store.recovered else []):
            notes.append("store: " + p)
    node = node_mod.Node(node_id, cfg, seed, saved)
    node.time_scale_milli = board.time_scale_milli
    if seen is not None and seen_store is not None:
        try:
            node.load_seen(seen)
        except ValueError as e:
            notes.append("%s: %s; replay floors lost" % (seen_store.path, e))
        seen = None

    if link is None:
        if board.transport == "uart":
            from runtime.link_uart import UartLink

            u = board.uart
            link = UartLink(u["id"], u["tx"], u["rx"], u["baud"])
        elif board.transport == "udp":
            from runtime.link_udp import open_link

            try:
                link = open_link(board, notes)
            except OSError as e:  # no radio, no Wi-Fi, no route: one line naming the key
                raise BootError(str(e))
        else:
            from runtime.link_usb import UsbLink

            link = UsbLink()
    if clock is None:
        clock = MissionClock(board.time_scale_milli)
    led = StatusLed(open_pin(board.led_pin))
    sh = Shell(node, link, clock, state, led, Watchdog(board.watchdog_ms), seen_store)
    sh.board = board
    if board.journal:
        from runtime.journal import Journal  # (loaded with the core's code, above)

        sh.journal = Journal(node_id)
        sh.journal.boot(saved_parts, seed, kept)
    sh.note("fleetloop %s node %d (%s) cluster %d term %d" % (board.fw_label, node_id, how, board.cluster, node.term))
    for n in notes:
        sh.note(n)
    if slot or bootinfo.boot_state != "confirmed" or pending:
        from runtime import updboot  # an update to report or resume, a slot's defects

        updboot.start(sh, board, node, state_dir)
    cause = _reset_cause()
    if cause:
        sh.note("reset cause: " + cause)
    crash = _last_crash()
    if crash:
        sh.note("crashed before this boot: " + crash)
    return sh


def _record_exists(path):
    """A runtime.store value at `path` (or its .tmp/.bak after a cut)."""
    import os

    for p in ("", ".tmp", ".bak"):
        try:
            return os.stat(path + p) is not None
        except OSError:
            pass
    return False


def _last_crash():
    """The last lines of a traceback the previous boot left in crash.txt (then
    renamed crash.old.txt: reported once), or None."""
    import os

    try:
        size = os.stat(CRASH_FILE)[6]
        with open(CRASH_FILE) as f:
            f.seek(max(0, size - 400))  # the last lines: a 4K read may not fit a fragmented heap
            text = f.read(400).strip()
        os.rename(CRASH_FILE, CRASH_OLD_FILE)
    except (OSError, MemoryError, UnicodeError):
        return None
    return " | ".join(text.split("\n")[-2:])[-200:]


def _reset_cause():
    try:
        import machine

        c = machine.reset_cause()
        if c == machine.WDT_RESET:
            return "watchdog"
        return None
    except (ImportError, AttributeError):
        return None


def forget(name):
    """Drop module `name` ("pkg.mod") from sys.modules and from its package:
    once nothing else refers to its functions, a collection frees its code."""
    sys.modules.pop(name, None)
    parts = name.split(".")
    pkg = sys.modules.get(parts[0]) if len(parts) == 2 else None
    if pkg is not None and parts[1] in dir(pkg):
        delattr(pkg, parts[1])
