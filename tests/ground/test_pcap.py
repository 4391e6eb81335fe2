# pcapng export (ground/pcap.py) and the Wireshark dissector
# (tools/wireshark/fleetloop.lua), read as their spec, docs/TRACE_TOOLS.md:
#  - the file is pcapng as the draft says (parsed back here by a reader
#    written from the draft, not by the writer's code): one SHB, one IDB per
#    endpoint with LINKTYPE_USER0 and if_tsresol 9, then one EPB per frame
#    fate carrying bytes and one empty EPB per harness event, in trace order,
#    with mission-ns timestamps, epb_flags direction, epb_packetid = frame id
#    and the fate in opt_comment;
#  - tshark with the dissector shows, for every packet of a real sim run, the
#    field values the ground's own decoder (ground.protocol) reads from the
#    same bytes, and the fate the trace recorded; filters select exactly the
#    frames the trace says they should; a frame whose crc was doctored is
#    flagged fleetloop.bad_crc and nothing else is;
#  - the dissector's message table is msgs.all_layouts(), field for field, and it
#    decodes every golden vector (every type, plain and signed) to the
#    golden fields;
#  - bad traces (torn, unknown format, out of order) are refused naming
#    file:line and leave no output file behind.
# tshark tests skip (with the install command) when tshark is missing.
import json
import os
import re
import shutil
import struct
import subprocess
import zlib

import pytest

from ground import firmware
from ground import pcap
from ground import protocol as P
from ground import trace
from node.catchup import CATCHUP  # (firmware/ on sys.path: ground.firmware)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LUA = os.path.join(ROOT, "tools", "wireshark", "fleetloop.lua")
SCENARIO = os.path.join(ROOT, "tests", "ground", "scenarios", "pcap.yaml")
GOLDEN = os.path.join(ROOT, "tests", "core", "golden", "frames.json")
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(
    TSHARK is None,
    reason="tshark not installed (Debian: echo 'wireshark-common wireshark-common/install-setuid boolean false' | "
    "debconf-set-selections && DEBIAN_FRONTEND=noninteractive apt-get install -y tshark)",
)


# ---- a pcapng reader written from the draft (not from ground/pcap.py) -----


def read_pcapng(path):
    """{'shb': {...}, 'ifaces': [...], 'packets': [...]} of a little-endian pcapng."""
    data = open(path, "rb").read()
    off = 0
    out = {"shb": None, "ifaces": [], "packets": []}

    def options(buf):
        opts = []
        i = 0
        while i + 4 <= len(buf):
            code, n = struct.unpack_from("<HH", buf, i)
            i += 4
            if code == 0:
                assert n == 0
                assert i == len(buf), "bytes after opt_endofopt"
                return opts
            opts.append((code, buf[i:i + n]))
            i += n + (-n % 4)
        assert i == len(buf) and not opts, "option list not terminated by opt_endofopt"
        return opts

    while off < len(data):
        btype, total = struct.unpack_from("<II", data, off)
        assert total % 4 == 0 and total >= 12
        (trailer,) = struct.unpack_from("<I", data, off + total - 4)
        assert trailer == total, "block total length repeated at the end"
        body = data[off + 8:off + total - 4]
        if btype == 0x0A0D0D0A:
            magic, major, minor, seclen = struct.unpack_from("<IHHq", body, 0)
            assert (magic, major, minor, seclen) == (0x1A2B3C4D, 1, 0, -1)
            assert off == 0, "the SHB comes first"
            out["shb"] = dict(options(body[16:]))
        elif btype == 1:
            linktype, reserved, snaplen = struct.unpack_from("<HHI", body, 0)
            out["ifaces"].append({"linktype": linktype, "reserved": reserved, "snaplen": snaplen,
                                  "opts": dict(options(body[8:]))})
        elif btype == 6:
            iface, hi, lo, cap, orig = struct.unpack_from("<IIIII", body, 0)
            assert iface < len(out["ifaces"]), "EPB before its IDB"
            pkt = body[20:20 + cap]
            assert body[20 + cap:20 + cap + (-cap % 4)] == bytes(-cap % 4), "padding is zeros"
            opts = dict(options(body[20 + cap + (-cap % 4):]))
            out["packets"].append({"iface": iface, "ts": (hi << 32) | lo, "data": pkt, "orig": orig, "opts": opts})
        else:
            raise AssertionError("unexpected block type 0x%08x" % btype)
        off += total
    assert off == len(data)
    return out


def _expected_packets(path):
    """What the mapping says the export of a trace must hold, built from the trace."""
    header, events, _ = trace.read(path)
    sent = {}
    exp = []
    for e in events:
        if e["kind"] == "frame":
            f = e["fate"]
            if f == "sent":
                sent[e["id"]] = (bytes.fromhex(e["hex"]), e["src"])
                exp.append(("node%d" % e["src"] if e["src"] else "ground", e["mission_ns"], sent[e["id"]][0], 1, e["id"], "sent"))
            elif f == "delivered":
                data = bytes.fromhex(e["hex"]) if "hex" in e else sent[e["id"]][0]
                exp.append(("node%d" % e["to"] if e["to"] else "ground", e["mission_ns"], data, 2, e["id"], "delivered"))
            elif f == "dropped":
                where = e["to"] if e["to"] is not None else sent[e["id"]][1]
                exp.append(("node%d" % where if where else "ground", e["mission_ns"], sent[e["id"]][0], 0, e["id"], "dropped"))
        elif e["kind"] in ("fault", "link", "node", "end"):
            exp.append(("events", e["mission_ns"], b"", None, None, e["kind"]))
    return header, events, exp


# ---- fixtures -----------------------------------------------------------------


@pytest.fixture(scope="module")
def run_trace(scenario_runs):
    _, res, out = scenario_runs.get(SCENARIO)  # the run test_metrics_stream.py made (conftest.py), or one now
    assert res.status == "ok"
    return os.path.join(out, "trace.jsonl")


@pytest.fixture(scope="module")
def exported(run_trace, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pcapout") / "run.pcapng")
    r = pcap.export(run_trace, out)
    return run_trace, out, r


def tshark(pcap_path, *args, tmp_home=None):
    env = dict(os.environ)
    if tmp_home:  # no personal Wireshark profile or plugins in the way
        env.update(HOME=tmp_home, XDG_CONFIG_HOME=tmp_home)
    p = subprocess.run([TSHARK, "-n", "-X", "lua_script:" + LUA, "-r", pcap_path] + list(args),
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert "Lua: Error" not in p.stderr and "lua_script" not in p.stderr, p.stderr
    return p.stdout


def fields(pcap_path, names, filt=None, tmp_home=None):
    args = ["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
    for n in names:
        args += ["-e", n]
    if filt:
        args += ["-Y", filt]
    out = tshark(pcap_path, *args, tmp_home=tmp_home)
    return [dict(zip(names, line.split("|"))) for line in out.splitlines()]


# ---- the file itself ----------------------------------------------------------------


def test_pcapng_structure_matches_the_trace(exported):
    path, out, r = exported
    header, events, exp = _expected_packets(path)
    f = read_pcapng(out)
    assert f["shb"][4] == b"fleetloop ground export-pcap"
    assert b"scenario pcap" in f["shb"][1] and b"mission time" in f["shb"][1]
    names = [i["opts"][2].decode() for i in f["ifaces"]]
    assert names == ["ground", "node1", "node2", "node3", "events"]
    for i in f["ifaces"]:
        assert i["linktype"] == 147 and i["snaplen"] == 0 and i["reserved"] == 0
        assert i["opts"][9] == bytes([9])  # if_tsresol: nanoseconds
    assert len(f["packets"]) == len(exp) == r.packets
    assert r.frames == sum(1 for e in exp if e[0] != "events") and r.events == sum(1 for e in exp if e[0] == "events")
    kinds = {e[5] for e in exp}
    assert {"sent", "delivered", "dropped", "fault", "node", "end"} <= kinds
    last = 0
    for got, (iface, ts, data, direction, fid, kind) in zip(f["packets"], exp):
        assert names[got["iface"]] == iface
        assert got["ts"] == ts and ts >= last
        last = ts
        assert got["data"] == data and got["orig"] == len(data)
        comment = got["opts"][1].decode()
        if direction is None:
            assert 2 not in got["opts"] and 5 not in got["opts"]
            assert comment.startswith("kind=%s " % kind) or comment == "kind=%s" % kind
        else:
            assert struct.unpack("<I", got["opts"][2])[0] == direction
            assert struct.unpack("<Q", got["opts"][5])[0] == fid
            words = dict(w.split("=", 1) for w in comment.split(" "))
            assert words["fate"] == kind and int(words["id"]) == fid


def test_comments_carry_fates_and_link_alterations(exported):
    path, out, _ = exported
    header, events, _ = trace.read(path)
    f = read_pcapng(out)
    comments = [p["opts"][1].decode() for p in f["packets"] if p["data"]]
    drops = [e for e in events if e["kind"] == "frame" and e["fate"] == "dropped"]
    assert len([c for c in comments if c.startswith("fate=dropped")]) == len(drops) > 0
    for e in drops[:20]:
        assert any(("fate=dropped id=%d " % e["id"]) in c and ("reason=%s" % e["reason"]) in c for c in comments)
    corrupted = {(e["id"], e["to"]) for e in events if e["kind"] == "frame" and e["fate"] == "corrupted"}
    assert corrupted
    marked = {(int(w["id"]), int(w["to"])) for w in (dict(x.split("=", 1) for x in c.split(" ")) for c in comments)
              if "corrupted" in w}
    assert marked == corrupted
    dup = [e for e in events if e["kind"] == "frame" and e["fate"] == "duplicated"]
    assert dup and all(any("id=%d to=%d copy=%d" % (e["id"], e["to"], e["copy"]) in c for c in comments) for e in dup)


def test_wall_time_option(run_trace, tmp_path):
    out = str(tmp_path / "wall.pcapng")
    pcap.export(run_trace, out, time="wall")
    header, events, exp = _expected_packets(run_trace)
    walls = [e["wall_ns"] for e in events if e["kind"] != "frame" or e["fate"] in ("sent", "delivered", "dropped")]
    assert [p["ts"] for p in read_pcapng(out)["packets"]] == walls


# ---- bad input -------------------------------------------------------------------------


def _lines(path):
    return open(path, "rb").read().split(b"\n")


def _write(path, lines):
    with open(path, "wb") as f:
        f.write(b"\n".join(lines))


def test_torn_trace_is_refused_naming_the_line_unless_allowed(run_trace, tmp_path):
    lines = _lines(run_trace)[:-1]  # without the final ""
    torn = str(tmp_path / "torn.jsonl")
    _write(torn, lines[:40] + [lines[40][:17]])
    out = str(tmp_path / "torn.pcapng")
    with pytest.raises(pcap.PcapError, match=r"torn\.jsonl:41: the last line is torn"):
        pcap.export(torn, out)
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")
    r = pcap.export(torn, out, allow_torn=True)
    assert r.torn and r.packets > 0 and b"torn" in read_pcapng(out)["shb"][1]


def test_unknown_format_and_out_of_order_are_refused(run_trace, tmp_path):
    lines = _lines(run_trace)[:-1]
    head = json.loads(lines[0])
    head["format"] = "fleetloop-trace/9"
    bad = str(tmp_path / "v9.jsonl")
    _write(bad, [json.dumps(head).encode()] + lines[1:] + [b""])
    with pytest.raises(pcap.PcapError, match=r"v9\.jsonl:1: unknown format 'fleetloop-trace/9'"):
        pcap.export(bad, str(tmp_path / "v9.pcapng"))
    # swap two lines at different mission times
    i = next(k for k in range(2, len(lines) - 1) if json.loads(lines[k])["mission_ns"] < json.loads(lines[k + 1])["mission_ns"])
    swapped = lines[:i] + [lines[i + 1], lines[i]] + lines[i + 2:]
    ooo = str(tmp_path / "ooo.jsonl")
    _write(ooo, swapped + [b""])
    with pytest.raises(pcap.PcapError, match=r"ooo\.jsonl:%d: out of order: mission_ns" % (i + 2)):
        pcap.export(ooo, str(tmp_path / "ooo.pcapng"))
    # a delivery before its send
    first_sent = next(k for k in range(1, len(lines)) if b'"fate":"sent"' in lines[k])
    first_fate = next(k for k in range(first_sent + 1, len(lines)) if b'"fate":"delivered"' in lines[k])
    early = lines[:first_sent] + [lines[first_fate]] + [x for k, x in enumerate(lines) if k >= first_sent and k != first_fate]
    early_path = str(tmp_path / "early.jsonl")
    _write(early_path, early + [b""])
    with pytest.raises(pcap.PcapError, match=r"early\.jsonl:%d: out of order: delivered of frame id \d+ before its sent" % (first_sent + 1)):
        pcap.export(early_path, str(tmp_path / "early.pcapng"))
    # a frame id that is not a number (a list: it was a TypeError, an internal error)
    k = next(k for k in range(1, len(lines)) if b'"fate":"delivered"' in lines[k])
    ev = json.loads(lines[k])
    ev["id"] = []
    listed = str(tmp_path / "listed.jsonl")
    _write(listed, lines[:k] + [json.dumps(ev).encode()] + lines[k + 1:] + [b""])
    with pytest.raises(pcap.PcapError, match=r"listed\.jsonl:%d: frame id \[\] is not a non-negative integer" % (k + 1)):
        pcap.export(listed, str(tmp_path / "listed.pcapng"))
    assert not [p for p in os.listdir(tmp_path) if p.endswith((".pcapng", ".partial"))]


def test_cli_export_pcap(run_trace, tmp_path, capsys):
    from ground import cli

    out = str(tmp_path / "cli.pcapng")
    assert cli.main(["export-pcap", run_trace, "-o", out]) == 0
    assert "packets" in capsys.readouterr().out and os.path.getsize(out) > 0
    assert cli.main(["export-pcap", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err


# ---- the dissector's table is msgs.all_layouts() -------------------------------------------------


SIZES = {"B": 1, "H": 2, "I": 4}


def fixed_layouts():
    """{type: layout} of every type but the UPD_* ones: msgs.LAYOUTS and the
    tiers' (node/msgs_tiers.py), which the dissector lists field for field."""
    msgs = firmware.msgs
    return {t: lay for t, lay in msgs.all_layouts().items() if t not in msgs.UPDATE_TYPES}


def _lua_source():
    return open(LUA).read()


def lua_messages():
    """The dissector's MESSAGES table: code -> (name, [(field, size)], text)."""
    src = _lua_source()
    start = src.index("local MESSAGES = {")
    table = src[start:src.index("\n}\n", start)]
    lua = {}
    for m in re.finditer(r'\[0x([0-9A-Fa-f]{2})\] = \{ name = "(\w+)"(.*?)\},\s*(?=\[0x|--|$)', table + "\n", re.S):
        code, name, rest = int(m.group(1), 16), m.group(2), m.group(3)
        lua[code] = (name, [(f, int(n)) for f, n in re.findall(r'\{ "([\w.]+)", (\d+) \}', rest)], "text = true" in rest)
        tail = re.search(r'tail = "(\w+)"', rest)
        if tail:
            lua[code] += (tail.group(1),)
    return lua


def _fmt_sizes(fmt):
    """Field sizes of a struct format: "<I32sH" -> [4, 32, 2]."""
    return [int(n or 1) * SIZES[c] if c != "s" else int(n) for n, c in re.findall(r"(\d*)([BHIs])", fmt)]


def update_fields(code):
    """[(field, size)] and the tail's name of an UPD_* type (node/update.py's layouts), as the dissector lists them."""
    from node import update

    name, fmt, names = firmware.msgs.all_layouts()[code]
    if fmt is not None:
        return list(zip(names, _fmt_sizes(fmt))), None
    head = update.UPD_CHUNK_HEAD if code == firmware.msgs.UPD_CHUNK else update.UPD_ACK_HEAD
    return list(zip(names[:-1], _fmt_sizes(head))), names[-1]


def layout_fields(code):
    """[(field, size)] of a type from fixed_layouts(), as the dissector lists them."""
    msgs = firmware.msgs
    name, fmt, names = fixed_layouts()[code]
    if code == msgs.STATE:
        out = list(zip(names[:4], (SIZES[c] for c in msgs.STATE_HEAD[1:])))
        return out + [("entry." + n, SIZES[c]) for n, c in zip(("node", "version", "data"), msgs.STATE_ENTRY[1:])]
    if code == msgs.JOURNAL:
        out = [("first", SIZES[msgs.JOURNAL_HEAD[1]])]
        return out + [("entry." + n, SIZES[c]) for n, c in zip(("kind", "t_ms", "arg"), msgs.JOURNAL_ENTRY[1:])]
    if code == CATCHUP:  # node/catchup.py: a 7-field head, then (node, parent) per member
        from node import catchup

        return list(zip(names[:7], (SIZES[c] for c in catchup._HEAD[1:]))) + [("entry.node", 2), ("entry.parent", 2)]
    if fmt is None:
        return []
    return list(zip(names, (SIZES[c] for c in fmt[1:])))


def filter_names():
    """(code, field) -> display filter name, by the rule in fleetloop.lua's header."""
    header = set(re.findall(r"^    (\w+) = ProtoField\.", _lua_source()[:_lua_source().index("local MSG_FIELDS")], re.M))
    assert {"seq", "flags", "type", "src", "dst", "text", "crc"} <= header
    sizes, out = {}, {}
    msgs = firmware.msgs
    for code in sorted(fixed_layouts()):
        tname = fixed_layouts()[code][0]
        for f, size in layout_fields(code):
            key = f
            if f in header or sizes.get(f, size) != size:
                key = tname + "." + f
            sizes.setdefault(key, size)
            out[(code, f)] = "fleetloop." + key
    wire = firmware.wire
    for version in range(wire.VERSION_MIN + 1, wire.VERSION + 1):  # the fields a later version adds
        for code in sorted(fixed_layouts()):
            tname, fmt, names = msgs.layout(code, version)
            for f, size in zip(names, (SIZES[c] for c in (fmt or "<")[1:])):
                if (code, f) in out:
                    continue
                key = f
                if f in header or sizes.get(f, size) != size:
                    key = tname + "." + f
                sizes.setdefault(key, size)
                out[(code, f)] = "fleetloop." + key
    return out


def lua_changed():
    """The dissector's CHANGED table: (version, code) -> (name, [(field, size)])."""
    src = _lua_source()
    start = src.index("local CHANGED = {")
    table = src[start:src.index("\n}\n", start)]
    out = {}
    for vm in re.finditer(r"\n    \[(\d+)\] = \{(.*?)\n    \},", table, re.S):
        for m in re.finditer(r'\[0x([0-9A-Fa-f]{2})\] = \{ name = "(\w+)"(.*?)\} \},', vm.group(2), re.S):
            fields = [(f, int(n)) for f, n in re.findall(r'\{ "([\w.]+)", (\d) \}', m.group(3))]
            out[(int(vm.group(1)), int(m.group(1), 16))] = (m.group(2), fields)
    return out


def test_lua_changed_table_is_the_later_versions_layouts():
    msgs, wire = firmware.msgs, firmware.wire
    want = {}
    for version in range(wire.VERSION_MIN + 1, wire.VERSION + 1):
        for code in fixed_layouts():
            lay = msgs.layout(code, version)
            if lay is not msgs.layout(code, version - 1):
                want[(version, code)] = (lay[0], list(zip(lay[2], (SIZES[c] for c in lay[1][1:]))))
    assert want and lua_changed() == want
    assert "local VERSION_MIN, VERSION_MAX = %d, %d" % (wire.VERSION_MIN, wire.VERSION) in _lua_source()


def test_lua_message_table_is_msgs_layouts():
    lua = lua_messages()
    msgs = firmware.msgs
    every = msgs.all_layouts()  # msgs.LAYOUTS, the tiers' (node/msgs_tiers.py) and the UPD_* ones (node/update.py)
    assert set(lua) == set(every), (
        "every message type in msgs.all_layouts(), and only those, in fleetloop.lua's MESSAGES: missing %s, extra %s"
        % (sorted(set(every) - set(lua)), sorted(set(lua) - set(every))))
    for code, (name, fmt, names) in fixed_layouts().items():
        lname, lfields, text = lua[code]
        assert lname == name
        assert lfields == layout_fields(code), name
        assert text == (code == msgs.LOG)
    for code in set(every) - set(fixed_layouts()):
        want, tail = update_fields(code)
        assert lua[code][0] == every[code][0] and lua[code][1] == want, every[code][0]
        assert lua[code][3:] == ((tail,) if tail else ()), every[code][0]


# ---- tshark ------------------------------------------------------------------------------


@needs_tshark
def test_tshark_field_values_match_the_trace(exported, tmp_path):
    path, out, _ = exported
    header, events, exp = _expected_packets(path)
    names = ["frame.number", "frame.packet_id", "frame.interface_name", "fleetloop.fate", "fleetloop.id",
             "fleetloop.to", "fleetloop.reason", "fleetloop.version", "fleetloop.type", "fleetloop.type_name",
             "fleetloop.seq", "fleetloop.src", "fleetloop.dst", "fleetloop.term", "fleetloop.counter",
             "fleetloop.crc", "fleetloop.crc.status", "fleetloop.payload_len", "fleetloop.event"]
    rows = fields(out, names, tmp_home=str(tmp_path))
    assert len(rows) == len(exp)
    fates = [e for e in events if e["kind"] != "frame" or e["fate"] in ("sent", "delivered", "dropped")]
    checked = bad = 0
    for row, (iface, ts, data, direction, fid, kind), ev in zip(rows, exp, fates):
        assert row["frame.interface_name"] == iface
        if direction is None:
            assert row["fleetloop.event"].startswith("kind=" + kind)
            continue
        assert row["fleetloop.fate"] == kind and int(row["fleetloop.id"]) == fid == int(row["frame.packet_id"])
        if kind != "sent" and ev.get("to") is not None:
            assert int(row["fleetloop.to"]) == ev["to"]
        if kind == "dropped":
            assert row["fleetloop.reason"] == ev["reason"]
        try:
            f = P.parse_line(data)
        except P.FrameError as e:
            if e.reason == "crc":
                assert row["fleetloop.crc.status"] == "bad"
                bad += 1
            continue
        assert row["fleetloop.crc.status"] == "good"
        assert int(row["fleetloop.version"]) == f.version
        assert int(row["fleetloop.type"], 16) == f.type and row["fleetloop.type_name"] == P.type_name(f.type)
        assert int(row["fleetloop.seq"]) == f.seq
        assert int(row["fleetloop.src"]) == f.src and int(row["fleetloop.dst"], 16) == f.dst
        assert int(row["fleetloop.counter"]) == f.counter  # the scenario signs every frame
        assert int(row["fleetloop.payload_len"]) == len(f.payload)
        if "term" in f.msg:
            assert int(row["fleetloop.term"]) == f.msg.term
        else:
            assert row["fleetloop.term"] == ""
        if kind == "sent":  # and the trace's own decoding of the same frame
            assert f.src == ev["src"] and f.dst == ev["dst"] and P.type_name(f.type) == ev["type"] and f.seq == ev["seq"]
            assert ev["msg"].get("term") == f.msg.get("term")
        checked += 1
    assert checked > 500 and bad > 0


@needs_tshark
def test_tshark_filters_select_what_the_trace_says(exported, tmp_path):
    path, out, _ = exported
    header, events, _ = trace.read(path)
    sent = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent"]

    def count(filt):
        return len(tshark(out, "-Y", filt, tmp_home=str(tmp_path)).splitlines())

    assert count('fleetloop.type == 2 && fleetloop.fate == "sent"') == sum(1 for e in sent if e["type"] == "heartbeat") > 0
    assert count('fleetloop.src == 3 && fleetloop.fate == "sent"') == sum(1 for e in sent if e["src"] == 3) > 0
    assert count("fleetloop.term && frame.packet_flags_direction == 1") == sum(1 for e in sent if "term" in e["msg"])
    lost = [e for e in events if e["kind"] == "frame" and e["fate"] == "dropped" and e["reason"] == "loss"]
    assert count('fleetloop.fate == "dropped" && fleetloop.reason == "loss"') == len(lost) > 0
    assert count("frame.packet_flags_direction == 2") == sum(
        1 for e in events if e["kind"] == "frame" and e["fate"] == "delivered")
    assert count('fleetloop.event contains "fault=crash"') == 1
    one = sent[10]["id"]
    assert count("frame.packet_id == %d" % one) == 1 + sum(
        1 for e in events if e["kind"] == "frame" and e["id"] == one and e["fate"] in ("delivered", "dropped"))


# ---- version skew: converted frames and version-2 layouts ---------------------------


@pytest.fixture(scope="module")
def skew_export(tmp_path_factory, scenario_runs):
    d = tmp_path_factory.mktemp("skew")
    _, res, run_dir = scenario_runs.get(os.path.join(ROOT, "tests", "ground", "scenarios", "skew.yaml"))  # (conftest.py)
    assert res.status == "ok"
    path = os.path.join(run_dir, "trace.jsonl")
    out = str(d / "skew.pcapng")
    pcap.export(path, out)
    return path, out


def test_a_conversion_is_folded_into_the_recipients_packets(skew_export):
    path, out = skew_export
    header, events, _ = trace.read(path)
    conv = {(e["id"], e["to"]): "v%d>v%d" % (e["from_version"], e["to_version"])
            for e in events if e["kind"] == "frame" and e["fate"] == "converted"}
    assert conv
    delivered = {(e["id"], e["to"], e.get("copy", 0)): e for e in events
                 if e["kind"] == "frame" and e["fate"] == "delivered"}
    f = read_pcapng(out)
    seen = set()
    for p in f["packets"]:
        if not p["data"]:
            continue
        words = dict(w.split("=", 1) for w in p["opts"][1].decode().split(" "))
        assert words["fate"] in ("sent", "delivered", "dropped")  # no packet of its own
        key = (int(words["id"]), int(words["to"]) if words.get("to", "none") != "none" else None)
        if words["fate"] == "sent":
            continue
        assert words.get("converted") == conv.get(key), words
        if key in conv and words["fate"] == "delivered":
            seen.add(key)
            assert p["data"] == bytes.fromhex(delivered[key + (int(words["copy"]),)]["hex"])
            assert P.parse_frame(p["data"]).version == 1
    assert seen


@needs_tshark
def test_tshark_shows_versions_alive_and_conversions(skew_export, tmp_path):
    path, out = skew_export
    header, events, _ = trace.read(path)
    sent = {e["id"]: e for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    conv = [e for e in events if e["kind"] == "frame" and e["fate"] == "converted"]
    got_delivered = {e["id"] for e in events if e["kind"] == "frame" and e["fate"] == "delivered" and e["to"] == 4}
    rows = fields(out, ["fleetloop.id", "fleetloop.version", "fleetloop.alive", "fleetloop.converted", "_ws.col.Info"],
                  'fleetloop.type == 2 && fleetloop.fate == "sent"', tmp_home=str(tmp_path))
    assert rows
    for row in rows:
        ev = sent[int(row["fleetloop.id"])]
        if ev["src"] == 4:  # the version-1 node: no `alive`
            assert row["fleetloop.version"] == "1" and row["fleetloop.alive"] == "" and " v2" not in row["_ws.col.Info"]
        else:
            assert row["fleetloop.version"] == "2" and int(row["fleetloop.alive"]) == ev["msg"]["alive"]
            assert " v2" in row["_ws.col.Info"]
    rows = fields(out, ["fleetloop.id", "fleetloop.version", "fleetloop.alive", "fleetloop.converted", "fleetloop.to"],
                  'fleetloop.converted && fleetloop.fate == "delivered"', tmp_home=str(tmp_path))
    want = [e for e in conv if e["id"] in got_delivered]
    assert len(rows) >= len(want) > 0
    for row in rows:
        assert row["fleetloop.converted"] == "v2>v1" and row["fleetloop.to"] == "4"
        assert row["fleetloop.version"] == "1" and row["fleetloop.alive"] == ""


def _doctor_crc(line):
    """The same line frame with its crc32 wrong, still a valid escaped COBS line."""
    body = bytearray(P.cobs_decode(P.unescape(line)))
    body[-1] ^= 0x5A
    return P.escape(P.cobs_encode(bytes(body))), bytes(body)


@needs_tshark
def test_doctored_crc_is_flagged_and_only_it(run_trace, tmp_path):
    lines = _lines(run_trace)
    events = [json.loads(x) for x in lines if x]
    # a frame every recipient got intact, so the trace has no other bad crc for it
    ok_ids = {e["id"] for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == "heartbeat"}
    for e in events:
        if e["kind"] == "frame" and e["fate"] in ("corrupted", "duplicated"):
            ok_ids.discard(e["id"])
    victim = sorted(ok_ids)[5]
    out_lines = []
    for raw, e in zip(lines, events):
        if e["kind"] == "frame" and e["fate"] == "sent" and e["id"] == victim:
            line, body = _doctor_crc(bytes.fromhex(e["hex"]))
            e["hex"] = line.hex()
            raw = json.dumps(e, separators=(",", ":"), sort_keys=True).encode()
        out_lines.append(raw)
    doctored = str(tmp_path / "doctored.jsonl")
    _write(doctored, out_lines + [b""])
    out = str(tmp_path / "doctored.pcapng")
    pcap.export(doctored, out)
    base = str(tmp_path / "base.pcapng")
    pcap.export(run_trace, base)
    flagged_before = {r["frame.number"] for r in fields(base, ["frame.number"], "fleetloop.bad_crc", str(tmp_path))}
    rows = fields(out, ["frame.number", "frame.packet_id", "fleetloop.crc", "fleetloop.crc.computed", "fleetloop.crc.status"],
                  "fleetloop.bad_crc", str(tmp_path))
    new = [r for r in rows if r["frame.number"] not in flagged_before]
    fates = sum(1 for e in events if e["kind"] == "frame" and e["id"] == victim and e["fate"] in ("sent", "delivered", "dropped"))
    assert len(new) == fates >= 2
    for r in new:
        assert int(r["frame.packet_id"]) == victim and r["fleetloop.crc.status"] == "bad"
        assert int(r["fleetloop.crc.computed"], 16) == zlib.crc32(body[:-4])
        assert int(r["fleetloop.crc"], 16) == struct.unpack("<I", body[-4:])[0] != zlib.crc32(body[:-4])
    verbose = tshark(out, "-V", "-Y", "frame.packet_id == %d" % victim, tmp_home=str(tmp_path))
    assert "crc32 does not match the body" in verbose and "Expert Info (Error/Checksum)" in verbose


@needs_tshark
def test_dissector_decodes_every_golden_vector(tmp_path):
    # The UPD_* messages (docs/UPDATES.md, byte fields) are test_dissector_decodes_the_update_golden_vectors'.
    golden = [v for v in json.load(open(GOLDEN))["vectors"] if v["type"] not in firmware.msgs.all_layouts()
              or v["type"] in fixed_layouts()]
    assert {v["type"] for v in golden} <= set(fixed_layouts())
    out = str(tmp_path / "golden.pcapng")
    with open(out, "wb") as f:
        w = pcap.PcapngWriter(f)
        i = w.interface("golden")
        for k, v in enumerate(golden):
            line = bytes.fromhex(v["line"])
            if k % 2:  # the delimiter kept on every other packet: tolerated
                line = line[:-1]
            w.packet(i, k * 1000, line)
    fnames = filter_names()
    names = sorted({fnames[(v["type"], n)] for v in golden for n in v["fields"] if n not in ("entries", "text")})
    cols = ["fleetloop.type", "fleetloop.src", "fleetloop.dst", "fleetloop.seq", "fleetloop.version", "fleetloop.flags",
            "fleetloop.counter", "fleetloop.tag", "fleetloop.crc.status", "fleetloop.entry.node", "fleetloop.entry.version",
            "fleetloop.entry.data", "fleetloop.entry.kind", "fleetloop.entry.t_ms", "fleetloop.entry.arg",
            "fleetloop.entry.parent", "fleetloop.payload_len", "fleetloop.text"] + names
    rows = fields(out, cols, tmp_home=str(tmp_path))
    assert len(rows) == len(golden)

    def num(s):
        return int(s, 16) if s.startswith("0x") else int(s)

    for row, v in zip(rows, golden):
        assert num(row["fleetloop.type"]) == v["type"], v["name"]
        assert (num(row["fleetloop.src"]), num(row["fleetloop.dst"]), num(row["fleetloop.seq"])) == (v["src"], v["dst"], v["seq"])
        assert num(row["fleetloop.version"]) == v["version"] and num(row["fleetloop.flags"]) == v["flags"]
        assert row["fleetloop.crc.status"] == "good", v["name"]
        assert num(row["fleetloop.payload_len"]) == len(v["payload"]) // 2
        if v["counter"] is None:
            assert row["fleetloop.counter"] == "" and row["fleetloop.tag"] == ""
        else:
            assert num(row["fleetloop.counter"]) == v["counter"] and len(row["fleetloop.tag"].replace(":", "")) == 16
        for name, want in v["fields"].items():
            if name == "entries":
                subs = {firmware.msgs.JOURNAL: ("kind", "t_ms", "arg"), CATCHUP: ("node", "parent")}.get(
                    v["type"], ("node", "version", "data"))
                for sub in subs:
                    got = row["fleetloop.entry." + sub]
                    assert [num(x) for x in got.split(",") if x] == [e[sub] for e in want], v["name"]
            elif name == "text":
                assert _unescape_tshark(row["fleetloop.text"]) == want.replace("\x00", "\\0"), v["name"]
            else:
                assert num(row[fnames[(v["type"], name)]]) == want, (v["name"], name)


def _unescape_tshark(s):
    """tshark -T fields writes non-printable characters of a string as \\ooo or \\xhh."""
    return re.sub(r"\\(x[0-9a-fA-F]{2}|[0-7]{3}|\\|[abfnrtv])",
                  lambda m: {"\\": "\\", "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}.get(
                      m.group(1), chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x" else chr(int(m.group(1), 8))
                      if m.group(1)[0] in "01234567" else m.group(1)), s)


@needs_tshark
def test_dissector_decodes_every_message_type_in_layouts(tmp_path):
    # seeded random values for every field of every type, so a type added to
    # msgs.LAYOUTS (or node/msgs_tiers.py) is covered as soon as the dissector's table has it
    import random

    msgs, wire = firmware.msgs, firmware.wire
    rng = random.Random(7)
    fnames = filter_names()
    frames = []
    for code in sorted(fixed_layouts()):
        name, fmt, names = fixed_layouts()[code]
        if code == msgs.STATE:
            entries = [(rng.randrange(1, 0xF000), rng.randrange(1 << 16), rng.randrange(1 << 32)) for _ in range(3)]
            head = (rng.randrange(1 << 32), rng.randrange(1 << 32), 2, 9)
            payload = msgs.pack_state(*head, entries)
            values = dict(zip(names[:4], head))
        elif code == msgs.JOURNAL:
            entries = [(msgs.J_RX, rng.randrange(1 << 32), rng.randrange(1 << 32)), (msgs.J_POLL, 77, 2)]
            first = rng.randrange(1 << 32)
            payload, values = msgs.pack_journal(first, entries), {"first": first}
        elif code == CATCHUP:
            from node import catchup

            head = tuple(rng.randrange(1 << 16) for _ in range(7))
            payload, values = catchup.pack_fields(head, [(5, 0), (6, 2)]), dict(zip(names[:7], head))
        elif fmt is None:
            payload, values = "fleet \u00e9t\u00e9".encode(), {}
        else:
            vals = [rng.randrange(1 << (8 * SIZES[c])) for c in fmt[1:]]
            payload, values = msgs.pack(code, *vals), dict(zip(names, vals))
        line = bytes(wire.encode(code, rng.randrange(1, 0xF000), 0xF001, payload, rng.randrange(256)))[:-1]
        frames.append((code, values, line))
    out = str(tmp_path / "types.pcapng")
    with open(out, "wb") as f:
        w = pcap.PcapngWriter(f)
        i = w.interface("types")
        for k, (_, _, line) in enumerate(frames):
            w.packet(i, k, line)
    cols = ["fleetloop.type", "fleetloop.crc.status", "fleetloop.text", "fleetloop.entry.node", "fleetloop.entry.kind",
            "fleetloop.entry.t_ms"] + sorted(set(fnames.values()))
    rows = fields(out, cols, tmp_home=str(tmp_path))
    assert len(rows) == len(frames)
    for row, (code, values, line) in zip(rows, frames):
        assert int(row["fleetloop.type"], 16) == code and row["fleetloop.crc.status"] == "good"
        for fname, want in values.items():
            got = row[fnames[(code, fname)]]
            assert (int(got, 16) if got.startswith("0x") else int(got)) == want, (msgs.layout(code)[0], fname)
        if code == msgs.LOG:
            assert _unescape_tshark(row["fleetloop.text"]) == "fleet \u00e9t\u00e9"
        if code == msgs.STATE:
            assert len(row["fleetloop.entry.node"].split(",")) == 3
        if code == CATCHUP:
            assert row["fleetloop.entry.node"].split(",") == ["5", "6"]
        if code == msgs.JOURNAL:
            assert row["fleetloop.entry.kind"].split(",") == ["6", "7"]
            assert row["fleetloop.entry.t_ms"].split(",")[1] == "77"


@needs_tshark
def test_bad_lines_raise_expert_info(tmp_path):
    good = P.build_line("vote_request", 3, P.cluster_addr(1), seq=4, msg={"term": 9})[:-1]
    body = P.cobs_decode(P.unescape(good))
    v2 = bytearray(body)
    v2[0] = (P.VERSION + 1) << 4  # one past the newest version
    v2 = bytes(v2[:-4]) + struct.pack("<I", zlib.crc32(bytes(v2[:-4])))
    cases = [
        (good, None),
        (b"\x05\x03\x01", "fleetloop.bad_escape"),
        (b"\x1b\x07\x01", "fleetloop.bad_escape"),
        (b"\x09\x01\x02", "fleetloop.bad_cobs"),
        (P.escape(P.cobs_encode(b"\x10\x02\x03")), "fleetloop.short"),
        (P.escape(P.cobs_encode(v2)), "fleetloop.bad_version"),
        (P.escape(P.cobs_encode(body[:7] + b"\x01\x02" + body[-4:][:0] + struct.pack("<I", zlib.crc32(body[:7] + b"\x01\x02")))),
         "fleetloop.bad_payload"),
    ]
    out = str(tmp_path / "bad.pcapng")
    with open(out, "wb") as f:
        w = pcap.PcapngWriter(f)
        i = w.interface("bad")
        for k, (line, _) in enumerate(cases):
            w.packet(i, k, line)
    experts = ["fleetloop.bad_escape", "fleetloop.bad_cobs", "fleetloop.short", "fleetloop.bad_version",
               "fleetloop.bad_payload", "fleetloop.bad_crc"]
    for e in experts:  # one tshark per expert (not per case and expert): the frames that raise it, exactly
        hit = tshark(out, "-Y", e, "-T", "fields", "-e", "frame.number", tmp_home=str(tmp_path)).split()
        assert sorted(int(n) for n in hit) == [k + 1 for k, (_, want) in enumerate(cases) if want == e], (e, hit)


@needs_tshark
def test_dissector_decodes_the_update_golden_vectors(tmp_path):
    upd = set(firmware.msgs.all_layouts()) - set(fixed_layouts())
    golden = [v for v in json.load(open(GOLDEN))["vectors"] if v["type"] in upd]
    assert {v["type"] for v in golden} == upd
    out = str(tmp_path / "upd.pcapng")
    with open(out, "wb") as f:
        w = pcap.PcapngWriter(f)
        i = w.interface("golden")
        for k, v in enumerate(golden):
            w.packet(i, k * 1000, bytes.fromhex(v["line"])[:-1])
    cols = ["fleetloop.type_name", "fleetloop.upd_id", "fleetloop.upd_offer.digest", "fleetloop.chunks",
            "fleetloop.index", "fleetloop.upd_chunk.data", "fleetloop.have", "fleetloop.upd_ack.bitmap",
            "fleetloop.action", "fleetloop.crc.status", "_ws.expert.message"]
    rows = fields(out, cols, tmp_home=str(tmp_path))
    assert len(rows) == len(golden)
    for row, v in zip(rows, golden):
        f = v["fields"]
        assert row["fleetloop.type_name"] == v["name"].split("_")[0] + "_" + v["name"].split("_")[1], v["name"]
        assert int(row["fleetloop.upd_id"]) == f["upd_id"] and row["fleetloop.crc.status"] == "good"
        assert "payload" not in row["_ws.expert.message"], row
        for col, key in (("fleetloop.upd_offer.digest", "digest"), ("fleetloop.upd_chunk.data", "data"),
                         ("fleetloop.upd_ack.bitmap", "bitmap")):
            assert row[col].replace(":", "") == f.get(key, ""), (v["name"], col, row[col])
        for col, key in (("fleetloop.chunks", "chunks"), ("fleetloop.index", "index"), ("fleetloop.have", "have"),
                         ("fleetloop.action", "action")):
            assert row[col] == (str(f[key]) if key in f else ""), (v["name"], col)
