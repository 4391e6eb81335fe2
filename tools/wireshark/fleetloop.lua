-- fleetloop.lua: a Wireshark / tshark dissector for fleetloop line frames.
--
--   ground export-pcap runs/x/trace.jsonl -o run.pcapng
--   tshark -X lua_script:tools/wireshark/fleetloop.lua -r run.pcapng -V
--   tshark -X lua_script:tools/wireshark/fleetloop.lua -r run.pcapng -Y 'fleetloop.type == 2 && fleetloop.src == 3'
--   (or copy this file into ~/.local/lib/wireshark/plugins/ for the GUI)
--
-- A packet is one line frame as the ground saw it on a serial link, without
-- its 0x00 delimiter (a trailing 0x00 is tolerated): escaped COBS of the
-- body. docs/PROTOCOL.md is the format; docs/TRACE_TOOLS.md lists the fields.
-- Layers, outermost first, each undone here:
--   escape : 1B 01 -> 03, 1B 02 -> 1B (a raw 03 or a bad escape is flagged)
--   COBS   : Cheshire & Baker; a 00 inside the line is flagged
--   body   : header(7) | payload | [counter u32 | tag 8] | crc32 LE
-- The crc is checked (IEEE CRC-32 of every body byte before it); a bad one
-- raises the expert info fleetloop.bad_crc, and the fields are still shown.
-- The auth tag is shown, not checked: the dissector has no key.
--
-- Registered on the wtap_encap table for WTAP_ENCAP_USER0 (wtap_encaps.USER0,
-- 45), which is what pcap/pcapng LINKTYPE_USER0 (147) maps to: ground/pcap.py
-- writes every interface with that link type. Zero-length packets are the
-- exporter's event markers (faults, link and node events): their comment is
-- shown as fleetloop.event.
--
-- The packet comment written by ground/pcap.py ("fate=delivered id=17 to=4
-- ...") is parsed into fleetloop.fate, .id, .to, .reason, .copy, .delay_ns,
-- .corrupted, .converted, so a filter can say `fleetloop.fate == "dropped"`.
--
-- Protocol versions: the header's version nibble picks the payload layout
-- (CHANGED below: version 2 appends `alive` to HEARTBEAT, version 3 u32
-- refusal counters and the heap to TELEMETRY, version 4 `hw_gen` to BID and
-- `end_s` to AWARD); the info column says " v2" (" v3", " v4") after the
-- sequence number for a frame above version 1.
--
-- New message type: add one entry to MESSAGES (name and fields in wire
-- order, sizes in bytes), as in firmware/node/msgs.py LAYOUTS;
-- tests/ground/test_pcap.py fails until the two agree. A field name is one
-- filter field, fleetloop.<name>, shared by every type that has it with the
-- same size, so `fleetloop.term` matches heartbeats, votes and telemetry
-- alike. Where a name is already taken, by a header field (seq, flags) or by
-- the same name with another size in a type of lower code (STATE's u8 first
-- vs BID's u32 first), the field is fleetloop.<type name>.<name> instead:
-- fleetloop.bid.first, fleetloop.intent.seq.
--
-- Portable across Wireshark's Lua 5.2 (bit32) and 5.4 (native operators):
-- the one bitwise operation needed, xor for the crc, is picked at load.

local fl = Proto("fleetloop", "fleetloop fleet frame")

-- ---- the message table (firmware/node/msgs.py LAYOUTS) -------------------

local MESSAGES = {
    [0x01] = { name = "hello", fields = { { "hw_gen", 1 }, { "fw_major", 1 }, { "fw_minor", 1 }, { "lineage", 1 },
                                           { "proto_min", 1 }, { "proto_max", 1 }, { "cluster", 2 } } },
    [0x02] = { name = "heartbeat", fields = { { "term", 4 }, { "coordinator", 2 }, { "standby", 2 }, { "role", 1 },
                                               { "lineage", 1 }, { "rec_version", 2 }, { "rec_data", 4 }, { "digest", 4 } } },
    [0x10] = { name = "prevote_request", fields = { { "term", 4 } } },
    [0x11] = { name = "prevote", fields = { { "term", 4 }, { "candidate", 2 }, { "granted", 1 } } },
    [0x12] = { name = "vote_request", fields = { { "term", 4 } } },
    [0x13] = { name = "vote", fields = { { "term", 4 }, { "candidate", 2 }, { "granted", 1 } } },
    [0x14] = { name = "coordinator", fields = { { "term", 4 }, { "standby", 2 } } },
    [0x15] = { name = "standby", fields = { { "term", 4 }, { "standby", 2 } } },
    -- STATE: this head, then 0..26 entries of `entries` (first + n <= total)
    [0x20] = { name = "state", fields = { { "term", 4 }, { "digest", 4 }, { "first", 1 }, { "total", 1 } },
               entries = { { "entry.node", 2 }, { "entry.version", 2 }, { "entry.data", 4 } } },
    [0x30] = { name = "telemetry", fields = { { "role", 1 }, { "term", 4 }, { "coordinator", 2 }, { "standby", 2 },
                                               { "digest", 4 }, { "alive", 1 }, { "suspect", 1 }, { "bad_frames", 2 } } },
    [0x31] = { name = "market_tel", fields = { { "region_term", 4 }, { "price_round", 4 }, { "price_age_s", 4 },
                                                { "produced", 4 }, { "lost", 4 }, { "paused_feed_s", 4 },
                                                { "paused_parts_s", 4 }, { "paused_logistics_s", 4 }, { "leases", 2 },
                                                { "bids", 2 }, { "awards", 2 }, { "refused", 2 }, { "mode", 1 },
                                                { "region_role", 1 } } },
    [0x40] = { name = "config", fields = { { "time_scale_milli", 4 }, { "fault_flags", 2 } } },
    [0x41] = { name = "intent", fields = { { "seq", 4 }, { "campaign_start_s", 4 }, { "campaign_end_s", 4 },
                                            { "growth_permille", 2 }, { "cover_permille", 2 }, { "phase", 1 },
                                            { "preapproved", 1 } } },
    -- LOG: the whole payload is UTF-8 text
    [0x50] = { name = "log", text = true },
    -- JOURNAL: this head, then entries (the board shell's core calls, runtime/journal.py)
    [0x70] = { name = "journal", fields = { { "first", 4 } },
               entries = { { "entry.kind", 1 }, { "entry.t_ms", 4 }, { "entry.arg", 4 } } },
    [0x60] = { name = "bid", fields = { { "round", 4 }, { "seq", 4 }, { "first", 4 }, { "resource", 2 }, { "price", 2 },
                                         { "classes", 1 }, { "span", 1 }, { "period", 1 }, { "count", 1 }, { "flags", 1 } } },
    [0x61] = { name = "award", fields = { { "term", 4 }, { "round", 4 }, { "seq", 4 }, { "first", 4 }, { "resource", 2 },
                                           { "holder", 2 }, { "price", 2 }, { "span", 1 }, { "period", 1 }, { "count", 1 },
                                           { "flags", 1 } } },
    [0x62] = { name = "prices", fields = { { "term", 4 }, { "round", 4 }, { "digest", 4 }, { "intent_seq", 4 },
                                            { "region", 2 }, { "awards", 2 }, { "status", 1 }, { "p0", 2 }, { "p1", 2 },
                                            { "p2", 2 }, { "p3", 2 }, { "p4", 2 }, { "p5", 2 }, { "p6", 2 }, { "p7", 2 } } },
    [0x63] = { name = "round_ack", fields = { { "term", 4 }, { "round", 4 }, { "digest", 4 }, { "awards", 2 }, { "status", 1 } } },
    [0x64] = { name = "release", fields = { { "seq", 4 }, { "first", 4 }, { "from_slot", 4 }, { "resource", 2 },
                                             { "holder", 2 }, { "span", 1 }, { "period", 1 }, { "count", 1 } } },
    [0x65] = { name = "reconcile", fields = { { "seq", 4 }, { "outage_s", 4 }, { "produced", 4 }, { "lost", 4 },
                                               { "paused_s", 4 }, { "used", 2 }, { "unused", 2 }, { "deferred", 2 } } },
    [0x66] = { name = "reconcile_ack", fields = { { "term", 4 }, { "seq", 4 }, { "released", 2 }, { "refused", 2 } } },
    -- UPD_* (docs/UPDATES.md): a field over 4 bytes is shown as bytes (the offer's sha256 `digest`);
    -- `tail` names the bytes from the fixed fields to the payload's end (fleetloop.<type name>.<tail>)
    [0x80] = { name = "upd_offer", fields = { { "upd_id", 4 }, { "digest", 32 }, { "size", 4 }, { "chunks", 2 },
                                               { "chunk_size", 2 }, { "fw_major", 1 }, { "fw_minor", 1 },
                                               { "lineage", 1 }, { "flags", 1 } } },
    [0x81] = { name = "upd_chunk", fields = { { "upd_id", 4 }, { "index", 2 } }, tail = "data" },
    [0x82] = { name = "upd_ack", fields = { { "upd_id", 4 }, { "state", 1 }, { "reason", 1 }, { "have", 2 },
                                             { "base", 2 }, { "fw_major", 1 }, { "fw_minor", 1 } }, tail = "bitmap" },
    [0x83] = { name = "upd_cmd", fields = { { "upd_id", 4 }, { "action", 1 } } },
    [0x90] = { name = "accuse", fields = { { "term", 4 }, { "round", 4 }, { "accused", 2 }, { "region", 2 }, { "reason", 1 },
                                            { "lineage", 1 }, { "claimed_digest", 4 }, { "own_digest", 4 },
                                            { "claimed_awards", 2 }, { "own_awards", 2 }, { "holder", 2 },
                                            { "claimed_res", 2 }, { "own_res", 2 }, { "claimed_first", 4 },
                                            { "own_first", 4 }, { "price_class", 1 }, { "claimed_price", 2 },
                                            { "own_price", 2 } } },
    [0x91] = { name = "audit_bid", fields = { { "round", 4 }, { "rows", 2 }, { "row", 2 }, { "holder", 2 },
                                               { "before_digest", 4 }, { "seq", 4 }, { "first", 4 }, { "resource", 2 },
                                               { "price", 2 }, { "classes", 1 }, { "span", 1 }, { "period", 1 },
                                               { "count", 1 }, { "flags", 1 } } },
    [0x92] = { name = "reinstate", fields = { { "region", 2 }, { "node", 2 } } },
    [0x93] = { name = "witness", fields = { { "region", 2 }, { "node", 2 }, { "term", 4 }, { "own", 4 }, { "claims", 1 } } },
    [0x94] = { name = "bid_seen", fields = { { "round", 4 }, { "seq", 4 }, { "coordinator", 2 }, { "digest", 4 } } },
    [0x95] = { name = "sever", fields = { { "region", 2 }, { "severed", 1 } } },
    [0x96] = { name = "held", fields = { { "region", 2 }, { "node", 2 }, { "state", 1 } } },
    [0x97] = { name = "audit_miss", fields = { { "round", 4 }, { "from_row", 2 }, { "missing", 4 } } },
    [0x98] = { name = "bid_receipt", fields = { { "round", 4 }, { "seq", 4 }, { "digest", 4 } } },
    [0xA0] = { name = "join", fields = { { "parent", 2 }, { "cluster", 2 }, { "lineage", 1 }, { "hw_gen", 1 }, { "fw", 2 } } },
    [0xA1] = { name = "roster", fields = { { "term", 4 }, { "epoch", 2 }, { "node", 2 }, { "parent", 2 }, { "members", 1 } } },
    [0xA2] = { name = "split", fields = { { "term", 4 }, { "epoch", 2 }, { "new_cluster", 2 }, { "pivot", 2 }, { "low", 1 },
                                           { "high", 1 } } },
    [0xA3] = { name = "daughter", fields = { { "daughters", 2 }, { "lineage", 1 }, { "hw_gen", 1 }, { "fw_major", 1 },
                                              { "fw_minor", 1 } } },
    [0xA4] = { name = "join_refused", fields = { { "reason", 1 }, { "type", 1 }, { "src", 2 }, { "subject", 2 }, { "count", 4 } } },
    -- CATCHUP: this head, then one entry per member of the cluster it names (node/catchup.py)
    [0xA5] = { name = "catchup", fields = { { "term", 4 }, { "epoch", 2 }, { "cluster", 2 }, { "first", 2 }, { "count", 2 },
                                             { "split_first", 2 }, { "split_count", 2 } },
               entries = { { "entry.node", 2 }, { "entry.parent", 2 } } },
}

-- Protocol versions 2, 3 and 4 changed these layouts (firmware/node/msgs.py _CHANGED): a
-- type not listed for a version is laid out as in the version before, and
-- MESSAGES is version 1. tests/ground/test_pcap.py holds this to msgs.py too.
local CHANGED = {
    [2] = {
        [0x02] = { name = "heartbeat", fields = { { "term", 4 }, { "coordinator", 2 }, { "standby", 2 }, { "role", 1 },
                                                   { "lineage", 1 }, { "rec_version", 2 }, { "rec_data", 4 }, { "digest", 4 },
                                                   { "alive", 1 } } },
    },
    [3] = {
        [0x30] = { name = "telemetry", fields = { { "role", 1 }, { "term", 4 }, { "coordinator", 2 }, { "standby", 2 },
                                                   { "digest", 4 }, { "alive", 1 }, { "suspect", 1 }, { "bad_frames", 2 },
                                                   { "rejects", 4 }, { "unknown_src", 4 }, { "long_lines", 4 },
                                                   { "replayed", 4 }, { "heap_free", 4 }, { "heap_min", 4 } } },
    },
    [4] = {  -- the market's new line: the bidder's hardware generation, the lease's end (mission s)
        [0x60] = { name = "bid", fields = { { "round", 4 }, { "seq", 4 }, { "first", 4 }, { "resource", 2 }, { "price", 2 },
                                             { "classes", 1 }, { "span", 1 }, { "period", 1 }, { "count", 1 }, { "flags", 1 },
                                             { "hw_gen", 1 } } },
        [0x61] = { name = "award", fields = { { "term", 4 }, { "round", 4 }, { "seq", 4 }, { "first", 4 }, { "resource", 2 },
                                               { "holder", 2 }, { "price", 2 }, { "span", 1 }, { "period", 1 }, { "count", 1 },
                                               { "flags", 1 }, { "end_s", 4 } } },
    },
}

-- the layout of a message type in a protocol version (nil if unknown)
local function message_of(code, version)
    for v = version, 2, -1 do
        local c = CHANGED[v]
        if c and c[code] then return c[code] end
    end
    return MESSAGES[code]
end

local HEX_FIELDS = { digest = true, rec_data = true, ["entry.data"] = true, fault_flags = true }
local ROLE_NAMES = { [0] = "follower", [1] = "candidate", [2] = "coordinator", [3] = "standby" }
local JOURNAL_KINDS = { [1] = "boot", [2] = "term", [3] = "vote", [4] = "counter", [5] = "log", [6] = "rx", [7] = "poll", [8] = "seed" }
local VALUE_NAMES = { role = ROLE_NAMES, granted = { [0] = "no", [1] = "yes" }, ["entry.kind"] = JOURNAL_KINDS }

local VERSION_MIN, VERSION_MAX = 1, 4
local HEADER_LEN, CRC_LEN, AUTH_LEN, TAG_LEN = 7, 4, 12, 8
local MAX_BODY, MAX_LINE = 247, 496
local FLAG_AUTH = 1
local ADDR_GROUND, ADDR_CLUSTER, ADDR_BROADCAST = 0x0000, 0xF000, 0xFFFF

-- ---- fields --------------------------------------------------------------

local CODES = {}  -- message codes in order: field names are given out in this order
for code in pairs(MESSAGES) do CODES[#CODES + 1] = code end
table.sort(CODES)
local type_names = {}
for code, m in pairs(MESSAGES) do type_names[code] = m.name end

local F = {
    line_len = ProtoField.uint16("fleetloop.line_len", "Line bytes (without the 00 delimiter)", base.DEC),
    body = ProtoField.bytes("fleetloop.body", "Body (un-escaped, COBS-decoded)"),
    version = ProtoField.uint8("fleetloop.version", "Version", base.DEC, nil, 0xF0),
    flags = ProtoField.uint8("fleetloop.flags", "Flags", base.HEX, nil, 0x0F),
    flag_auth = ProtoField.bool("fleetloop.flags.auth", "Signed (auth trailer present)", 8, nil, 0x01),
    type = ProtoField.uint8("fleetloop.type", "Type", base.HEX, type_names),
    type_name = ProtoField.string("fleetloop.type_name", "Type name"),
    seq = ProtoField.uint8("fleetloop.seq", "Sequence", base.DEC),
    src = ProtoField.uint16("fleetloop.src", "Source node", base.DEC),
    dst = ProtoField.uint16("fleetloop.dst", "Destination", base.HEX),
    dst_node = ProtoField.uint16("fleetloop.dst_node", "Destination node", base.DEC),
    dst_cluster = ProtoField.uint16("fleetloop.dst_cluster", "Destination cluster", base.DEC),
    dst_broadcast = ProtoField.bool("fleetloop.dst_broadcast", "Broadcast"),
    payload = ProtoField.bytes("fleetloop.payload", "Payload"),
    payload_len = ProtoField.uint8("fleetloop.payload_len", "Payload bytes", base.DEC),
    counter = ProtoField.uint32("fleetloop.counter", "Auth counter", base.DEC),
    tag = ProtoField.bytes("fleetloop.tag", "Auth tag (HMAC-SHA256, first 8 bytes; not checked)"),
    crc = ProtoField.uint32("fleetloop.crc", "crc32", base.HEX),
    crc_computed = ProtoField.uint32("fleetloop.crc.computed", "crc32 computed", base.HEX),
    crc_status = ProtoField.string("fleetloop.crc.status", "crc32 status"),
    entry = ProtoField.bytes("fleetloop.entry", "STATE / JOURNAL / CATCHUP entry"),
    text = ProtoField.string("fleetloop.text", "Text"),
    -- from the exporter's packet comment
    fate = ProtoField.string("fleetloop.fate", "Fate (from the trace)"),
    id = ProtoField.uint32("fleetloop.id", "Trace frame id", base.DEC),
    to = ProtoField.uint16("fleetloop.to", "Recipient node", base.DEC),
    copy = ProtoField.uint8("fleetloop.copy", "Copy (0 original, 1.. duplicates)", base.DEC),
    reason = ProtoField.string("fleetloop.reason", "Drop reason"),
    delay_ns = ProtoField.uint64("fleetloop.delay_ns", "Link delay (mission ns)", base.DEC),
    corrupted = ProtoField.string("fleetloop.corrupted", "Corrupted by the link"),
    converted = ProtoField.string("fleetloop.converted", "Down-converted by the harness (sent version>delivered version)"),
    event = ProtoField.string("fleetloop.event", "Harness event"),
}

-- one ProtoField per message field (see the header for the names), from MESSAGES;
-- spec[3] is filled in with the ProtoField
local MSG_FIELDS = {}  -- filter name -> { field =, size = }
local function msg_field(msgname, name, size)
    local key = name
    local have = MSG_FIELDS[key]
    if F[name] or (have and have.size ~= size) then
        key = msgname .. "." .. name
        have = MSG_FIELDS[key]
    end
    if have then return have.field end
    local base_ = HEX_FIELDS[name] and base.HEX or base.DEC
    local ctor = ({ [1] = ProtoField.uint8, [2] = ProtoField.uint16, [4] = ProtoField.uint32 })[size]
    local f
    if ctor then
        f = ctor("fleetloop." .. key, name, base_, VALUE_NAMES[name])
    elseif size > 4 then
        f = ProtoField.bytes("fleetloop." .. key, name)
    else
        error("fleetloop.lua: field " .. msgname .. "." .. name .. ": unsupported size " .. size)
    end
    MSG_FIELDS[key] = { field = f, size = size }
    return f
end
for _, code in ipairs(CODES) do
    local m = MESSAGES[code]
    for _, spec in ipairs(m.fields or {}) do spec[3] = msg_field(m.name, spec[1], spec[2]) end
    for _, spec in ipairs(m.entries or {}) do spec[3] = msg_field(m.name, spec[1], spec[2]) end
    if m.tail then
        local key = m.name .. "." .. m.tail
        m.tail_field = ProtoField.bytes("fleetloop." .. key, m.tail)
        MSG_FIELDS[key] = { field = m.tail_field, size = 0 }
    end
end
for v = 2, VERSION_MAX do  -- the later versions' layouts: a field they add gets its filter name here
    for _, code in ipairs(CODES) do
        local m = CHANGED[v] and CHANGED[v][code]
        if m then
            for _, spec in ipairs(m.fields or {}) do spec[3] = msg_field(m.name, spec[1], spec[2]) end
            for _, spec in ipairs(m.entries or {}) do spec[3] = msg_field(m.name, spec[1], spec[2]) end
        end
    end
end

local all = {}
for _, f in pairs(F) do all[#all + 1] = f end
for _, mf in pairs(MSG_FIELDS) do all[#all + 1] = mf.field end
fl.fields = all

-- ---- expert info -----------------------------------------------------------

local E = {
    bad_crc = ProtoExpert.new("fleetloop.bad_crc", "crc32 does not match the body", expert.group.CHECKSUM, expert.severity.ERROR),
    bad_escape = ProtoExpert.new("fleetloop.bad_escape", "bad escape (raw 03, or 1B not followed by 01/02)", expert.group.MALFORMED, expert.severity.ERROR),
    bad_cobs = ProtoExpert.new("fleetloop.bad_cobs", "not COBS (a 00 inside the frame, or a block past the end)", expert.group.MALFORMED, expert.severity.ERROR),
    short = ProtoExpert.new("fleetloop.short", "frame too short", expert.group.MALFORMED, expert.severity.ERROR),
    too_long = ProtoExpert.new("fleetloop.too_long", "frame too long", expert.group.MALFORMED, expert.severity.ERROR),
    empty = ProtoExpert.new("fleetloop.empty", "empty line", expert.group.MALFORMED, expert.severity.WARN),
    bad_version = ProtoExpert.new("fleetloop.bad_version", "unknown protocol version", expert.group.PROTOCOL, expert.severity.ERROR),
    bad_address = ProtoExpert.new("fleetloop.bad_address", "source above the largest node id 0xEFFF", expert.group.PROTOCOL, expert.severity.ERROR),
    unknown_type = ProtoExpert.new("fleetloop.unknown_type", "unknown message type", expert.group.UNDECODED, expert.severity.WARN),
    bad_payload = ProtoExpert.new("fleetloop.bad_payload", "payload wrong for its type", expert.group.MALFORMED, expert.severity.ERROR),
    dropped = ProtoExpert.new("fleetloop.dropped", "frame dropped", expert.group.SEQUENCE, expert.severity.NOTE),
}
fl.experts = { E.bad_crc, E.bad_escape, E.bad_cobs, E.short, E.too_long, E.empty, E.bad_version, E.bad_address,
               E.unknown_type, E.bad_payload, E.dropped }

-- ---- crc32 (IEEE, as binascii.crc32) ------------------------------------------

local bxor
if bit32 then
    bxor = bit32.bxor
elseif bit then
    bxor = function(a, b) return bit.bxor(a, b) % 4294967296 end
else
    bxor = load("return function(a, b) return a ~ b end")()
end
local floor = math.floor

local CRC_TABLE = {}
for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
        if c % 2 == 1 then c = bxor(floor(c / 2), 0xEDB88320) else c = floor(c / 2) end
    end
    CRC_TABLE[i] = c
end

local function crc32(s, n)
    local c = 0xFFFFFFFF
    for i = 1, n do
        c = bxor(CRC_TABLE[bxor(c, s:byte(i)) % 256], floor(c / 256))
    end
    return bxor(c, 0xFFFFFFFF)
end

-- ---- the layers ---------------------------------------------------------------

-- un-escape a Lua string; returns the result or nil, reason
local function unescape(s)
    local out, i, n = {}, 1, #s
    while i <= n do
        local b = s:byte(i)
        if b == 0x03 then return nil, "raw 0x03 at line byte " .. (i - 1) end
        if b == 0x1B then
            local c = s:byte(i + 1)
            if c == 0x01 then out[#out + 1] = "\3"
            elseif c == 0x02 then out[#out + 1] = "\27"
            else return nil, "0x1B followed by " .. (c and string.format("0x%02X", c) or "the end") .. " at line byte " .. (i - 1) end
            i = i + 2
        else
            out[#out + 1] = string.char(b)
            i = i + 1
        end
    end
    return table.concat(out)
end

-- COBS-decode a Lua string; returns the result or nil, reason
local function cobs_decode(s)
    if s:find("\0", 1, true) then return nil, "a 00 byte inside the frame" end
    local out, i, n = {}, 1, #s
    while i <= n do
        local code = s:byte(i)
        local stop = i + code
        if stop - 1 > n then return nil, "a block runs past the end" end
        out[#out + 1] = s:sub(i + 1, stop - 1)
        i = stop
        if code < 255 and i <= n then out[#out + 1] = "\0" end
    end
    return table.concat(out)
end

local function addr_name(a)
    if a == ADDR_GROUND then return "ground" end
    if a == ADDR_BROADCAST then return "broadcast" end
    if a >= ADDR_CLUSTER then return "cluster " .. (a - ADDR_CLUSTER) end
    return "node " .. a
end

-- the exporter's comment: "fate=sent id=1 src=3 ..." or "kind=fault ..."
local f_comment = Field.new("frame.comment")

local function comment_fields()
    local c = f_comment()
    if not c then return nil end
    local text = tostring(c.value)
    local kv = {}
    for k, v in text:gmatch("(%S-)=(%S+)") do
        if kv[k] == nil then kv[k] = v end
    end
    return text, kv
end

local function add_comment_fields(tree, tvb, kv)
    if not kv.fate then return end
    local z = tvb(0, 0)
    tree:add(F.fate, z, kv.fate):set_generated()
    if tonumber(kv.id) then tree:add(F.id, z, tonumber(kv.id)):set_generated() end
    if tonumber(kv.to) then tree:add(F.to, z, tonumber(kv.to)):set_generated() end
    if tonumber(kv.copy) then tree:add(F.copy, z, tonumber(kv.copy)):set_generated() end
    if kv.reason then tree:add(F.reason, z, kv.reason):set_generated() end
    if kv.corrupted then tree:add(F.corrupted, z, kv.corrupted):set_generated() end
    if kv.converted then tree:add(F.converted, z, kv.converted):set_generated() end
    if tonumber(kv.delay_ns) then tree:add(F.delay_ns, z, UInt64.new(tonumber(kv.delay_ns))):set_generated() end
end

local function fate_text(kv)
    if not kv or not kv.fate then return "" end
    if kv.fate == "sent" then return " [sent]" end
    if kv.fate == "delivered" then
        return " [delivered to " .. (kv.to or "?") .. ((kv.converted and (", converted " .. kv.converted)) or "")
            .. ((kv.corrupted and (", corrupted: " .. kv.corrupted)) or "") .. "]"
    end
    if kv.fate == "dropped" then return " [dropped, to " .. (kv.to or "?") .. ": " .. (kv.reason or "?") .. "]" end
    return " [" .. kv.fate .. "]"
end

local function add_fields(tree, tvb, off, specs)
    local values = {}
    for _, spec in ipairs(specs) do
        local name, size = spec[1], spec[2]
        local r = tvb(off, size)
        if size > 4 then
            tree:add(spec[3], r)  -- bytes
        else
            tree:add_le(spec[3], r)
            values[name] = r:le_uint()
        end
        off = off + size
    end
    return off, values
end

local function dissect_payload(tree, pinfo, body, off, len, type_code, version)
    local m = message_of(type_code, version)
    local item = tree:add(F.payload, body(off, len))
    if not m then
        item:add_proto_expert_info(E.unknown_type, string.format("unknown message type 0x%02X", type_code))
        return nil
    end
    item:set_text(m.name .. " payload (" .. len .. " bytes, version " .. version .. " layout)")
    if m.text then
        -- Wireshark strings end at a NUL: a NUL inside the text is shown as \0
        local t = len > 0 and body:raw(off, len):gsub("\0", "\\0") or ""
        item:add(F.text, body(off, len), t)
        return { text = true }
    end
    local head = 0
    for _, spec in ipairs(m.fields) do head = head + spec[2] end
    local esize = 0
    for _, spec in ipairs(m.entries or {}) do esize = esize + spec[2] end
    local bad
    if m.entries then
        if len < head or (len - head) % esize ~= 0 then bad = m.name .. ": " .. len .. " bytes is not " .. head .. " + " .. esize .. " n" end
    elseif m.tail then
        if len < head then bad = m.name .. ": " .. len .. " bytes, the fixed fields are " .. head end
    elseif len ~= head then
        bad = m.name .. " v" .. version .. ": " .. len .. " bytes, the layout is " .. head
    end
    if bad then
        item:add_proto_expert_info(E.bad_payload, bad)
        return nil
    end
    local p, values = add_fields(item, body, off, m.fields)
    if m.tail and len > head then
        item:add(m.tail_field, body(p, len - head))
    end
    if m.entries then
        local count = (len - head) / esize
        for i = 0, count - 1 do
            local e = item:add(F.entry, body(p, esize))
            if m.name == "catchup" then
                e:set_text("member " .. i .. ": node " .. body(p, 2):le_uint() .. ", parent " .. body(p + 2, 2):le_uint())
            elseif m.name == "journal" then
                local k = body(p, 1):le_uint()
                e:set_text("entry " .. (values.first + i) .. ": " .. (JOURNAL_KINDS[k] or k) .. " at " .. body(p + 1, 4):le_uint() .. " ms")
            else
                e:set_text("entry " .. (values.first + i) .. ": node " .. body(p, 2):le_uint())
            end
            add_fields(e, body, p, m.entries)
            p = p + esize
        end
        if values.total and values.first + count > values.total then
            item:add_proto_expert_info(E.bad_payload, "state: entries past total")
        end
    end
    return values
end

function fl.dissector(tvb, pinfo, tree)
    pinfo.cols.protocol = "fleetloop"
    local text, kv = comment_fields()
    local n = tvb:len()
    if n == 0 then  -- an event marker from the exporter
        local t = tree:add(fl, tvb(0, 0), "fleetloop harness event")
        if text then t:add(F.event, tvb(0, 0), text):set_generated() end
        pinfo.cols.info = "event: " .. (text or "(no comment)")
        return 0
    end
    local raw = tvb:raw(0, n)
    local len = n
    if raw:byte(len) == 0 then len = len - 1 end  -- the delimiter, if the capture kept it
    local t = tree:add(fl, tvb(0, n), "fleetloop frame")
    t:add(F.line_len, tvb(0, n), len)
    if kv then add_comment_fields(t, tvb, kv) end
    local fate = fate_text(kv)
    if kv and kv.fate == "dropped" then t:add_proto_expert_info(E.dropped, "dropped: " .. (kv.reason or "?")) end
    if len == 0 then
        t:add_proto_expert_info(E.empty)
        pinfo.cols.info = "empty line" .. fate
        return n
    end
    if len > MAX_LINE then
        t:add_proto_expert_info(E.too_long, "line of " .. len .. " bytes, at most " .. MAX_LINE)
    end
    local un, why = unescape(raw:sub(1, len))
    if not un then
        t:add_proto_expert_info(E.bad_escape, why)
        pinfo.cols.info = "bad escape" .. fate
        return n
    end
    local bodystr
    bodystr, why = cobs_decode(un)
    if not bodystr then
        t:add_proto_expert_info(E.bad_cobs, why)
        pinfo.cols.info = "bad COBS" .. fate
        return n
    end
    local body = ByteArray.new(bodystr, true):tvb("fleetloop body")
    local bn = body:len()
    t:add(F.body, body(0, bn))
    if bn < HEADER_LEN + CRC_LEN then
        t:add_proto_expert_info(E.short, "body of " .. bn .. " bytes, at least " .. (HEADER_LEN + CRC_LEN))
        pinfo.cols.info = "short frame" .. fate
        return n
    end
    if bn > MAX_BODY then
        t:add_proto_expert_info(E.too_long, "body of " .. bn .. " bytes, at most " .. MAX_BODY)
    end

    -- header
    local vf = body(0, 1):uint()
    local version, flags = floor(vf / 16), vf % 16
    local type_code = body(1, 1):uint()
    local seq = body(2, 1):uint()
    local src = body(3, 2):le_uint()
    local dst = body(5, 2):le_uint()
    -- the Source and Destination columns: node ids and cluster addresses
    pinfo.cols.src = addr_name(src)
    pinfo.cols.dst = addr_name(dst)
    local h = t:add(body(0, HEADER_LEN), "Header")
    local vi = h:add(F.version, body(0, 1))
    h:add(F.flags, body(0, 1))
    h:add(F.flag_auth, body(0, 1))
    h:add(F.type, body(1, 1))
    h:add(F.type_name, body(1, 1), MESSAGES[type_code] and MESSAGES[type_code].name or string.format("type_0x%02x", type_code))
    h:add(F.seq, body(2, 1))
    local si = h:add_le(F.src, body(3, 2))
    local di = h:add_le(F.dst, body(5, 2))
    di:append_text(" (" .. addr_name(dst) .. ")")
    if dst == ADDR_BROADCAST then
        h:add(F.dst_broadcast, body(5, 2), true):set_generated()
    elseif dst >= ADDR_CLUSTER then
        h:add(F.dst_cluster, body(5, 2), dst - ADDR_CLUSTER):set_generated()
    else
        h:add(F.dst_node, body(5, 2), dst):set_generated()
    end

    -- crc: checked before anything inside is believed, but the fields are
    -- still shown on a bad one (that is when one wants to look at them)
    local stored = body(bn - CRC_LEN, CRC_LEN):le_uint()
    local computed = crc32(bodystr, bn - CRC_LEN)
    local ci = t:add_le(F.crc, body(bn - CRC_LEN, CRC_LEN))
    local good = stored == computed
    t:add(F.crc_computed, body(bn - CRC_LEN, CRC_LEN), computed):set_generated()
    t:add(F.crc_status, body(bn - CRC_LEN, CRC_LEN), good and "good" or "bad"):set_generated()
    if not good then
        ci:add_proto_expert_info(E.bad_crc, string.format("crc32 does not match the body: 0x%08X, computed 0x%08X", stored, computed))
    end

    local name = MESSAGES[type_code] and MESSAGES[type_code].name or string.format("type 0x%02x", type_code)
    local summary = string.format("%s %d -> %s seq=%d", name, src, addr_name(dst), seq)
    if version ~= VERSION_MIN then summary = summary .. " v" .. version end
    if src > 0xEFFF then si:add_proto_expert_info(E.bad_address) end
    if version < VERSION_MIN or version > VERSION_MAX then
        vi:add_proto_expert_info(E.bad_version, "version " .. version .. ", this dissector knows " .. VERSION_MIN .. ".." .. VERSION_MAX)
        pinfo.cols.info = summary .. " (unknown version " .. version .. ")" .. (good and "" or " [bad crc]") .. fate
        return n
    end

    -- auth trailer
    local pend = bn - CRC_LEN
    if flags % 2 == FLAG_AUTH then
        if pend - HEADER_LEN < AUTH_LEN then
            t:add_proto_expert_info(E.short, "signed, but no room for the 12-byte auth trailer")
            pinfo.cols.info = summary .. " (short auth trailer)" .. fate
            return n
        end
        pend = pend - AUTH_LEN
        local a = t:add(body(pend, AUTH_LEN), "Auth trailer")
        a:add_le(F.counter, body(pend, 4))
        a:add(F.tag, body(pend + 4, TAG_LEN))
    end
    local plen = pend - HEADER_LEN
    t:add(F.payload_len, body(HEADER_LEN, plen), plen):set_generated()
    local values = dissect_payload(t, pinfo, body, HEADER_LEN, plen, type_code, version)
    if values and values.term then summary = summary .. " term=" .. values.term end
    if values and values.role and ROLE_NAMES[values.role] then summary = summary .. " " .. ROLE_NAMES[values.role] end
    t:append_text(", " .. summary)
    pinfo.cols.info = summary .. (good and "" or " [bad crc]") .. fate
    return n
end

DissectorTable.get("wtap_encap"):add(wtap_encaps.USER0, fl)
