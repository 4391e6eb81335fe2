# Writes tests/core/golden/frames.json: golden wire vectors from the firmware codec.
#
#     .venv/bin/python tools/make_golden.py          # rewrite the file
#     .venv/bin/python tools/make_golden.py --check  # exit 1 if it is stale
#     .venv/bin/python tools/make_golden.py --overhead  # print per-frame overhead figures
#
# The firmware (firmware/node/wire.py, msgs.py) is the reference: each vector
# is its fields run through wire.encode. tests/core/test_golden.py holds the
# firmware to them (under CPython and MicroPython) and
# tests/ground/test_protocol.py holds ground/protocol.py to them, so a change
# to either side that moves a byte fails a test until the vectors are
# regenerated on purpose and the diff reviewed. Deterministic: no clock, no
# randomness, fixed key and counters; the same firmware gives the same file.

import json
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (os.path.join(_ROOT, "firmware"), os.path.join(_ROOT, "ground", "shims"), os.path.join(_ROOT, "tests", "core")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from msgfields import payload_of  # noqa: E402  (needs the paths above)
from node import msgs, msgs_tiers, wire  # noqa: E402
from node.catchup import CATCHUP  # noqa: E402

OUT = os.path.join(_ROOT, "tests", "core", "golden", "frames.json")
KEY = b"fleetloop golden key \x00\x03\x1b"  # fixed; the escape bytes are on purpose
N1 = 0x0001
N2 = 0x0203
N_BIG = wire.MAX_NODE_ID  # highest node id
C1 = wire.cluster_addr(1)
C0 = wire.cluster_addr(0)
C_TOP = wire.cluster_addr(0xFFE)
BCAST = wire.ADDR_BROADCAST
GROUND = wire.ADDR_GROUND


def _entries(n, salt):
    # node ids and values chosen so the table holds 0x00, 0x03 and 0x1B bytes
    return [dict(node=i + 1, version=(i * 0x0301 + salt) & 0xFFFF, data=(0x1B030000 + i * 0x00010203) & 0xFFFFFFFF)
            for i in range(n)]


# name, type, src, dst, seq, fields, signed (counter or None)
CASES = [
    ("hello_to_ground", msgs.HELLO, N1, GROUND, 0,
     dict(hw_gen=1, fw_major=1, fw_minor=0, lineage=0, proto_min=1, proto_max=1, cluster=1), None),
    ("hello_to_cluster_auth", msgs.HELLO, N2, C1, 1,
     dict(hw_gen=2, fw_major=3, fw_minor=27, lineage=1, proto_min=1, proto_max=1, cluster=1), 1),
    ("heartbeat_cluster", msgs.HEARTBEAT, N1, C1, 2,
     dict(term=7, coordinator=1, standby=2, role=msgs.ROLE_COORDINATOR, lineage=0, rec_version=1,
          rec_data=0x01010000, digest=0x89ABCDEF), None),
    ("heartbeat_escape_bytes", msgs.HEARTBEAT, 0x031B, C1, 0x1B,
     dict(term=0x0003001B, coordinator=0x1B03, standby=0x0300, role=msgs.ROLE_STANDBY, lineage=3,
          rec_version=0x1B1B, rec_data=0x03030303, digest=0x001B0003), None),
    ("heartbeat_max_values_auth", msgs.HEARTBEAT, N_BIG, C_TOP, 255,
     dict(term=0xFFFFFFFF, coordinator=N_BIG, standby=N_BIG, role=255, lineage=255, rec_version=0xFFFF,
          rec_data=0xFFFFFFFF, digest=0xFFFFFFFF), 0xFFFFFFFF),
    ("prevote_request_cluster0", msgs.PREVOTE_REQUEST, N2, C0, 3, dict(term=8), None),
    ("prevote_request_auth", msgs.PREVOTE_REQUEST, N2, C1, 4, dict(term=0x031B), 0x031B0003),
    ("prevote_granted_to_node", msgs.PREVOTE, N1, N2, 5, dict(term=8, candidate=N2, granted=1), None),
    ("prevote_refused_auth", msgs.PREVOTE, N1, N2, 6, dict(term=8, candidate=N2, granted=0), 2),
    ("vote_request_auth", msgs.VOTE_REQUEST, N2, C1, 7, dict(term=9), 3),
    ("vote_granted", msgs.VOTE, 3, N2, 8, dict(term=9, candidate=N2, granted=1), None),
    ("vote_refused_auth", msgs.VOTE, 3, N2, 9, dict(term=10, candidate=N2, granted=0), 4),
    ("coordinator_broadcast", msgs.COORDINATOR, N2, BCAST, 10, dict(term=9, standby=3), None),
    ("coordinator_auth", msgs.COORDINATOR, N2, C1, 11, dict(term=9, standby=msgs.NO_NODE), 5),
    ("standby_cluster", msgs.STANDBY, N2, C1, 12, dict(term=9, standby=0x0303), None),
    ("standby_auth", msgs.STANDBY, N2, C1, 13, dict(term=9, standby=4), 6),
    ("state_empty", msgs.STATE, N2, C1, 14, dict(term=9, digest=0, first=0, total=0, entries=[]), None),
    ("state_one_entry_auth", msgs.STATE, N2, C1, 15,
     dict(term=9, digest=0x1B03001B, first=0, total=1, entries=_entries(1, 0)), 7),
    ("state_26_entries", msgs.STATE, N2, C1, 16,
     dict(term=9, digest=0x12345678, first=26, total=60, entries=_entries(26, 3)), None),
    ("state_26_entries_auth", msgs.STATE, N2, C1, 17,
     dict(term=9, digest=0x12345678, first=0, total=26, entries=_entries(26, 0x1B)), 8),
    ("telemetry_to_ground", msgs.TELEMETRY, N1, GROUND, 18,
     dict(role=msgs.ROLE_FOLLOWER, term=9, coordinator=N2, standby=3, digest=0xDEADBEEF, alive=20, suspect=0,
          bad_frames=0), None),
    ("telemetry_auth", msgs.TELEMETRY, N2, GROUND, 19,
     dict(role=msgs.ROLE_CANDIDATE, term=0x1B, coordinator=0, standby=0, digest=3, alive=3, suspect=27,
          bad_frames=0x031B), 9),
    ("config_from_ground", msgs.CONFIG, GROUND, N1, 20, dict(time_scale_milli=1000, fault_flags=0), None),
    ("config_broadcast_auth", msgs.CONFIG, GROUND, BCAST, 21,
     dict(time_scale_milli=0x031B031B, fault_flags=0x1B03), 10),
    ("log_empty", msgs.LOG, N1, GROUND, 22, dict(text=""), None),
    ("log_ascii", msgs.LOG, N1, GROUND, 23, dict(text="node 1 up, term 9"), None),
    ("log_control_and_utf8_auth", msgs.LOG, N_BIG, GROUND, 24,
     dict(text="nul\x00 etx\x03 esc\x1b \u00e9\u03bb\u2603"), 11),
    ("journal_boot", msgs.JOURNAL, N1, GROUND, 42,
     dict(first=0, entries=[dict(kind=msgs.J_BOOT, t_ms=0, arg=1), dict(kind=msgs.J_TERM, t_ms=0, arg=0x031B),
                            dict(kind=msgs.J_VOTE, t_ms=0, arg=3), dict(kind=msgs.J_COUNTER, t_ms=0, arg=2048),
                            dict(kind=msgs.J_LOG, t_ms=0, arg=0xDEADBEEF)]), None),
    ("journal_rx_poll", msgs.JOURNAL, N_BIG, GROUND, 43,
     dict(first=0x1B03, entries=[dict(kind=msgs.J_RX, t_ms=1234567, arg=0x0003001B),
                                 dict(kind=msgs.J_POLL, t_ms=1234567, arg=2)]), None),
    # The regional market tier (docs/MARKET.md).
    ("market_tel_to_ground", msgs.MARKET_TEL, N1, GROUND, 25,
     dict(region_term=2, price_round=41, price_age_s=3600, produced=12345, lost=67, paused_feed_s=0,
          paused_parts_s=1800, paused_logistics_s=0, leases=4, bids=19, awards=17, refused=0, mode=0,
          region_role=msgs.ROLE_FOLLOWER), None),
    ("market_tel_conservative_auth", msgs.MARKET_TEL, N2, GROUND, 26,
     dict(region_term=0x1B, price_round=0x0303, price_age_s=0x0003001B, produced=0xFFFFFFFF, lost=3,
          paused_feed_s=0x1B, paused_parts_s=0, paused_logistics_s=0x031B, leases=0x1B03, bids=0xFFFF,
          awards=0, refused=3, mode=2, region_role=msgs.ROLE_STANDBY), 12),
    ("intent_broadcast", msgs.INTENT, GROUND, BCAST, 27,
     dict(seq=1, campaign_start_s=864000, campaign_end_s=950400, growth_permille=300, cover_permille=1000,
          phase=0, preapproved=1), None),
    ("intent_cluster_auth", msgs.INTENT, GROUND, C1, 28,
     dict(seq=0x031B, campaign_start_s=0, campaign_end_s=0, growth_permille=0, cover_permille=900, phase=1,
          preapproved=0), 13),
    ("bid_spot", msgs.BID, N2, N1, 29,
     dict(round=40, seq=0x2A00, first=41, resource=0xFFFF, price=24, classes=0x03, span=1, period=3, count=1,
          flags=1), None),
    ("bid_cover_escape_auth", msgs.BID, 0x031B, N1, 0x03,
     dict(round=0x1B, seq=0x0303, first=0x1B03, resource=0x001B, price=2, classes=0x10, span=4, period=22,
          count=5, flags=4), 14),
    ("award_to_holder", msgs.AWARD, N1, N2, 30,
     dict(term=2, round=40, seq=0x2A00, first=42, resource=7, holder=N2, price=1, span=1, period=1, count=1,
          flags=0), None),
    ("award_replica_merge_auth", msgs.AWARD, N1, 3, 31,
     dict(term=3, round=0x1B1B, seq=0x03, first=0x031B, resource=0x0303, holder=0x1B, price=0x1B, span=1,
          period=4, count=30, flags=msgs.AWARD_REPLICA | msgs.AWARD_MERGE), 15),
    ("prices_complete_broadcast", msgs.PRICES, N1, BCAST, 32,
     dict(term=2, round=40, digest=0, intent_seq=1, region=1, awards=17, status=msgs.ROUND_COMPLETE, p0=1, p1=1,
          p2=3, p3=1, p4=24, p5=1, p6=1, p7=50), None),
    ("prices_prepare_to_standby_auth", msgs.PRICES, N1, 3, 33,
     dict(term=0x1B, round=0x03, digest=0xDEAD031B, intent_seq=0, region=0x1FE, awards=0x0303,
          status=msgs.ROUND_PREPARE, p0=1000, p1=0x1B, p2=3, p3=1, p4=1, p5=1, p6=1, p7=1), 16),
    ("round_ack", msgs.ROUND_ACK, 3, N1, 34,
     dict(term=2, round=40, digest=0x12345678, awards=17, status=msgs.ROUND_PREPARE), None),
    ("round_ack_auth", msgs.ROUND_ACK, 3, N1, 35,
     dict(term=0x1B, round=0x031B, digest=0x0003001B, awards=0, status=msgs.ROUND_PREPARE), 17),
    ("release", msgs.RELEASE, N2, N1, 36,
     dict(seq=0x2A05, first=44, from_slot=45, resource=9, holder=N2, span=1, period=4, count=6), None),
    ("release_auth", msgs.RELEASE, N2, N1, 37,
     dict(seq=0x1B, first=0x03, from_slot=0x1B, resource=0x0303, holder=N2, span=4, period=22, count=3), 18),
    ("reconcile", msgs.RECONCILE, N2, N1, 38,
     dict(seq=0x2A06, outage_s=2592000, produced=4000, lost=420, paused_s=86400, used=40, unused=3,
          deferred=12), None),
    ("reconcile_auth", msgs.RECONCILE, N2, N1, 39,
     dict(seq=0x1B, outage_s=0x03, produced=0, lost=0, paused_s=0, used=0, unused=0, deferred=0xFFFF), 19),
    ("reconcile_ack", msgs.RECONCILE_ACK, N1, N2, 40, dict(term=2, seq=0x2A06, released=2, refused=0), None),
    ("reconcile_ack_auth", msgs.RECONCILE_ACK, N1, N2, 41, dict(term=0x031B, seq=0x1B, released=0, refused=1), 20),
    ("accuse_to_region", msgs.ACCUSE, N2, wire.cluster_addr(0xE01), 42,
     dict(term=3, round=40, accused=N1, region=1, reason=1 | 4, lineage=1,
          claimed_digest=0x12345678, own_digest=0x9ABCDEF0, claimed_awards=16, own_awards=17, holder=N2,
          claimed_res=0xFFFF, own_res=7, claimed_first=0, own_first=41, price_class=0, claimed_price=1,
          own_price=1), None),
    ("accuse_to_ground_auth", msgs.ACCUSE, 0x031B, GROUND, 43,
     dict(term=0x1B, round=0x0303, accused=0x1B03, region=0x1B, reason=2, lineage=3,
          claimed_digest=0x0003001B, own_digest=0x0003001B, claimed_awards=3, own_awards=3, holder=0,
          claimed_res=0xFFFF, own_res=0xFFFF, claimed_first=0, own_first=0, price_class=4, claimed_price=0x1B,
          own_price=0x0303), 26),
    ("audit_bid", msgs.AUDIT_BID, N1, 3, 44,
     dict(round=40, rows=17, row=0, holder=N2, before_digest=0x89ABCDEF, seq=0x2A00, first=41, resource=0xFFFF,
          price=24, classes=0x01, span=1, period=3, count=1, flags=1), None),
    ("audit_bid_auth", msgs.AUDIT_BID, N1, 0x031B, 45,
     dict(round=0x1B, rows=0x0303, row=0x031B, holder=0x1B03, before_digest=0x0003001B, seq=3, first=0x1B,
          resource=0x0303, price=1000, classes=0x1B, span=3, period=0x1B, count=30, flags=7), 27),
    # Software updates (docs/UPDATES.md).
    ("upd_offer_to_node", msgs.UPD_OFFER, GROUND, N1, 34,
     dict(upd_id=7, digest=bytes(range(32)).hex(), size=90000, chunks=450, chunk_size=200, fw_major=1, fw_minor=1,
          lineage=0, flags=0), None),
    ("upd_chunk_escape_auth", msgs.UPD_CHUNK, GROUND, N2, 35,
     dict(upd_id=0x031B, index=0x1B03, data="00031b" * 5), 26),
    ("upd_ack_bitmap", msgs.UPD_ACK, N1, GROUND, 36,
     dict(upd_id=7, state=1, reason=0, have=12, base=8, fw_major=1, fw_minor=0, bitmap="ef0003"), None),
    ("upd_cmd_install_auth", msgs.UPD_CMD, GROUND, N1, 37, dict(upd_id=7, action=1), 27),
    ("reinstate", msgs.REINSTATE, GROUND, wire.cluster_addr(0xE01), 46, dict(region=1, node=N2), None),
    ("reinstate_auth", msgs.REINSTATE, GROUND, wire.cluster_addr(0xE1B), 47, dict(region=0x1B, node=0x031B), 28),
    ("witness", msgs.WITNESS, N2, wire.cluster_addr(0xE01), 0x93, dict(region=1, node=N1, term=6, own=7, claims=4), None),
    ("witness_auth", msgs.WITNESS, 0x031B, wire.cluster_addr(0xE1B), 0x94,
     dict(region=0x1B, node=0x1B03, term=0x0003001B, own=0x031B0000, claims=0x1B), 0x93),
    ("bid_seen", msgs.BID_SEEN, N2, N1, 0x95, dict(round=40, seq=0x2A06, coordinator=N1, digest=0x89ABCDEF), None),
    ("bid_seen_auth", msgs.BID_SEEN, 0x031B, 0x1B03, 0x96, dict(round=0x1B, seq=0x0003001B, coordinator=0x1B03,
                                                                 digest=0x031B0000), 0x94),
    ("sever", msgs.SEVER, GROUND, wire.cluster_addr(0xE01), 0x97, dict(region=2, severed=1), None),
    ("sever_auth", msgs.SEVER, GROUND, wire.cluster_addr(0xE1B), 0x98, dict(region=0x031B, severed=0), 0x95),
    ("held", msgs.HELD, N2, wire.cluster_addr(1), 0x99, dict(region=1, node=N1, state=2), None),
    ("held_auth", msgs.HELD, 0x031B, wire.cluster_addr(0x1B), 0x9A, dict(region=0x031B, node=0x1B03, state=3), 0x96),
    ("audit_miss", msgs_tiers.AUDIT_MISS, N2, N1, 0x9B, dict(round=40, from_row=32, missing=0x80000005), None),
    ("audit_miss_auth", msgs_tiers.AUDIT_MISS, 0x031B, 0x1B03, 0x9C, dict(round=0x1B, from_row=0x031B, missing=0x0003001B),
     0x97),
    ("bid_receipt", msgs_tiers.BID_RECEIPT, N1, N2, 0x9D, dict(round=40, seq=0x2A06, digest=0x89ABCDEF), None),
    ("bid_receipt_auth", msgs_tiers.BID_RECEIPT, 0x1B03, 0x031B, 0x9E, dict(round=0x1B, seq=0x0003001B, digest=0x031B0000),
     0x98),
    # Replication (node/join.py): seqs 0xA0.. so they never collide with another helper's additions.
    ("join", msgs.JOIN, 0x0065, C1, 0xA0, dict(parent=N1, cluster=1, lineage=2, hw_gen=3, fw=0x0300), None),
    ("join_auth", msgs.JOIN, 0x031B, C1, 0xA1, dict(parent=0x1B03, cluster=0x031B, lineage=0x1B, hw_gen=3,
                                                    fw=0x1B03), 28),
    ("roster", msgs.ROSTER, N1, C1, 0xA2, dict(term=7, epoch=1, node=0x0065, parent=N2, members=6), None),
    ("split", msgs.SPLIT, N1, C1, 0xA3, dict(term=7, epoch=2, new_cluster=2, pivot=11, low=10, high=11), None),
    ("daughter", msgs.DAUGHTER, N2, GROUND, 0xA4, dict(daughters=1, lineage=2, hw_gen=3, fw_major=3, fw_minor=0),
     None),
    ("join_refused_auth", msgs.JOIN_REFUSED, N1, GROUND, 0xA5,
     dict(reason=1, type=msgs.JOIN, src=0x031B, subject=0x1B03, count=0x0003001B), 29),
    # CATCHUP (node/catchup.py): a roster sent to one node; seqs 0xA6.. (the ones above are taken).
    ("catchup", CATCHUP, N1, 8, 0xA6, dict(term=7, epoch=2, cluster=2, first=108, count=8, split_first=4,
                                                 split_count=1, entries=[dict(node=6, parent=0), dict(node=8, parent=0),
                                                                         dict(node=100, parent=7)]), None),
    ("catchup_auth", CATCHUP, 0x031B, N2, 0xA7, dict(term=0x0003001B, epoch=0x1B03, cluster=0x031B, first=0x1B00,
                                                          count=3, split_first=0x0300, split_count=0, entries=[
                                                              dict(node=N2, parent=0x031B)]), 30),
]

# Protocol version 2 frames (CASES are all version 1, and stay byte for byte
# what they were): HEARTBEAT's new layout, and unchanged layouts under the new
# header nibble. Same columns as CASES.
V2_CASES = [
    ("heartbeat_v2_cluster", msgs.HEARTBEAT, N1, C1, 50,
     dict(term=7, coordinator=1, standby=2, role=msgs.ROLE_COORDINATOR, lineage=0, rec_version=1,
          rec_data=0x02000000, digest=0x89ABCDEF, alive=4), None),
    ("heartbeat_v2_escape_bytes", msgs.HEARTBEAT, 0x031B, C1, 0x03,
     dict(term=0x0003001B, coordinator=0x1B03, standby=0x0300, role=msgs.ROLE_STANDBY, lineage=3,
          rec_version=0x1B1B, rec_data=0x03030303, digest=0x001B0003, alive=0x1B), None),
    ("heartbeat_v2_max_values_auth", msgs.HEARTBEAT, N_BIG, C_TOP, 255,
     dict(term=0xFFFFFFFF, coordinator=N_BIG, standby=N_BIG, role=255, lineage=255, rec_version=0xFFFF,
          rec_data=0xFFFFFFFF, digest=0xFFFFFFFF, alive=255), 0xFFFFFFFF),
    ("heartbeat_v2_alive_unknown_auth", msgs.HEARTBEAT, N2, C1, 51,
     dict(term=9, coordinator=N2, standby=3, role=msgs.ROLE_FOLLOWER, lineage=1, rec_version=2,
          rec_data=0x02010001, digest=3, alive=msgs.ALIVE_UNKNOWN), 21),
    ("hello_v2_to_cluster_auth", msgs.HELLO, N2, C1, 52,
     dict(hw_gen=2, fw_major=2, fw_minor=0, lineage=1, proto_min=1, proto_max=2, cluster=1), 22),
    ("vote_request_v2", msgs.VOTE_REQUEST, N2, C1, 53, dict(term=9), None),
    ("state_v2_one_entry_auth", msgs.STATE, N2, C1, 54,
     dict(term=9, digest=0x1B03001B, first=0, total=1, entries=_entries(1, 0)), 23),
]

# Protocol version 3 frames: TELEMETRY's u32 refusal counters and heap, and
# unchanged layouts (HEARTBEAT as version 2 has it) under the new nibble.
V3_CASES = [
    ("telemetry_v3_to_ground", msgs.TELEMETRY, N1, GROUND, 60,
     dict(role=msgs.ROLE_COORDINATOR, term=9, coordinator=N1, standby=3, digest=0xDEADBEEF, alive=5, suspect=0,
          bad_frames=0xFFFF, rejects=1000003, unknown_src=999000, long_lines=3, replayed=27, heap_free=150016,
          heap_min=98304), None),
    ("telemetry_v3_escape_bytes_auth", msgs.TELEMETRY, 0x031B, GROUND, 0x1B,
     dict(role=msgs.ROLE_FOLLOWER, term=0x1B, coordinator=0x0303, standby=0, digest=3, alive=3, suspect=27,
          bad_frames=0x031B, rejects=0x0003031B, unknown_src=0x1B, long_lines=0x03000000, replayed=0x1B1B1B1B,
          heap_free=0x0003001B, heap_min=3), 24),
    ("telemetry_v3_max_values_auth", msgs.TELEMETRY, N_BIG, GROUND, 255,
     dict(role=255, term=0xFFFFFFFF, coordinator=N_BIG, standby=N_BIG, digest=0xFFFFFFFF, alive=255, suspect=255,
          bad_frames=0xFFFF, rejects=0xFFFFFFFF, unknown_src=0xFFFFFFFF, long_lines=0xFFFFFFFF, replayed=0xFFFFFFFF,
          heap_free=0xFFFFFFFF, heap_min=0xFFFFFFFF), 0xFFFFFFFE),
    ("heartbeat_v3_cluster_auth", msgs.HEARTBEAT, N2, C1, 61,
     dict(term=9, coordinator=N2, standby=3, role=msgs.ROLE_COORDINATOR, lineage=1, rec_version=2,
          rec_data=0x03000001, digest=0x1B, alive=5), 25),
    ("hello_v3_to_node_auth", msgs.HELLO, N2, N1, 62,
     dict(hw_gen=2, fw_major=3, fw_minor=0, lineage=1, proto_min=1, proto_max=3, cluster=1), 1024),
]

# Protocol version 4 frames: the market's new line (BID's hw_gen, AWARD's
# end_s), and unchanged layouts (TELEMETRY as version 3 has it, PRICES as
# version 1) under the new nibble.
V4_CASES = [
    ("bid_v4_spot", msgs.BID, N2, N1, 0x70,
     dict(round=40, seq=0x2A00, first=41, resource=0xFFFF, price=24, classes=0x03, span=1, period=3, count=1,
          flags=1, hw_gen=2), None),
    ("bid_v4_escape_bytes_auth", msgs.BID, 0x031B, N1, 0x1B,
     dict(round=0x1B, seq=0x0303, first=0x1B03, resource=0x001B, price=2, classes=0x10, span=4, period=22,
          count=5, flags=4, hw_gen=3), 0x70),
    ("bid_v4_gen_unsaid", msgs.BID, N1, N2, 0x71,
     dict(round=7, seq=9, first=8, resource=0xFFFF, price=1000, classes=0x20, span=2, period=2, count=1, flags=2,
          hw_gen=0), None),
    ("award_v4_to_holder", msgs.AWARD, N1, N2, 0x72,
     dict(term=2, round=40, seq=0x2A00, first=42, resource=7, holder=N2, price=1, span=1, period=1, count=1,
          flags=0, end_s=43 * 60), None),
    ("award_v4_replica_merge_auth", msgs.AWARD, N1, 3, 0x73,
     dict(term=3, round=0x1B1B, seq=0x03, first=0x031B, resource=0x0303, holder=0x1B, price=0x1B, span=1,
          period=4, count=30, flags=msgs.AWARD_REPLICA | msgs.AWARD_MERGE, end_s=0x0003001B), 0x71),
    ("award_v4_max_values_auth", msgs.AWARD, N_BIG, C_TOP, 255,
     dict(term=0xFFFFFFFF, round=0xFFFFFFFF, seq=0xFFFFFFFF, first=0xFFFFFFFF, resource=0xFFFF, holder=N_BIG,
          price=0xFFFF, span=255, period=255, count=255, flags=255, end_s=0xFFFFFFFF), 0xFFFFFFFD),
    ("prices_v4_complete_broadcast", msgs.PRICES, N1, BCAST, 0x74,
     dict(term=2, round=40, digest=0, intent_seq=1, region=1, awards=17, status=msgs.ROUND_COMPLETE, p0=1, p1=1,
          p2=2, p3=1, p4=7, p5=1, p6=1, p7=12), None),
    ("telemetry_v4_to_ground", msgs.TELEMETRY, N1, GROUND, 0x75,
     dict(role=msgs.ROLE_FOLLOWER, term=9, coordinator=N2, standby=N1, digest=0x1B, alive=5, suspect=0,
          bad_frames=0, rejects=0, unknown_src=0, long_lines=0, replayed=0, heap_free=0, heap_min=0), None),
    ("hello_v4_to_node_auth", msgs.HELLO, N2, N1, 0x76,
     dict(hw_gen=3, fw_major=4, fw_minor=0, lineage=1, proto_min=1, proto_max=4, cluster=1), 0x72),
]


def vectors():
    out = []
    cases = ([(1, c) for c in CASES] + [(2, c) for c in V2_CASES] + [(3, c) for c in V3_CASES]
             + [(4, c) for c in V4_CASES])
    for version, (name, type, src, dst, seq, fields, counter) in cases:
        names = msgs.layout(type, version)[2]
        if list(fields) != list(names):
            raise SystemExit("%s: fields %s, msgs.layout(v%d) says %s" % (name, list(fields), version, names))
        payload = payload_of(type, fields, version)
        auth = wire.Auth(KEY) if counter is not None else None
        line = wire.encode(type, src, dst, payload, seq, auth, counter or 0, version)
        out.append(
            {
                "name": name,
                "version": version,
                "flags": wire.FLAG_AUTH if auth else 0,
                "type": type,
                "type_name": msgs.name(type),
                "seq": seq,
                "src": src,
                "dst": dst,
                "fields": fields,
                "payload": payload.hex(),
                "key": KEY.hex() if auth else None,
                "counter": counter,
                "line": bytes(line).hex(),
            }
        )
    return out


def render():
    doc = {
        "about": "Golden wire vectors written by tools/make_golden.py from the firmware codec. "
        "line: hex of wire.encode(), 0x00 delimiter included. version: the header's protocol version. "
        "fields: the message by the names of msgs.layout(type, version) "
        "(STATE entries as {node, version, data}). key: hex, or null for an unsigned frame; "
        "counter: the auth counter, or null.",
        "vectors": vectors(),
    }
    # one vector per block, one key per line: diffs stay readable
    return json.dumps(doc, indent=1, ensure_ascii=True) + "\n"


def overhead(n_random=10000, seed=1):
    """Per-frame overhead (line bytes, delimiter included, minus payload
    bytes), plain and signed, over the golden vectors and over n_random
    seeded frames with uniformly random field values. Prints figures; the
    numbers in docs/PROTOCOL.md come from here."""
    import random
    import struct

    rng = random.Random(seed)
    top = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}
    golden = []
    for v in vectors():
        golden.append((v["key"] is not None, len(v["line"]) // 2 - len(v["payload"]) // 2))
    rand = []
    types = sorted(msgs.all_layouts())
    for i in range(n_random):
        t = types[i % len(types)]
        if t == msgs.STATE:
            n = rng.randrange(msgs.STATE_MAX_ENTRIES + 1)
            entries = [(rng.randrange(1 << 16), rng.randrange(1 << 16), rng.randrange(1 << 32)) for _ in range(n)]
            payload = msgs.pack_state(rng.randrange(1 << 32), rng.randrange(1 << 32), 0, n, entries)
        elif t == msgs.LOG:
            payload = bytes(rng.randrange(32, 127) for _ in range(rng.randrange(80)))
        elif t in (msgs.UPD_CHUNK, msgs.UPD_ACK):
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(13, 200)))
        elif t == CATCHUP:
            payload = bytes(rng.randrange(256) for _ in range(16 + 4 * rng.randrange(22)))
        elif t == msgs.JOURNAL:
            payload = msgs.pack_journal(rng.randrange(1 << 32), [(rng.randrange(1, 8), rng.randrange(1 << 32), rng.randrange(1 << 32)) for _ in range(rng.randrange(msgs.JOURNAL_MAX_ENTRIES + 1))])
        else:
            payload = struct.pack(msgs.layout(t)[1], *[bytes(32) if c == "s" else rng.randrange(top[c] + 1) for c in msgs.layout(t)[1][1:] if not c.isdigit()])
        signed = i % 2 == 1
        line = wire.encode(t, rng.randrange(1, wire.MAX_NODE_ID + 1), rng.randrange(1 << 16), payload,
                           rng.randrange(256), wire.Auth(KEY) if signed else None, rng.randrange(1 << 32))
        rand.append((signed, len(line) - len(payload)))
    mesh = _mesh_overhead()
    fixed = {False: wire.HEADER_LEN + wire.CRC_LEN + 2, True: wire.HEADER_LEN + wire.CRC_LEN + 2 + wire.AUTH_LEN}
    print("per-frame overhead in bytes (line incl. 0x00 minus payload); fixed part: plain %d, signed %d"
          % (fixed[False], fixed[True]))
    for label, rows in (("golden", golden), ("random x%d" % n_random, rand), ("mesh traffic", mesh)):
        for signed in (False, True):
            xs = [o for s, o in rows if s == signed]
            mean = sum(xs) / len(xs)
            print("  %-13s %-6s n=%-5d mean %.2f  min %d  max %d  (escapes per frame %.2f)"
                  % (label, "signed" if signed else "plain", len(xs), mean, min(xs), max(xs), mean - fixed[signed]))


def _mesh_overhead():
    """(signed, overhead) of every frame a 5-node cluster sends in 60 s of
    virtual time, plain then signed: what real traffic looks like (small
    ids and terms, so many zeros and 0x03 COBS codes)."""
    from mesh import Mesh

    rows = []
    for key in (None, KEY):
        m = Mesh(5, seed=3, auth_key=key)
        route = m._route

        def tap(src, dst, line, t, route=route, signed=key is not None):
            rows.append((signed, len(line) + 1 - len(wire.decode(bytes(line)).payload)))
            return route(src, dst, line, t)

        m._route = tap  # Mesh hands _route each line without its delimiter
        m.run_for(60000)
    return rows


def main(argv):
    if "--overhead" in argv:
        overhead()
        return 0
    text = render()
    if "--check" in argv:
        with open(OUT) as f:
            stale = f.read() != text
        print("%s is %s" % (OUT, "stale: run tools/make_golden.py" if stale else "up to date"))
        return 1 if stale else 0
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)
    print("wrote %d vectors to %s" % (len(CASES) + len(V2_CASES), os.path.relpath(OUT, _ROOT)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
