"""What Wireshark's packet list shows of an exported run: the Source and
Destination columns carry node ids and cluster addresses (the dissector sets
them), and no interface description carries a host path (a pty or a
/dev/ttyACM0 means nothing to whoever opens the capture)."""

import json

from test_pcap import needs_tshark, read_pcapng, tshark  # noqa: F401 (fixtures below)

from ground import pcap, run, scenario, trace
from ground.router import wire


def _run(tmp_path):
    sc = scenario.load("tests/ground/scenarios/pcap.yaml")
    run.run(sc, str(tmp_path / "run"))
    return str(tmp_path / "run" / "trace.jsonl")


def _wireshark_at_least(major, minor):
    import re
    import subprocess

    from test_pcap import TSHARK

    v = subprocess.run([TSHARK, "-v"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.(\d+)\.\d+", v)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (major, minor)


def _name(addr):
    if addr == wire.ADDR_GROUND:
        return "ground"
    if addr == wire.ADDR_BROADCAST:
        return "broadcast"
    if addr & 0xF000 == wire.ADDR_CLUSTER:
        return "cluster %d" % (addr & 0x0FFF)
    return "node %d" % addr


@needs_tshark
def test_source_and_destination_columns_name_nodes_and_clusters(tmp_path):
    path = _run(tmp_path)
    out = str(tmp_path / "run.pcapng")
    pcap.export(path, out)
    _, events, _ = trace.read(path)
    sent = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and not e.get("bad")]
    # the columns' field names: _ws.col.Source up to Wireshark 4.0, _ws.col.def_src since 4.2
    names = ("_ws.col.def_src", "_ws.col.def_dst") if _wireshark_at_least(4, 2) else ("_ws.col.Source", "_ws.col.Destination")
    text = tshark(out, "-T", "fields", "-E", "separator=|", "-e", "fleetloop.fate", "-e", names[0], "-e", names[1],
                  "-Y", 'fleetloop.fate == "sent" && fleetloop.crc.status == "good"', tmp_home=str(tmp_path))
    rows = [line.split("|") for line in text.splitlines()]
    assert len(rows) == len(sent) > 100
    for (fate, src, dst), e in zip(rows, sent):
        assert (src, dst) == (_name(e["src"]), _name(e["dst"])), (src, dst, e)
    assert {r[2] for r in rows} >= {"cluster 1"}


def test_interface_descriptions_name_the_link_kind_not_a_host_path(tmp_path):
    path = _run(tmp_path)
    lines = open(path, encoding="utf-8").read().splitlines()
    header = json.loads(lines[0])
    header["nodes"]["1"]["link"] = "/dev/pts/7"  # as an emulated run records it
    header["nodes"]["3"]["link"] = "udp://192.168.4.23:50912"  # a board on transport udp: where its HELLO came from
    fake = tmp_path / "board.jsonl"
    fake.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    out = str(tmp_path / "b.pcapng")
    pcap.export(str(fake), out)
    descs = [i["opts"].get(3, b"").decode() for i in read_pcapng(out)["ifaces"]]
    assert not [d for d in descs if "/dev/" in d], descs
    assert "node 1: cluster 1, firmware 1.0, board over serial" in descs
    assert "node 2: cluster 1, firmware 1.0, in-process (sim)" in descs
    assert "node 3: cluster 1, firmware 1.0, board over udp" in descs
    assert not [d for d in descs if "192.168" in d], descs
