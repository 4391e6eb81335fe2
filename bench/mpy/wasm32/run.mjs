// Runs one heap bench script on a 32-bit MicroPython: the official
// WebAssembly port (@micropython/micropython-webassembly-pyscript, wasm32:
// 4-byte words, 16-byte GC blocks, as an RP2040), and prints one JSON line
// of heap figures. bench/mpy/wasm32_port.py starts it; docs/HEAP.md explains it.
//
//   node run.mjs --board DIR --heap BYTES --script FILE [--romfs IMG] [--lib DIR]... [--timeout-s N] [-- ARGS...]
//
// The board folder is copied to /board (the current directory), each --lib
// folder to /lib<i> (appended to sys.path), the script to /bench (imported
// as a module, sys.argv = [script, ...ARGS]). --romfs gives the port a ROM
// partition outside the heap, mounted at /rom first on sys.path, as a Pico
// built with ROMFS has (the heap is then BYTES for Python objects alone).
//
// The script defines setup(), chunk(peak) -> True when done, finish() ->
// dict; peak is the highest live heap sampled so far (chunk() may stop
// early, once more than that is allocated, for a sample there).
// This port does not collect inside a call from JS (it cannot scan the C
// stack: gc.collect() there frees nothing) and grows its heap instead of
// raising MemoryError. So the loop is driven from here: setup(), then
// chunk() until it says done, and after each call, at top level,
// gc.collect() and gc.mem_alloc(): the live bytes. The figures: the live
// bytes before and after setup(), the peak of all the samples,
// the GC area at the start and at the end (mem_info "GC:
// total": larger at the end means the heap grew past BYTES), and the
// script's finish() dict, all in one JSON line on stdout. Fragmentation and
// a fixed heap's MemoryError are not emulated.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "node:fs";
import path from "node:path";

function usage(msg) {
  console.error("run.mjs: " + msg);
  process.exit(2);
}

function parseArgs(argv) {
  const a = { libs: [], args: [], timeoutS: 600 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === "--") { a.args = argv.slice(i + 1); break; }
    const v = argv[++i];
    if (v === undefined) usage("missing value for " + k);
    if (k === "--board") a.board = v;
    else if (k === "--heap") a.heap = parseInt(v, 10);
    else if (k === "--script") a.script = v;
    else if (k === "--romfs") a.romfs = v;
    else if (k === "--lib") a.libs.push(v);
    else if (k === "--timeout-s") a.timeoutS = parseFloat(v);
    else usage("unknown option " + k);
  }
  if (!a.board || !a.script || !(a.heap > 0)) usage("--board, --heap and --script are required");
  return a;
}

const a = parseArgs(process.argv.slice(2));
const lines = [];  // everything the port prints, for mem_info and the error report
const mp = await loadMicroPython({
  heapsize: a.heap,
  romfs: a.romfs ? new Uint8Array(fs.readFileSync(a.romfs)) : undefined,
  stdout: (l) => lines.push(l),
  stderr: (l) => lines.push(l),
});

function copyInto(src, dst, skip) {
  mp.FS.mkdir(dst);
  for (const e of fs.readdirSync(src, { withFileTypes: true })) {
    const s = path.join(src, e.name);
    if (skip && skip(s)) continue;
    if (e.isDirectory()) copyInto(s, dst + "/" + e.name, null);
    else mp.FS.writeFile(dst + "/" + e.name, fs.readFileSync(s));
  }
}

function gcTotal() {
  const at = lines.length;
  mp.runPython("import micropython\nmicropython.mem_info()");
  const m = lines.slice(at).join("\n").match(/GC: total: (\d+)/);
  lines.length = at;
  if (!m) throw new Error("mem_info printed no 'GC: total'");
  return parseInt(m[1], 10);
}

// Python callables, called from here: no source compiled per sample
let collectFn = null;
let chunkFn = null;

// The live heap: collected twice, each a call from here (a collection keeps
// what a stale word on the C stack points at; the second frees most of it).
function live() {
  collectFn();
  return collectFn();
}

const deadline = Date.now() + a.timeoutS * 1000;
const name = path.basename(a.script).replace(/\.py$/, "");
try {
  // the ROM image is the port's, not a file of the board's: leave it out of the FS
  const rom = a.romfs ? path.resolve(a.romfs) : null;
  copyInto(a.board, "/board", (s) => rom !== null && rom.startsWith(path.resolve(s)));
  a.libs.forEach((d, i) => copyInto(d, "/lib" + i, null));
  mp.FS.mkdir("/bench");
  mp.FS.writeFile("/bench/" + name + ".py", fs.readFileSync(a.script));
  mp.FS.chdir("/board");
  const libs = a.libs.map((_, i) => "/lib" + i);
  mp.runPython("import gc\ndef _heap32_collect():\n    gc.collect()\n    return gc.mem_alloc()");
  collectFn = mp.globals.get("_heap32_collect");
  mp.runPython("import os, sys\nos.chdir('/board')\nsys.argv[:] = " + JSON.stringify([a.script, ...a.args]) +
               "\nsys.path.insert(0, '/board')\nsys.path.extend(" + JSON.stringify(["/bench", ...libs]) + ")");
  const total0 = gcTotal();
  let peak = live();
  const base = peak;
  mp.runPython("import " + name + " as _heap32_s\n_heap32_s.setup()");
  chunkFn = mp.globals.get("_heap32_s").chunk;
  const built = live();
  peak = Math.max(peak, built);
  let chunks = 0;
  for (;;) {
    const done = chunkFn(peak);
    chunks++;
    peak = Math.max(peak, live());
    if (done) break;
    if (Date.now() > deadline) throw new Error("timed out after " + a.timeoutS + " s (" + chunks + " chunks)");
  }
  const end = live();
  mp.runPython("import json\n_heap32_r = json.dumps(_heap32_s.finish())");
  const r = JSON.parse(mp.globals.get("_heap32_r"));
  const total1 = gcTotal();
  Object.assign(r, {
    runtime: "wasm32", heap_given: a.heap, gc_total_start: total0, gc_total_end: total1,
    grew: total1 > total0, live_peak: peak, live_end: end, live_before_setup: base, live_after_setup: built,
    lowest_free: total0 - peak, chunks,
  });
  process.stdout.write(JSON.stringify(r) + "\n");
} catch (e) {
  const msg = (e && e.message ? e.message : String(e)).split("\n").filter(Boolean).slice(-1)[0];
  process.stdout.write(JSON.stringify({ runtime: "wasm32", error: msg, output: lines.slice(-5) }) + "\n");
  process.exit(1);
}
