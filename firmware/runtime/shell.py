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

from node.wire import FrameSplitter

from runtime.clock import MAX_WAIT_MS

_MAX_NOTES = 8


class Shell:
    def __init__(self, node, link, clock, store, led=None, watchdog=None):
        self.node = node
        self.link = link
        self.clock = clock
        self.store = store  # .write(bytes): atomic, returns once committed
        self.led = led
        self.watchdog = watchdog
        self.splitter = FrameSplitter()
        self.notes = []
        self.iterations = 0
        self.persists = 0
        self.stopped = None  # why run() returned
        self.board = None  # the BoardConfig it was built from (main.build)
        self.journal = None  # runtime.journal.Journal when board.json asks for one

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
        """One iteration; False once the link has closed (unix port only)."""
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
                if lines:
                    now = clock.now_ms()
                    for line in lines:
                        if journal is not None:
                            journal.rx(now, line)
                        node.receive(line, now)
                    if node.time_scale_milli != clock.scale_milli:
                        clock.set_scale(node.time_scale_milli)
        now = clock.now_ms()
        out = node.poll(now)
        blob = node.take_persist()
        if blob is not None:
            self.store.write(blob)  # raises rather than send unpersisted frames
            self.persists += 1
        if journal is not None:
            journal.poll(now, len(out))
            for line in journal.take(len(out) > 0):
                self.link.write(line)  # before the frames it explains
        for _dst, line in out:
            self.link.write(line)
        if self.watchdog is not None:
            self.watchdog.feed()
        self.iterations += 1
        return True

    def run(self):
        self.link.write(b"\x00")  # ends any junk before our first frame (boot banner)
        while self.step():
            pass
