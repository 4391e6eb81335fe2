"""One line describing the machine a benchmark ran on (printed by every bench)."""

import os
import platform


def describe():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores, %s, Python %s" % (cpu, os.cpu_count() or 0, platform.platform(), platform.python_version())
