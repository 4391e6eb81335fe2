# The board loop: wait, move bytes, call the core, persist, send.
#
#     shell = Shell(node, link, clock, store)   # store: runtime.store.Store
#     shell.run()                               # until Ctrl-C or end of input
#
# One iteration (step):
#   1. sleep in link.wait() until a byte arrives or something is due: the
#      core's next_deadline_ms() (mission ms, turned into wall ms by the
#      clock), the LED's next blink and the watchdog's feed interval, whichever
#      is first. No busy loop: with nothing due and nothing arriving it sleeps.
#   2. bytes -> FrameSplitter -> node.receive(line, now) per line; a CONFIG
#      frame's new time scale goes to the clock at once.
#   3. node.poll(now); then node.take_persist() is written to flash and the
#      write has returned BEFORE any of poll()'s frames leaves, so a vote or a
#      term is never announced and then forgotten by a power cut.
#   4. write the frames; feed the watchdog; set the LED.
# With a journal (board.json "journal": true) every receive() and poll() is
# also recorded with the mission ms it was given, and the journal frame goes
# out before the frames of that poll (runtime/journal.py).
# stdout is the data channel on USB: nothing but frames goes out on it while
# the loop runs. Notes (boot facts, recovered state) are kept in `notes` for
# the REPL and sent as LOG frames by a core that offers node.log(text).
#
# Allocation: the link reads into a preallocated buffer, waiting uses
# ipoll(). What remains per burst is one memoryview slice, the splitter's
# line list and bytes, and the core's own frames.

import gc

from node.wire import ERR_MEMORY, ERR_TOO_LONG, FrameSplitter

from runtime.clock import MAX_WAIT_MS

_MAX_NOTES = 8
HEAP_EVERY_MS = 1000  # wall ms between heap samples (a gc.collect() each)
STARVED_MS = 5000  # wall ms out of heap in every iteration before the loop gives up (Shell._starved)


class Shell:
    def __init__(self, node, link, clock, store, led=None, watchdog=None, seen_store=None):
        self.node = node
        self.link = link
        self.clock = clock
        self.store = store  # .write(bytes): atomic, returns once committed
        self.seen_store = seen_store  # the core's replay ceilings (Node.take_seen), same kind
        self.led = led
        self.watchdog = watchdog
        self.splitter = FrameSplitter()
        self.notes = []
        self.iterations = 0
        self.persists = 0
        self.seen_writes = 0
        self.out_of_memory = 0  # MemoryErrors survived (lines dropped: the core counts `memory`)
        self._oom_since = None  # wall ms of the first of the MemoryErrors in a row, or None
        self.heap_min = None  # lowest free heap seen since boot (bytes), MicroPython only
        self._heap_at = None  # wall ms of the last heap sample
        self._overflows = 0  # splitter overflows already handed to the core
        self._out = []  # frames of the last poll not yet written
        self._seen = None  # ceilings not yet stored
        self._blob = None  # term/vote not yet stored
        self.stopped = None  # why run() returned
        self.board = None  # the BoardConfig it was built from (main.build)
        self.journal = None  # runtime.journal.Journal when board.json asks for one
        self.defects = None  # a test build's declared defects (runtime/defects.py), or None

    def note(self, text):
        """Record a fact for the REPL, and send it as a LOG frame if the core can."""
        self.notes.append(text)
        if len(self.notes) > _MAX_NOTES:
            self.notes.pop(0)
        log = getattr(self.node, "log", None)
        if log is not None:
            if self.journal is not None:
                self.journal.log(text)
            log(text)

    def _timeout_ms(self):
        node = self.node
        clock = self.clock
        wait = clock.wall_wait_ms(node.next_deadline_ms() - clock.now_ms())
        if wait is None or wait > MAX_WAIT_MS:
            wait = MAX_WAIT_MS
        if self.led is not None:
            blink = self.led.show(node.wire_role(), clock.wall_ms)
            if blink is not None and blink < wait:
                wait = blink
        if self.watchdog is not None:
            feed = self.watchdog.feed_every_ms()
            if feed is not None and feed < wait:
                wait = feed
        return wait

    def step(self):
        """One iteration; False once the link has closed (unix port only).

        Never stops on what arrives: a MemoryError while a line is handled
        drops that line (counted as `memory`) and the loop goes on after a
        collection. Anything still to persist or send stays pending and goes
        first at the next iteration, in the same order (ceilings, term/vote,
        then frames), so running out of heap never sends an unpersisted frame.
        """
        try:
            ok = self._step()
        except MemoryError:
            self.out_of_memory += 1
            gc.collect()
            if self._starved():
                raise
            return True
        self._oom_since = None
        return ok

    def _starved(self):
        """True once no iteration has finished for STARVED_MS of wall time,
        every one since out of heap: the loop would spin without a frame (a
        coordinator whose round outgrew the heap did, silent at 100 % CPU).
        Raised, main.py records and prints it as a crash. Never with a
        running watchdog: those iterations do not feed it, so it resets the
        board (reset_cause WDT at the next boot)."""
        wall = self.clock.tick()
        if self._oom_since is None:
            self._oom_since = wall
        w = self.watchdog
        return wall - self._oom_since >= STARVED_MS and not (w is not None and w.running)

    def _receive(self, lines, now):
        node = self.node
        journal = self.journal
        for line in lines:
            try:
                if journal is not None:
                    journal.rx(now, line)
                node.receive(line, now)
            except MemoryError:
                gc.collect()
                self.out_of_memory += 1
                node.count_reject(ERR_MEMORY)

    def _step(self):
        node = self.node
        clock = self.clock
        journal = self.journal
        if self.link.wait(self._timeout_ms()):
            n = self.link.read()
            if n < 0:
                self.stopped = "end of input"
                return False
            if n:
                lines = self.splitter.feed(self.link.view(n))
                cut = self.splitter.overflows - self._overflows
                if cut:  # lines over MAX_LINE never reach the core: counted there by reason
                    self._overflows = self.splitter.overflows
                    node.count_reject(ERR_TOO_LONG, cut)
                if lines:
                    self._receive(lines, clock.now_ms())
                    if node.time_scale_milli != clock.scale_milli:
                        clock.set_scale(node.time_scale_milli)
        self._sample_heap()
        now = clock.now_ms()
        if not self._out:
            self._out = node.poll(now)
            if journal is not None:
                journal.poll(now, len(self._out))
        seen = node.take_seen()
        if seen is not None:
            self._seen = seen  # views of the live tables and their crc; a newer take() replaces it
        blob = node.take_persist()
        if blob is not None:
            self._blob = blob
        if self._seen is not None:
            self.seen_store.write(self._seen)  # raises rather than send unpersisted frames
            self._seen = None
            self.seen_writes += 1
        if self._blob is not None:
            self.store.write(self._blob)
            self._blob = None
            self.persists += 1
        reset = False
        if node.update is not None and node.update._actions:
            from runtime.updboot import do_actions  # only once an update is under way

            reset = do_actions(self, node.update)  # True: install or rollback, reset once the frames are out
        if self.defects is not None:
            self.defects.check(self, now)
        out = self._out
        if journal is not None:
            for line in journal.take(len(out) > 0):
                self.link.write(line)  # before the frames it explains
        while out:
            self.link.write(out[0][1])
            out.pop(0)
        if self.watchdog is not None:
            self.watchdog.feed()
        self.iterations += 1
        if reset:
            from runtime.updboot import soft_reset

            soft_reset()  # after the frames that say why have gone
        return True

    def _sample_heap(self):
        """Free heap after a collection, and its low-water mark since boot,
        handed to the core for TELEMETRY: at most once per HEAP_EVERY_MS of
        wall time (a collection of 192K takes a few ms on a Pico)."""
        mem_free = getattr(gc, "mem_free", None)
        if mem_free is None:  # CPython: no heap figures
            return
        wall = self.clock.wall_ms
        if self._heap_at is not None and wall - self._heap_at < HEAP_EVERY_MS:
            return
        self._heap_at = wall
        gc.collect()
        free = mem_free()
        if self.heap_min is None or free < self.heap_min:
            self.heap_min = free
        self.node.set_heap(free, self.heap_min)

    def run(self):
        self.link.write(b"\x00")  # ends any junk before our first frame (boot banner)
        while self.step():
            pass
