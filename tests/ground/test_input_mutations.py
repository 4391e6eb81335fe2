"""Bad input, key by key: every value of a few library scenarios (and a
small fleet description) replaced in turn by a value of the wrong kind
(a negative, zero, a fraction, a huge number, a string, an empty list or
mapping, null, a bool, .nan, .inf...). Each copy must either load or be
refused with a ConfigError whose message starts with the file and the line:
never another exception, never a message without its place. This is how
the loader's gaps fixed on 2026-12-06 were found (a .nan duration hung the
fault draw; a string slot_ms was a TypeError; a scalar where a mapping
belongs named no line)."""

import copy
import math
import os
import re

import pytest
import yaml

from ground import scenario
from ground.yamlfile import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRARY = ("bench", "containment-sever", "market-clusters", "replication", "rollout", "lora", "version-skew-market")
BAD = (-1, 0, 0.5, 1e12, "x", [], {}, None, True, [1, 2], {"a": 1}, 70000, math.nan, math.inf)


def _paths(d, pre=()):
    """Every key path of a loaded YAML document, list items included."""
    if isinstance(d, dict):
        for k, v in d.items():
            yield pre + (k,)
            yield from _paths(v, pre + (k,))
    elif isinstance(d, list):
        for i in range(len(d)):
            yield pre + (i,)


def _small_fleet():
    base = yaml.safe_load(open(os.path.join(ROOT, "scenarios", "fleet-1k.yaml")))
    base["fleet"]["nodes"] = 200
    base["fleet"]["regions"] = {"count": 1, "electors": 3}
    base["fleet"]["allow_region_sizes"] = True
    return base


def _mutants(base):
    for path in _paths(base):
        for bad in BAD:
            d = copy.deepcopy(base)
            cur = d
            for k in path[:-1]:
                cur = cur[k]
            cur[path[-1]] = bad
            yield path, bad, d


@pytest.mark.parametrize("name", LIBRARY + ("fleet",))
def test_every_value_of_the_wrong_kind_loads_or_is_refused_at_its_line(tmp_path, name):
    base = _small_fleet() if name == "fleet" else yaml.safe_load(open(os.path.join(ROOT, "scenarios", name + ".yaml")))
    target = tmp_path / ("%s.yaml" % name)
    place = re.compile(r"^%s:\d+: " % re.escape(str(target)))
    cases = refused = 0
    for path, bad, d in _mutants(base):
        target.write_text(yaml.safe_dump(d, sort_keys=False))
        cases += 1
        try:
            scenario.load(str(target))
        except ConfigError as e:
            refused += 1
            assert place.match(str(e)), "%s = %r: %s" % (".".join(map(str, path)), bad, e)
        except Exception as e:  # noqa: BLE001 (the point: nothing else may escape)
            pytest.fail("%s = %r: %s: %s" % (".".join(map(str, path)), bad, type(e).__name__, e))
    assert cases > 300 and refused > cases // 2, (cases, refused)  # the mutations did reach the checks
