"""YAML loading that remembers where every value came from.

Scenario, board and rig files are all loaded through `load(path)`: mappings
come back as `Located` dicts that know the file and the line of each key, so a
validator can say `scenarios/bench.yaml:14: links.default: unknown key 'dealy_ms'`.
`check_keys` is the one place that rejects unknown keys.
"""

import math

import yaml


class ConfigError(ValueError):
    """Bad input in a YAML file: the message starts with file:line."""


class Located(dict):
    """A dict from YAML that knows its file, its own line and each key's line."""

    path = "?"
    line = 0

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.key_lines = {}

    def where(self, key=None):
        line = self.key_lines.get(key, self.line) if key is not None else self.line
        return "%s:%d" % (self.path, line)

    def error(self, key, message):
        return ConfigError("%s: %s" % (self.where(key), message))


class LocatedList(list):
    path = "?"
    line = 0
    item_lines = ()

    def where(self, index=None):
        line = self.item_lines[index] if index is not None and index < len(self.item_lines) else self.line
        return "%s:%d" % (self.path, line)


def _loader_for(path):
    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node):
        loader.flatten_mapping(node)
        out = Located()
        out.path = path
        out.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise ConfigError("%s:%d: duplicate key %r" % (path, key_node.start_mark.line + 1, key))
            out[key] = loader.construct_object(value_node, deep=True)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out

    def construct_sequence(loader, node):
        out = LocatedList(loader.construct_object(n, deep=True) for n in node.value)
        out.path = path
        out.line = node.start_mark.line + 1
        out.item_lines = tuple(n.start_mark.line + 1 for n in node.value)
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_sequence)
    return Loader


def loads(text, path="<string>"):
    try:
        return yaml.load(text, Loader=_loader_for(path))  # noqa: S506 (SafeLoader subclass)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError("%s:%d: %s" % (path, line, e.problem or e)) from None
    except yaml.YAMLError as e:
        raise ConfigError("%s: %s" % (path, e)) from None


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("%s: cannot read: %s" % (path, e.strerror)) from None
    return loads(text, path), text


def check_keys(mapping, allowed, section, required=(), where=None):
    """Reject keys not in `allowed` and missing `required` ones, naming file:line."""
    if not isinstance(mapping, Located):
        raise ConfigError("%s%s: expected a mapping, got %r" % (where + ": " if where else "", section, mapping))
    for key in mapping:
        if key not in allowed:
            raise mapping.error(key, "%s: unknown key %r (allowed: %s)" % (section, key, ", ".join(sorted(allowed))))
    for key in required:
        if key not in mapping:
            raise mapping.error(None, "%s: missing key %r" % (section, key))


def number(mapping, key, section, lo=None, hi=None, default=None, integer=False):
    """mapping[key] as a number within [lo, hi], or default; errors name file:line."""
    if key not in mapping:
        if default is None:
            raise mapping.error(None, "%s: missing key %r" % (section, key))
        return default
    v = mapping[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise mapping.error(key, "%s.%s: expected %s, got %r" % (section, key, "an integer" if integer else "a number", v))
    if v != v or v in (math.inf, -math.inf):  # .nan compares false with every bound; .inf is no amount
        raise mapping.error(key, "%s.%s: expected a finite number, got %r" % (section, key, v))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise mapping.error(key, "%s.%s: %r is outside [%s, %s]" % (section, key, v, lo, hi))
    return v
