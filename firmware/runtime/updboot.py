# The board's side of an update agent (docs/UPDATES.md), imported only when
# there is one, so a board that never updates never holds it on its heap:
#   start()       at boot, when there is an update to report or resume: the
#                 agent restored from its record and told what the boot
#                 pointer said; a test build's declared defects switched on;
#   do_actions()  the agent's actions, in order, before the poll's frames go
#                 out (runtime/shell.py calls it).

import gc as _gc

import bootinfo
from node import update as U
from runtime.store import Store

_STATES = {"trial": U.TRIAL, "reverted": U.REVERTED, "confirmed": U.CONFIRMED}


RECORD = "update"  # the agent's record in the state folder (one node per board)
_store = None  # the agent's record (runtime.store.Store), next to the shell's
_slots = None  # runtime.slots.Slots


def _parts(sh):
    global _store, _slots
    if _store is None:
        _store = Store(sh.store.folder, RECORD)
    if _slots is None:
        from runtime.slots import Slots

        wd = sh.watchdog
        _slots = Slots(sh.board.auth_key if sh.board is not None else None, wd.feed if wd is not None else None)
    return _store, _slots


def check_early(state_dir, key):
    """At boot, before the node takes the heap: finish an image check that a
    cut or a lack of heap interrupted (the record says VERIFYING)."""
    store = Store(state_dir, RECORD)
    record = store.read()
    if record is None:
        return
    a = U.Update(None, (0, 0))
    try:
        a.restore(record)
    except ValueError:
        return
    if a.state != U.VERIFYING:
        return
    from runtime.slots import Slots

    a.take_actions()
    a.verified(Slots(key).verify_and_unpack(a))
    store.write(a.record())


def start(sh, board, node, state_dir):
    store = _parts(sh)[0]
    record = store.read()  # check_early() has done an interrupted check
    from node.update import agent as _agent

    agent = _agent(node)
    agent.confirm_after_ms = board.confirm_after_ms
    if record is not None:
        try:
            agent.restore(record)
        except ValueError as e:
            sh.note("%s: %s" % (store.path, e))
    import bootslot  # boot.py dropped it from the heap; needed here once

    agent.boot(_STATES[bootinfo.boot_state], bootslot.previous() is not None)
    if bootinfo.boot_state != "confirmed":
        sh.note("boot: slot %r %s" % (bootinfo.slot, bootinfo.boot_state))
    m = bootinfo.info
    if m and m.get("defects"):
        from runtime.defects import Defects

        d = Defects.of(m, board.lineage)
        if d is not None:
            sh.defects = d
            sh.note("test build: defects %s" % ",".join(sorted(m["defects"])))


def do_actions(sh, agent):
    """Do the update agent's actions in order (node/update.py), all before
    the frames of this poll leave: an ACK never claims a chunk that is
    not on flash, nor a state that is not persisted."""
    reset = False
    acts = agent.take_actions()
    store, slots = _parts(sh)
    if sh.board is not None:
        agent.confirm_after_ms = sh.board.confirm_after_ms
    while acts:
        kind, arg = acts.pop(0)
        if kind == U.ACT_WRITE:
            slots.write(arg[0] * agent.chunk_size, arg[1])
        elif kind == U.ACT_PERSIST:
            store.write(arg)
        elif kind == U.ACT_BEGIN:
            slots.begin()
        elif kind == U.ACT_VERIFY:
            _gc.collect()
            try:
                reason = slots.verify_and_unpack(agent)
            except MemoryError:  # stays VERIFYING (persisted): check_early() does it at the next boot
                _gc.collect()
                sh.out_of_memory += 1
                sh.note("update: out of heap while checking the image; checking it at a fresh boot")
                reset = True
                acts = []
                break
            if reason:
                sh.note(slots.last_error)
            agent.verified(reason)
        elif kind == U.ACT_INSTALL:
            if slots.install():
                sh.note("update: installing %d.%d, trial boot" % agent.version)
                reset = True
            else:
                agent.verified(U.R_TRUNCATED)
        elif kind == U.ACT_CONFIRM:
            slots.confirm()
            sh.note("update: %d.%d confirmed" % agent.version)
        elif kind == U.ACT_ROLLBACK:
            if slots.rollback():
                sh.note("update: rolling back")
                reset = True
            else:
                agent._refuse(U.R_NO_PREVIOUS)
        acts += agent.take_actions()
    return reset


def soft_reset():
    """Run boot.py and main.py again (the boot pointer decides the image)."""
    try:
        import machine

        machine.soft_reset()
    except (ImportError, AttributeError):
        raise SystemExit
