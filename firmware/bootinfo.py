# What this boot runs, as bootslot.select() decided it (docs/UPDATES.md):
# kept small because it stays on the heap while the board runs.

ROOT_SLOT = ""  # the factory image at the flash root
SLOTS = "slots"

slot = ROOT_SLOT  # the running slot
boot_state = "confirmed"  # confirmed / trial / reverted
pointer = None  # type: dict | None  # the boot pointer as written at this boot (dict), None: there is none
info = None  # type: dict | None  # the running slot's manifest less its file list (dict), None for the root image
