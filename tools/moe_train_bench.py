#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end training benchmark: an expert-parallel MoE language-model-like job, trained once
per mode (NCCL's Socket transport, rcmoe lossless, rcmoe with compressed all-to-all, ...) on N
ranks of one GPU, each rank its own "node" (NCCL_HOSTID), so that every byte between ranks
crosses the network transport under test. Reports step time, tokens/s and the loss curve of
every mode side by side.

The job is ordinary PyTorch: torch.distributed with the NCCL backend, all_to_all_single and
all_reduce. A mode changes nothing but the environment of the ranks (the plugin needs no code
change), as tools/rcmoe-run would set it:

  socket          NCCL's own Socket transport (NCCL_NET=Socket, NCCL_NET_PLUGIN=none): baseline
  rcmoe           the rcmoe plugin (NCCL_NET=RCMoE), everything lossless
  a2a8, a2a4, a2a2  the plugin with RCMOE_A2A_BITS=8 / 4 / 2: LSQ-compressed all-to-all
  MODE+lsq:B      also all-reduce through the plugin's collective side, LSQ at B bits
  MODE+pts:RHO    ... PTS at density RHO
  MODE+collnet    ... the collective side, lossless
A "+" mode sets RCMOE_AR_CODEC and RCMOE_AR_BITS or RCMOE_AR_DENSITY, and NCCL_COLLNET_ENABLE=1
unless the caller set NCCL_COLLNET_ENABLE (tools/rcmoe-run's rule); the other modes set
NCCL_COLLNET_ENABLE=0. Inherited RCMOE_A2A_BITS and RCMOE_AR_* are replaced by the mode's.

The model (per rank): a token embedding, L blocks of (LayerNorm, a causal token-shift mixer
Linear(2d -> d) over each token and its predecessor, LayerNorm, MoE layer), LayerNorm and an
output head. Each MoE layer routes every token to its top-2 of E experts (GELU MLPs d -> ffn ->
d, E/N per rank) with a load-balancing loss; per layer and step an int64 all_to_all_single of
the per-expert counts, then the token all_to_all_single (uneven splits, bf16 by default) to the
experts' ranks and back, and the same two exchanges in backward. The replicated part (embedding,
mixers, routers, norms, head) has its gradients averaged by one fp32 all_reduce per step. bf16
autocast, AdamW, fixed seeds. The data is synthetic but learnable: uniform random tokens whose
next-token targets are sampled from a fixed random teacher (a nonlinear function of the token
and its predecessor); the teacher's entropy is the loss floor, ln(vocab) the start. Every mode
sees the same batches.

Per mode it prints and writes (--out DIR): the median step time after --warmup steps, tokens/s
(all ranks' tokens per step / median step time), median milliseconds in all-to-all and in
all-reduce per step, the training loss every --log-every steps (mean over the window and all
ranks) of every mode side by side, the final held-out loss and its ratio to the baseline's
(socket, else the first lossless mode), the plugin's wire ratios (logical / wire bytes of
all-to-all and of all-reduce sends, from its RCMOE_STATS_FILE), a summary table, one JSON per
mode (moe_train_bench-<mode>.json), moe_train_bench-summary.json and .txt, and
moe_train_bench.png (loss vs step, tokens/s bars) when matplotlib imports.

--link-gbps G emulates a G Gb/s link per rank for every mode alike, as tools/rcmoe-run
--link-gbps does: the link shaper (tools/shaper/, librcmoe-shaper.so) first in LD_PRELOAD with
RCMOE_SHAPER_GBPS=G; each rank refuses to start unless the shaper is loaded in it at G.

A mode FAILS (a "FAIL" line, and exit status 1) when a rank exits non-zero, hangs (no step
finished in --hang-s seconds: the rank dumps its Python stacks and exits, and the driver kills
every rank of the mode), reports a non-finite loss, ends with replicated weights that differ
between ranks, when a plugin mode's counters show no all-to-all traffic (the plugin did not carry
the job), a compressed all-to-all mode's all-to-all wire ratio stays below 1.2, a "+" mode's
counters show no collective-side call, or with --max-loss-ratio R its final loss exceeds R x the
baseline's. Exit status 2: bad arguments, or the plugin or the shaper not found.

Usage (repository root, after `meson setup build && ninja -C build`; start MPS first with
nvidia-cuda-mps-control -d, the script does not):
  tools/moe_train_bench.py --nranks 4 --steps 300 --link-gbps 10 --out results/moeb-10g
  tools/moe_train_bench.py --modes socket,rcmoe,a2a8,a2a4,a2a8+lsq:8 --nranks 4
  tools/moe_train_bench.py --dry-run ...    # print each mode's environment and rank command
  tools/moe_train_bench.py --selftest       # the logic without torch and without a GPU
"""
import argparse
import collections
import glob
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

TOP_K = 2
TEACHER_RANK = 64       # the teacher's hidden width
TEACHER_STD = 3.0       # its logits' standard deviation (sets the loss floor)
PLUGIN_SO = "libnccl-net-rcmoe.so"
SHAPER_SO = "librcmoe-shaper.so"
MIN_A2A_RATIO = 1.2     # a compressed all-to-all mode below this did not compress

# ---- modes ------------------------------------------------------------------------------------

Mode = collections.namedtuple("Mode", "name net a2a_bits ar ar_density ar_bits")


def parse_mode(text):
    """A Mode from its spelling (see the docstring); ValueError with the reason otherwise."""
    t = text.strip().lower()
    base, plus, ar = t.partition("+")
    if base in ("socket", "none"):
        net, bits, name = "socket", 0, "socket"
    elif base in ("rcmoe", "lossless", "a2a0"):
        net, bits, name = "rcmoe", 0, "rcmoe"
    else:
        m = re.fullmatch(r"a2a([0-9]+)", base)
        if not m:
            raise ValueError(f"{text}: a mode is socket, rcmoe or a2aB (B = 8, 4, 2), "
                             f"optionally +lsq:B, +pts:RHO or +collnet")
        bits = int(m.group(1))
        if bits not in (8, 4, 2):
            raise ValueError(f"{text}: all-to-all bits must be 8, 4 or 2 (RCMOE_A2A_BITS)")
        net, name = "rcmoe", f"a2a{bits}"
    if not plus:
        return Mode(name, net, bits, None, 0.0, 0)
    if net == "socket":
        raise ValueError(f"{text}: the Socket baseline has no collective side (+{ar})")
    if ar == "collnet":
        return Mode(f"{name}+collnet", net, bits, "collnet", 0.0, 0)
    m = re.fullmatch(r"pts:([0-9.eE+-]+)", ar)
    if m:
        try:
            d = float(m.group(1))
        except ValueError:
            d = -1.0
        if not 0.0 < d <= 1.0:
            raise ValueError(f"{text}: PTS density must be in (0, 1]")
        return Mode(f"{name}+pts:{m.group(1)}", net, bits, "pts", d, 0)
    m = re.fullmatch(r"lsq:([0-9]+)", ar)
    if m:
        b = int(m.group(1))
        if b not in (8, 4, 2):
            raise ValueError(f"{text}: all-reduce LSQ bits must be 8, 4 or 2")
        return Mode(f"{name}+lsq:{b}", net, bits, "lsq", 0.0, b)
    raise ValueError(f"{text}: after '+' comes lsq:B, pts:RHO or collnet")


def parse_modes(text):
    modes = [parse_mode(t) for t in text.split(",") if t.strip()]
    if not modes:
        raise ValueError("no mode given")
    names = [m.name for m in modes]
    if len(set(names)) != len(names):
        raise ValueError(f"a mode is given twice: {text}")
    return modes


def mode_tag(mode):
    """The mode's name as it appears in file names."""
    return mode.name.replace(":", "-")


def lossless(mode):
    return mode.a2a_bits == 0 and mode.ar in (None, "collnet")


def counter_mode(mode):
    """The plugin's counter suffix for the collective side's calls of this mode
    (docs/counters.md), None when the mode does not use the collective side."""
    return {"collnet": "lossless", "pts": "PTS", "lsq": "LSQ"}.get(mode.ar)


SCRUB = ("NCCL_NET", "NCCL_NET_PLUGIN", "RCMOE_A2A_BITS", "RCMOE_AR_CODEC", "RCMOE_AR_DENSITY",
         "RCMOE_AR_BITS", "RCMOE_SHAPER_GBPS", "RCMOE_STATS_FILE")


def rank_env(base, mode, rank, plugin, shaper=None, gbps=0.0, stats_file=None,
             force_collnet=False):
    """The whole environment of one rank of one mode, from the caller's (base)."""
    env = {k: v for k, v in base.items() if k not in SCRUB}
    env.update({
        "NCCL_SOCKET_IFNAME": base.get("NCCL_SOCKET_IFNAME", "lo"),
        "NCCL_MNNVL_ENABLE": "0",
        "NCCL_HOSTID": f"rcmoe-moeb-h{rank}",  # a "node" per rank: all traffic crosses the net
        "PYTHONUNBUFFERED": "1",
    })
    if mode.net == "socket":
        env.update({"NCCL_NET": "Socket", "NCCL_NET_PLUGIN": "none",
                    "NCCL_COLLNET_ENABLE": "0"})
    else:
        env.update({
            "NCCL_NET_PLUGIN": os.path.abspath(plugin),
            "NCCL_NET": "RCMoE",  # a plugin that fails to load is an error, not a silent Socket
            "RCMOE_SOCKET_IFNAME": base.get("RCMOE_SOCKET_IFNAME", "lo"),
            "RCMOE_STATS_FORMAT": "json",
            "RCMOE_A2A_BITS": str(mode.a2a_bits),
        })
        if stats_file:
            env["RCMOE_STATS_FILE"] = stats_file
        if mode.ar is None:
            env.update({"NCCL_COLLNET_ENABLE": "0", "RCMOE_AR_DENSITY": "0",
                        "RCMOE_AR_BITS": "0"})
        else:
            env["NCCL_COLLNET_ENABLE"] = base.get("NCCL_COLLNET_ENABLE", "1")  # rcmoe-run's rule
            if mode.ar == "pts":
                env.update({"RCMOE_AR_CODEC": "pts", "RCMOE_AR_DENSITY": repr(mode.ar_density),
                            "RCMOE_AR_BITS": "0"})
            elif mode.ar == "lsq":
                env.update({"RCMOE_AR_CODEC": "lsq", "RCMOE_AR_BITS": str(mode.ar_bits),
                            "RCMOE_AR_DENSITY": "0"})
            else:
                env.update({"RCMOE_AR_CODEC": "auto", "RCMOE_AR_DENSITY": "0",
                            "RCMOE_AR_BITS": "0"})
            if force_collnet:
                env["NCCL_ALGO"] = "allreduce:CollNetChain"
    if gbps:
        if not shaper or re.search(r"[ :]", shaper):
            raise ValueError(f"{shaper}: LD_PRELOAD splits paths at spaces and colons")
        pre = base.get("LD_PRELOAD", "")
        env["LD_PRELOAD"] = shaper + (":" + pre if pre else "")
        env["RCMOE_SHAPER_GBPS"] = format_gbps(gbps)
    return env


def format_gbps(g):
    """RCMOE_SHAPER_GBPS's spelling of G: short, and read back as exactly G."""
    short = f"{g:g}"
    return short if float(short) == g else repr(float(g))


# ---- finding the plugin and the shaper ----------------------------------------------------------

def candidates(here, build, what):
    """Where to look, in order: --build's, the installed one (<prefix>/lib*/ beside
    <prefix>/bin/), the source tree's build/ then any build*/."""
    sub = {"plugin": "plugin", "shaper": os.path.join("tools", "shaper")}[what]
    so = {"plugin": PLUGIN_SO, "shaper": SHAPER_SO}[what]
    out = []
    if build:
        out.append(os.path.join(build, sub, so))
    up = os.path.dirname(here)
    for lib in ("lib", "lib64"):
        out.append(os.path.join(up, lib, so))
    out += sorted(glob.glob(os.path.join(up, "lib", "*", so)))
    out.append(os.path.join(up, "build", sub, so))
    out += sorted(glob.glob(os.path.join(up, "build*", sub, so)))
    return out


def find_lib(explicit, env_value, build, what):
    if explicit:
        return os.path.abspath(explicit)
    if env_value:
        return os.path.abspath(env_value)
    here = os.path.dirname(os.path.abspath(__file__))
    for c in candidates(here, build, what):
        if os.path.isfile(c):
            return os.path.abspath(c)
    return None


# ---- routing splits (pure Python: the rank code uses these, --selftest checks them) -----------

def send_splits_from_counts(counts, nranks):
    """Rows this rank sends to each rank: its per-expert token counts summed over each rank's
    experts (experts r*E/N .. (r+1)*E/N - 1 live on rank r)."""
    per = len(counts) // nranks
    return [sum(counts[r * per:(r + 1) * per]) for r in range(nranks)]


def recv_layout(recv_counts, nranks):
    """From the counts received (source s's count for this rank's local expert j at s*per + j):
    the rows received from each source, and the rows per local expert."""
    per = len(recv_counts) // nranks
    recv_splits = [sum(recv_counts[s * per:(s + 1) * per]) for s in range(nranks)]
    per_expert = [sum(recv_counts[s * per + j] for s in range(nranks)) for j in range(per)]
    return recv_splits, per_expert


def exchange_counts(counts_of_rank, nranks):
    """What the equal-split int64 all_to_all_single of the per-expert counts delivers: rank r
    receives, from each source s, s's counts for r's experts. (A model for --selftest.)"""
    per = len(counts_of_rank[0]) // nranks
    return [[c for s in range(nranks) for c in counts_of_rank[s][r * per:(r + 1) * per]]
            for r in range(nranks)]


def route_counts(expert_ids, experts):
    counts = [0] * experts
    for e in expert_ids:
        counts[e] += 1
    return counts


# ---- sizes ------------------------------------------------------------------------------------

def param_counts(vocab, d, ffn, layers, experts, nranks):
    """(replicated, expert parameters per rank, expert parameters in all) of the model."""
    ln = 2 * d
    block = ln + (2 * d * d + d) + ln + d * experts
    replicated = vocab * d + layers * block + ln + (d * vocab + vocab)
    expert = (d * ffn + ffn) + (ffn * d + d)
    per_rank = layers * (experts // nranks) * expert
    return replicated, per_rank, layers * experts * expert


def validate(a):
    """Problems with the arguments, as strings (empty when fine)."""
    bad = []
    if not 2 <= a.nranks <= 16:
        bad.append("--nranks must be 2..16")
    if a.experts < a.nranks or a.experts % a.nranks:
        bad.append(f"--experts {a.experts} must be a multiple of --nranks {a.nranks}")
    if a.experts < TOP_K:
        bad.append(f"--experts must be at least {TOP_K}")
    if not 1 <= a.layers <= 16:
        bad.append("--layers must be 1..16")
    if a.steps < 1 or a.log_every < 1 or a.warmup < 0:
        bad.append("--steps and --log-every >= 1, --warmup >= 0")
    if a.warmup >= a.steps:
        bad.append(f"--warmup {a.warmup} leaves no timed step of --steps {a.steps}")
    if a.batch < 1 or a.seq < 2 or a.d_model < 8 or a.ffn < 8 or a.vocab < 16:
        bad.append("--batch >= 1, --seq >= 2, --d-model and --ffn >= 8, --vocab >= 16")
    if a.link_gbps and not 0.001 <= a.link_gbps <= 100000:
        bad.append("--link-gbps: Gb/s per rank, 0.001..100000 (0: no emulation)")
    if a.hang_s < 10:
        bad.append("--hang-s must be at least 10")
    return bad


# ---- reports (pure Python) ---------------------------------------------------------------------

def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def baseline_of(results, order):
    """The run the others are compared with: socket, else the first lossless mode that ran."""
    cands = ["socket"] + [n for n in order if lossless(parse_mode(n))]
    for name in cands:
        r = results.get(name)
        if r and r.get("ms_per_step") and r.get("final_loss") is not None:
            return name
    return None


def summarize(results, order):
    base = baseline_of(results, order)
    b = results[base] if base else {}
    rows = []
    for name in order:
        r = results.get(name) or {}
        tps, fl = r.get("tokens_per_s"), r.get("final_loss")
        rows.append({
            "mode": name, "ok": bool(r.get("ok")),
            "ms_per_step": r.get("ms_per_step"), "tokens_per_s": tps,
            "speedup": (tps / b["tokens_per_s"]) if (tps and b.get("tokens_per_s")) else None,
            "a2a_ms": r.get("a2a_ms_per_step"), "allreduce_ms": r.get("allreduce_ms_per_step"),
            "final_loss": fl,
            "loss_ratio": (fl / b["final_loss"]) if (fl is not None and b.get("final_loss"))
            else None,
            "a2a_wire_ratio": r.get("a2a_wire_ratio"), "ar_wire_ratio": r.get("ar_wire_ratio"),
            "baseline": base,
        })
    return rows


COLUMNS = [  # (title, width, key, format)
    ("mode", 16, "mode", None), ("ms/step", 9, "ms_per_step", ".2f"),
    ("tokens/s", 10, "tokens_per_s", ".0f"), ("speedup", 8, "speedup", ".2f"),
    ("a2a ms", 8, "a2a_ms", ".2f"), ("allred ms", 10, "allreduce_ms", ".2f"),
    ("final loss", 11, "final_loss", ".4f"), ("loss ratio", 11, "loss_ratio", ".4f"),
    ("a2a wire x", 11, "a2a_wire_ratio", ".2f"), ("ar wire x", 10, "ar_wire_ratio", ".2f"),
    ("result", 7, "ok", None),
]


def summary_table(rows, header_lines):
    """nccl-tests-like plain text: '#' lines, then one right-aligned row per mode."""
    lines = [f"# {h}" if h else "#" for h in header_lines]
    lines.append("#" + " ".join(t.rjust(w) for t, w, _, _ in COLUMNS)[1:])
    for r in rows:
        cells = []
        for _, w, key, spec in COLUMNS:
            if key == "mode":
                cells.append(r["mode"].rjust(w))
            elif key == "ok":
                cells.append(("ok" if r["ok"] else "FAIL").rjust(w))
            elif key == "speedup":
                cells.append((fmt(r[key], spec) + ("x" if r[key] is not None else "")).rjust(w))
            else:
                cells.append(fmt(r[key], spec).rjust(w))
        lines.append(" ".join(cells))
    return lines


def loss_table(results, order, key="loss"):
    """Training loss of every mode side by side, one line per logged step."""
    steps = sorted({p[0] for name in order for p in (results.get(name) or {}).get(key, [])})
    w = max(12, max(len(n) for n in order) + 2)
    lines = ["#" + "step".rjust(6) + "".join(name.rjust(w) for name in order)]
    for s in steps:
        cells = []
        for name in order:
            d = {p[0]: p[1] for p in (results.get(name) or {}).get(key, [])}
            cells.append(fmt(d.get(s), ".4f").rjust(w))
        lines.append(str(s).rjust(7) + "".join(cells))
    return lines


def wire_ratios(rows):
    """Logical / wire bytes of this job's sends, from the plugin's finalize records: all-to-all
    (func Send or AlltoAll: PyTorch's all_to_all_single is grouped sends), all-reduce (the net
    side's and the collective side's), everything. None where nothing was counted."""
    acc = {"a2a": [0, 0], "allreduce": [0, 0], "all": [0, 0]}
    for row in rows:
        if row.get("event") != "finalize" or row.get("dir") != "send":
            continue
        lb, wb = int(row.get("logical_bytes", 0)), int(row.get("wire_bytes", 0))
        kinds = ["all"]
        if row.get("func") in ("Send", "AlltoAll"):
            kinds.append("a2a")
        elif row.get("func") == "AllReduce":
            kinds.append("allreduce")
        for k in kinds:
            acc[k][0] += lb
            acc[k][1] += wb
    out = {k: (v[0] / v[1] if v[1] else None) for k, v in acc.items()}
    out["a2a_logical_bytes"] = acc["a2a"][0]
    return out


def collnet_calls(rows, want):
    n = 0
    for row in rows:
        comm = str(row.get("comm", ""))
        if row.get("event") == "finalize" and comm.endswith(":collnet-" + want):
            n += int(row.get("messages", 0))
    return n


def read_jsonl(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass
    return rows


def mode_checks(mode, res, stats_rows, rank_problems):
    """The mode's FAIL reasons (strings)."""
    problems = list(rank_problems)
    if problems:
        return problems
    if res.get("replicas_identical") is False:
        problems.append("the replicated weights differ between ranks after training")
    if mode.net == "socket":
        return problems
    w = wire_ratios(stats_rows)
    if not w["a2a_logical_bytes"]:
        problems.append("the plugin's counters (RCMOE_STATS_FILE) show no all-to-all traffic: "
                        "the plugin did not carry the job")
    elif mode.a2a_bits and (w["a2a"] or 0) < MIN_A2A_RATIO:
        problems.append(f"all-to-all wire ratio {fmt(w['a2a'], '.2f')} < {MIN_A2A_RATIO}: "
                        f"RCMOE_A2A_BITS={mode.a2a_bits} did not compress the tokens")
    want = counter_mode(mode)
    if want and not collnet_calls(stats_rows, want):
        problems.append(f"the plugin's counters show no collnet-{want} call: NCCL ran the "
                        f"all-reduce on its own algorithms (NCCL_COLLNET_ENABLE, "
                        f"--force-collnet)")
    return problems


def plot(results, order, path, title, floor=None):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("moe_train_bench: matplotlib is not importable; no plot")
        return False
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in order:
        pts = (results.get(name) or {}).get("loss") or []
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name)
    if floor:
        ax.axhline(floor, color="grey", linestyle="--", linewidth=0.8, label="teacher entropy")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean of all ranks)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    names = [n for n in order if (results.get(n) or {}).get("tokens_per_s")]
    vals = [results[n]["tokens_per_s"] for n in names]
    bars = bx.bar(names, vals, color="tab:blue")
    for b_, v in zip(bars, vals):
        bx.annotate(f"{v:,.0f}", (b_.get_x() + b_.get_width() / 2, v), ha="center",
                    va="bottom", fontsize=8)
    bx.set_ylabel("tokens/s (all ranks)")
    bx.tick_params(axis="x", labelrotation=20)
    bx.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"moe_train_bench: plot {path}")
    return True


# ---- starting ranks ---------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dump_stacks(pid, path):
    gdb = shutil.which("gdb")
    if not gdb:
        return
    try:
        with open(path, "w") as f:
            subprocess.run([gdb, "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                           stdout=f, stderr=subprocess.STDOUT, timeout=60)
    except (OSError, subprocess.SubprocessError):
        pass


def run_ranks(argv_of, env_of, nranks, out_dir, tag, hang_s, beat_of, grace_s=60.0,
              stacks=True):
    """One process per rank (own session, output to OUT_DIR/TAG-rank<r>.log). A rank whose
    heartbeat file (beat_of(r), touched every step) is older than hang_s is hung; once a rank
    has failed the others get grace_s to end. Hung and left-over ranks get their native stacks
    dumped (gdb, when there) and are killed with their process group; every child is reaped,
    also when the driver itself is interrupted. Returns (codes, hung ranks, log paths): a code
    is None for a rank that was killed."""
    logs = [os.path.join(out_dir, f"{tag}-rank{r}.log") for r in range(nranks)]
    procs, codes, hung = [], [None] * nranks, []
    started = time.time()
    try:
        for r in range(nranks):
            with open(logs[r], "w") as log:
                procs.append(subprocess.Popen(argv_of(r), env=env_of(r), stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))
        fail_deadline = None
        while any(c is None for c in codes):
            now = time.time()
            for r, p in enumerate(procs):
                if codes[r] is None:
                    codes[r] = p.poll()
            if fail_deadline is None and any(c not in (None, 0) for c in codes):
                fail_deadline = now + grace_s
            if fail_deadline is not None and now > fail_deadline:
                break
            for r in range(nranks):
                if codes[r] is None:
                    try:
                        last = os.path.getmtime(beat_of(r))
                    except OSError:
                        last = started
                    if now - max(last, started) > hang_s:
                        hung.append(r)
            if hung:
                break
            time.sleep(0.2)
        for r, p in enumerate(procs):
            if codes[r] is None:
                codes[r] = p.poll()
        for r, p in enumerate(procs):
            if codes[r] is None and stacks:
                _dump_stacks(p.pid, os.path.join(out_dir, f"{tag}-rank{r}-stacks.txt"))
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
    return codes, hung, logs


# ---- one rank -----------------------------------------------------------------------------------

def touch(path):
    try:
        with open(path, "a"):
            os.utime(path, None)
    except OSError:
        pass


def shaper_loaded(gbps):
    try:
        with open("/proc/self/maps") as f:
            mapped = SHAPER_SO in f.read()
    except OSError:
        mapped = False
    try:
        same = float(os.environ.get("RCMOE_SHAPER_GBPS", "nan")) == float(gbps)
    except ValueError:
        same = False
    return mapped and same


def build_model(torch, dist, a, rank, dev, timer):
    """The model, nn.Modules all of it; its replicated and rank-local parameters."""
    nn, F = torch.nn, torch.nn.functional
    n = a.nranks
    per = a.experts // n
    tok_dtype = torch.bfloat16 if a.a2a_dtype == "bf16" else torch.float32

    class AllToAll(torch.autograd.Function):
        """all_to_all_single with uneven splits; the gradient goes back the same way."""

        @staticmethod
        def forward(ctx, x, out_splits, in_splits):
            ctx.splits = (out_splits, in_splits)
            out = x.new_empty((sum(out_splits),) + tuple(x.shape[1:]))
            with timer("a2a"):
                dist.all_to_all_single(out, x.contiguous(), out_splits, in_splits)
            return out

        @staticmethod
        def backward(ctx, g):
            out_splits, in_splits = ctx.splits
            gi = g.new_empty((sum(in_splits),) + tuple(g.shape[1:]))
            with timer("a2a"):
                dist.all_to_all_single(gi, g.contiguous(), in_splits, out_splits)
            return gi, None, None

    class MoE(nn.Module):
        def __init__(self):
            super().__init__()
            self.router = nn.Linear(a.d_model, a.experts, bias=False)
            self.experts = nn.ModuleList([
                nn.Sequential(nn.Linear(a.d_model, a.ffn), nn.GELU(),
                              nn.Linear(a.ffn, a.d_model)) for _ in range(per)])
            self.local_ids = None
            self.aux = None
            self.imbalance = []

        def forward(self, x):  # x: [T, d] fp32
            T = x.shape[0]
            probs = self.router(x).float().softmax(dim=-1)
            w, e = probs.topk(TOP_K, dim=-1)
            w = w / w.sum(dim=-1, keepdim=True)
            flat_e = e.reshape(-1)
            order = torch.argsort(flat_e, stable=True)  # grouped by expert, so by rank
            token_of = order // TOP_K
            counts = torch.bincount(flat_e, minlength=a.experts)
            self.aux = a.experts * ((counts.float() / (T * TOP_K)) * probs.mean(dim=0)).sum()
            recv_counts = torch.empty_like(counts)
            dist.all_to_all_single(recv_counts, counts)  # int64, E/N per peer
            counts_l, recv_l = counts.tolist(), recv_counts.tolist()
            send_splits = send_splits_from_counts(counts_l, n)
            recv_splits, per_expert = recv_layout(recv_l, n)
            mean = sum(send_splits) / n
            self.imbalance.append(max(send_splits) / mean if mean else 1.0)
            recv = AllToAll.apply(x[token_of].to(tok_dtype), recv_splits, send_splits)
            if self.local_ids is None:
                self.local_ids = torch.arange(per, device=x.device).repeat(n)
            expert_of_row = torch.repeat_interleave(
                self.local_ids, torch.tensor(recv_l, device=x.device), output_size=sum(recv_l))
            perm = torch.argsort(expert_of_row, stable=True)
            chunks = torch.split(recv[perm], per_expert)
            y = torch.cat([ex(c) for ex, c in zip(self.experts, chunks)])
            y = y[torch.argsort(perm)]
            back = AllToAll.apply(y.to(tok_dtype), send_splits, recv_splits)
            wt = w.reshape(-1)[order].unsqueeze(1)
            return torch.zeros_like(x).index_add(0, token_of, back.float() * wt)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(a.d_model)
            self.mix = nn.Linear(2 * a.d_model, a.d_model)  # the token and its predecessor
            self.ln2 = nn.LayerNorm(a.d_model)
            self.moe = MoE()

        def forward(self, x, b, s):
            h = self.ln1(x).view(b, s, -1)
            prev = F.pad(h[:, :-1], (0, 0, 1, 0))
            x = x + self.mix(torch.cat([h, prev], dim=-1)).reshape(b * s, -1).float()
            return x + self.moe(self.ln2(x).float())

    class MoELM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(a.vocab, a.d_model)
            self.blocks = nn.ModuleList([Block() for _ in range(a.layers)])
            self.ln_f = nn.LayerNorm(a.d_model)
            self.head = nn.Linear(a.d_model, a.vocab)

        def forward(self, tokens):
            b, s = tokens.shape
            x = self.emb(tokens).float().reshape(b * s, -1)
            for blk in self.blocks:
                x = blk(x, b, s)
            aux = sum(blk.moe.aux for blk in self.blocks) / len(self.blocks)
            return self.head(self.ln_f(x)), aux

    torch.manual_seed(a.seed)  # the same model on every rank ...
    model = MoELM().to(dev)
    torch.manual_seed(a.seed * 7919 + 1000 + rank)  # ... then this rank's own experts
    expert_params = []
    for blk in model.blocks:
        for ex in blk.moe.experts:
            for m in ex:
                if isinstance(m, nn.Linear):
                    m.reset_parameters()
            expert_params += list(ex.parameters())
    ids = {id(p) for p in expert_params}
    replicated = [p for p in model.parameters() if id(p) not in ids]
    return model, replicated, expert_params


class Teacher:
    """A fixed random next-token distribution: softmax(s * tanh(A[prev] + B[cur]) @ W)."""

    def __init__(self, torch, a, dev):
        g = torch.Generator().manual_seed(a.seed * 31 + 17)
        self.torch = torch
        self.A = torch.randn(a.vocab, TEACHER_RANK, generator=g).to(dev)
        self.B = torch.randn(a.vocab, TEACHER_RANK, generator=g).to(dev)
        self.W = (torch.randn(TEACHER_RANK, a.vocab, generator=g) / TEACHER_RANK ** 0.5).to(dev)
        self.scale = 1.0
        cal = torch.randint(0, a.vocab, (2, 4096), generator=g).to(dev)
        with torch.no_grad():
            self.scale = TEACHER_STD / float(self.logits(cal[0], cal[1]).std())

    def logits(self, prev, cur):
        t = self.torch
        return (t.tanh(self.A[prev] + self.B[cur]) @ self.W) * self.scale


def make_batch(torch, teacher, a, rank, step, dev):
    """Rank `rank`'s batch of step `step` (the same in every mode): input tokens [B, S] and the
    teacher's sampled next tokens [B, S], and the teacher's mean entropy over the batch."""
    g = torch.Generator(device=dev).manual_seed(a.seed * 1_000_003 + rank * 100_003 + step)
    toks = torch.randint(0, a.vocab, (a.batch, a.seq + 1), device=dev, generator=g)
    prev, cur = toks[:, :-1], toks[:, 1:]
    with torch.no_grad():
        lg = teacher.logits(prev, cur).float()
        u = torch.rand(lg.shape, device=dev, generator=g).clamp_(1e-20, 1.0)
        tgt = (lg - torch.log(-torch.log(u))).argmax(dim=-1)  # Gumbel-max: a sample
        lp = lg.log_softmax(dim=-1)
        ent = float(-(lp.exp() * lp).sum(dim=-1).mean())
    return cur.contiguous(), tgt, ent


def nccl_version(torch):
    try:
        v = torch.cuda.nccl.version()
    except Exception:  # noqa: BLE001 (only a label in the JSON)
        return None
    return ".".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)


class CommTimer:
    """CUDA events around the collectives of a step; milliseconds per kind at the step's end."""

    def __init__(self, torch):
        self.torch = torch
        self.pairs = collections.defaultdict(list)

    def __call__(self, kind):
        timer = self

        class Ctx:
            def __enter__(self):
                self.e0 = timer.torch.cuda.Event(enable_timing=True)
                self.e1 = timer.torch.cuda.Event(enable_timing=True)
                self.e0.record()

            def __exit__(self, *exc):
                self.e1.record()
                timer.pairs[kind].append((self.e0, self.e1))
                return False
        return Ctx()

    def take(self):
        out = {k: sum(e0.elapsed_time(e1) for e0, e1 in v) for k, v in self.pairs.items()}
        self.pairs.clear()
        return out


def rank_main(a):
    import faulthandler
    touch(a.heartbeat)
    faulthandler.dump_traceback_later(a.hang_s, exit=True)  # re-armed every step
    if a.link_gbps and not shaper_loaded(a.link_gbps):
        print(f"--link-gbps {a.link_gbps:g}: the shaper is not loaded in this rank at that rate "
              f"(LD_PRELOAD={os.environ.get('LD_PRELOAD')}, RCMOE_SHAPER_GBPS="
              f"{os.environ.get('RCMOE_SHAPER_GBPS')}): refusing to run unshaped", flush=True)
        return 3
    import torch
    import torch.distributed as dist

    n, me = a.nranks, a.rank
    torch.cuda.set_device(0)
    dev = torch.device("cuda", 0)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{a.port}", rank=me,
                            world_size=n, device_id=dev)
    touch(a.heartbeat)
    res = {"rank": me, "mode": a.mode, "failures": []}
    try:
        timer = CommTimer(torch)
        model, replicated, local = build_model(torch, dist, a, me, dev, timer)
        teacher = Teacher(torch, a, dev)
        opt = torch.optim.AdamW(replicated + local, lr=a.lr, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / max(1, a.lr_warmup)))
        held_in, held_tgt, held_ent = make_batch(torch, teacher, a, me, 10_000_000, dev)
        F = torch.nn.functional

        def evaluate():
            model.eval()
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                logits, _ = model(held_in)
            model.train()
            return float(F.cross_entropy(logits.float(), held_tgt.reshape(-1)))

        def gather(vals):  # float64: never a compressible datatype
            t = torch.tensor(vals, dtype=torch.float64, device=dev)
            out = torch.empty(n * t.numel(), dtype=torch.float64, device=dev)
            dist.all_gather_into_tensor(out, t)
            return out.view(n, -1).tolist()

        step_ms, a2a_ms, ar_ms, window, log = [], [], [], [], []
        flat_numel = sum(p.numel() for p in replicated)
        for step in range(a.steps):
            inp, tgt, _ = make_batch(torch, teacher, a, me, step, dev)  # the "data loader"
            torch.cuda.synchronize()
            touch(a.heartbeat)
            faulthandler.dump_traceback_later(a.hang_s, exit=True)
            t0 = time.perf_counter()
            # ---- an ordinary expert-parallel training step ----
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits, aux = model(inp)
            loss = F.cross_entropy(logits.float(), tgt.reshape(-1))
            (loss + a.aux_coef * aux).backward()
            grads = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p))
                               .reshape(-1) for p in replicated])
            with timer("allreduce"):
                dist.all_reduce(grads)
            grads.div_(n)
            off = 0
            for p in replicated:
                p.grad = grads[off:off + p.numel()].view_as(p)
                off += p.numel()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            # ----
            torch.cuda.synchronize()
            step_ms.append((time.perf_counter() - t0) * 1e3)
            c = timer.take()
            a2a_ms.append(c.get("a2a", 0.0))
            ar_ms.append(c.get("allreduce", 0.0))
            window.append(float(loss))
            if (step + 1) % a.log_every == 0 or step == 0 or step == a.steps - 1:
                ev = evaluate()
                rows = gather([statistics.fmean(window), ev])
                timer.pairs.clear()  # the evaluation's all-to-alls are not a step's
                window = []
                tr = statistics.fmean(r[0] for r in rows)
                ev = statistics.fmean(r[1] for r in rows)
                log.append((step + 1, tr, ev))
                if me == 0:
                    print(f"[{a.mode}] step {step + 1} loss {tr:.4f} held-out {ev:.4f} "
                          f"{statistics.median(step_ms[-a.log_every:]):.1f} ms/step", flush=True)
                if not (math.isfinite(tr) and math.isfinite(ev)):  # the same on every rank
                    res["failures"].append(f"non-finite loss at step {step + 1}")
                    break
        # the replicated weights must be bit-identical on every rank
        h = hashlib.sha256()
        for p in replicated:
            h.update(p.detach().float().cpu().numpy().tobytes())
        sig = int.from_bytes(h.digest()[:7], "little")
        sigs = torch.empty(n, dtype=torch.int64, device=dev)
        dist.all_gather_into_tensor(sigs, torch.tensor([sig], dtype=torch.int64, device=dev))
        same = len(set(sigs.tolist())) == 1
        ents = gather([held_ent])
        timed = slice(min(a.warmup, len(step_ms) - 1), None)
        imb = [x for blk in model.blocks for x in blk.moe.imbalance]
        med = statistics.median(step_ms[timed])
        res.update({
            "steps_done": len(step_ms), "step_ms": step_ms,
            "ms_per_step": med,
            "tokens_per_s": n * a.batch * a.seq / (med / 1e3),
            "a2a_ms_per_step": statistics.median(a2a_ms[timed]),
            "allreduce_ms_per_step": statistics.median(ar_ms[timed]),
            "allreduce_bytes": 4 * flat_numel,
            "loss": [(s, tr) for s, tr, _ in log], "held_out": [(s, ev) for s, _, ev in log],
            "final_loss": log[-1][2] if log else None,
            "teacher_entropy": statistics.fmean(r[0] for r in ents),
            "ln_vocab": math.log(a.vocab),
            "replicas_identical": same,
            "split_max_over_mean_median": statistics.median(imb) if imb else None,
            "split_max_over_mean_max": max(imb) if imb else None,
            "params_replicated": flat_numel,
            "params_expert_per_rank": sum(p.numel() for p in local),
            "torch": torch.__version__,
            "nccl": nccl_version(torch),
            "gpu": torch.cuda.get_device_name(0),
        })
    except Exception:
        # the reason first, then out at once: the peers blocked in a collective see this rank's
        # connections close instead of waiting for their own watchdogs
        res["failures"].append("exception: " + traceback.format_exc())
        print(res["failures"][-1], flush=True)
        with open(a.result, "w") as f:
            json.dump(res, f)
        os._exit(1)
    faulthandler.cancel_dump_traceback_later()
    faulthandler.dump_traceback_later(max(60, a.hang_s), exit=True)
    try:
        dist.destroy_process_group()  # finalizes the plugin: its counters reach the stats file
    except Exception:
        res["failures"].append("destroy_process_group: " + traceback.format_exc())
    with open(a.result, "w") as f:
        json.dump(res, f)
    faulthandler.cancel_dump_traceback_later()
    return 0


# ---- the driver ---------------------------------------------------------------------------------

def rank_argv(a, r, mode, port, result, beat):
    argv = [sys.executable, os.path.abspath(__file__), "--rank", str(r), "--port", str(port),
            "--mode", mode.name, "--result", result, "--heartbeat", beat]
    for opt in ("nranks", "steps", "warmup", "log_every", "layers", "experts", "d_model", "ffn",
                "vocab", "batch", "seq", "lr", "lr_warmup", "aux_coef", "seed", "hang_s"):
        argv += ["--" + opt.replace("_", "-"), repr(getattr(a, opt))]
    argv += ["--a2a-dtype", a.a2a_dtype]
    if a.link_gbps:
        argv += ["--link-gbps", repr(a.link_gbps)]
    return argv


def run_mode(a, mode, plugin, shaper):
    out = os.path.join(a.out, f"n{a.nranks}-{mode_tag(mode)}")
    os.makedirs(out, exist_ok=True)
    port = free_port()
    stats = [os.path.join(out, f"stats-r{r}.jsonl") for r in range(a.nranks)]
    results = [os.path.join(out, f"result-r{r}.json") for r in range(a.nranks)]
    beats = [os.path.join(out, f"heartbeat-r{r}") for r in range(a.nranks)]
    for p in stats + results + beats:
        if os.path.exists(p):
            os.remove(p)
    link = f", emulated link {a.link_gbps:g} Gb/s per rank" if a.link_gbps else ""
    print(f"== moe_train_bench: mode {mode.name}, {a.nranks} ranks, {a.steps} steps{link}; "
          f"logs in {out}", flush=True)
    t0 = time.time()
    codes, hung, logs = run_ranks(
        lambda r: rank_argv(a, r, mode, port, results[r], beats[r]),
        lambda r: rank_env(os.environ, mode, r, plugin, shaper, a.link_gbps, stats[r],
                           a.force_collnet),
        a.nranks, out, "rank", a.hang_s + 30, lambda r: beats[r])
    rank_problems, res = [], {}
    for r, code in enumerate(codes):
        if r in hung:
            rank_problems.append(f"rank {r}: hung (no step in {a.hang_s + 30} s), killed; "
                                 f"log {logs[r]}")
        elif code is None:
            rank_problems.append(f"rank {r}: still running after another rank failed, killed")
        elif code != 0 or not os.path.exists(results[r]):
            rank_problems.append(f"rank {r}: exit status {code} (log {logs[r]})")
            if os.path.exists(results[r]):  # the reason, when the rank could write it
                with open(results[r]) as f:
                    rank_problems += [f"rank {r}: {x.strip().splitlines()[-1]}"
                                      for x in json.load(f).get("failures", []) if x.strip()]
        else:
            with open(results[r]) as f:
                rr = json.load(f)
            rank_problems += [f"rank {r}: {x}" for x in rr.get("failures", [])]
            if r == 0:
                res = rr
    rows = []
    for p in stats:
        rows += read_jsonl(p)
    if mode.net != "socket":
        w = wire_ratios(rows)
        res.update({"a2a_wire_ratio": w["a2a"], "ar_wire_ratio": w["allreduce"],
                    "all_wire_ratio": w["all"]})
        want = counter_mode(mode)
        if want:
            res["collnet_calls"] = collnet_calls(rows, want)
    problems = mode_checks(mode, res, rows, rank_problems)
    res.update({"mode": mode.name, "ok": not problems, "problems": problems,
                "wall_s": time.time() - t0, "link_gbps": a.link_gbps or None,
                "nranks": a.nranks,
                "env": {k: v for k, v in rank_env(os.environ, mode, 0, plugin, shaper,
                                                   a.link_gbps, stats[0], a.force_collnet).items()
                        if k.startswith(("NCCL_", "RCMOE_")) or k == "LD_PRELOAD"}})
    with open(os.path.join(a.out, f"moe_train_bench-{mode_tag(mode)}.json"), "w") as f:
        json.dump(res, f, indent=1)
    for p in problems:
        print(f"FAIL {mode.name}: {p}", flush=True)
    print(f"moe_train_bench mode={mode.name}: {'PASS' if not problems else 'FAIL'}", flush=True)
    return res


def header_lines(a, res_any):
    rep, per_rank, _ = param_counts(a.vocab, a.d_model, a.ffn, a.layers, a.experts, a.nranks)
    link = (f"emulated link {a.link_gbps:g} Gb/s per rank (tools/shaper, every mode alike)"
            if a.link_gbps else "no link emulation (loopback TCP)")
    lines = [
        f"moe_train_bench: {a.nranks} ranks, {a.layers} MoE layers, {a.experts} experts top-"
        f"{TOP_K}, d {a.d_model}, ffn {a.ffn}, vocab {a.vocab}, {a.a2a_dtype} all-to-all, "
        f"{a.batch}x{a.seq} tokens per rank and step",
        f"{rep / 1e6:.2f} M replicated parameters (one fp32 all_reduce of "
        f"{4 * rep / 2 ** 20:.1f} MiB per step), {per_rank / 1e6:.2f} M expert parameters per "
        f"rank; {a.steps} steps, timed after {a.warmup}",
        link,
    ]
    ent = res_any.get("teacher_entropy") if res_any else None
    if ent is not None:
        lines.append(f"loss: ln(vocab) {math.log(a.vocab):.3f} at the start, teacher entropy "
                     f"{ent:.3f} is the floor")
    lines.append("speedup = tokens/s / baseline's; loss ratio = final held-out loss / "
                 "baseline's; wire x = logical / wire bytes sent (plugin counters)")
    return lines


def selftest():
    fails = []

    def expect(cond, what):
        if not cond:
            fails.append(what)

    # arguments and modes
    a = build_parser().parse_args([])
    expect(not validate(a) and a.modes == "socket,rcmoe,a2a8,a2a4", f"defaults {validate(a)}")
    modes = parse_modes(a.modes)
    expect([(m.net, m.a2a_bits, m.ar) for m in modes] ==
           [("socket", 0, None), ("rcmoe", 0, None), ("rcmoe", 8, None), ("rcmoe", 4, None)],
           f"default modes {modes}")
    m = parse_mode("A2A8+lsq:8")
    expect(m.name == "a2a8+lsq:8" and m.ar == "lsq" and m.ar_bits == 8, f"{m}")
    m = parse_mode("rcmoe+pts:0.01")
    expect(m.ar == "pts" and m.ar_density == 0.01 and lossless(m) is False, f"{m}")
    expect(lossless(parse_mode("rcmoe+collnet")) and lossless(parse_mode("none")), "lossless")
    for bad in ("a2a3", "a2a", "socket+lsq:8", "rcmoe+pts:0", "rcmoe+pts:2", "rcmoe+lsq:3",
                "rcmoe+foo", "tcp"):
        try:
            parse_mode(bad)
            fails.append(f"mode {bad} accepted")
        except ValueError:
            pass
    for bad in ("", "rcmoe,rcmoe", "a2a8,A2A8"):
        try:
            parse_modes(bad)
            fails.append(f"modes '{bad}' accepted")
        except ValueError:
            pass
    for argv, want in ((["--nranks", "3"], "multiple"), (["--nranks", "1", "--experts", "4"],
                       "2..16"), (["--steps", "5", "--warmup", "5"], "warmup"),
                       (["--link-gbps", "1e6"], "link")):
        probs = validate(build_parser().parse_args(argv))
        expect(any(want in p for p in probs), f"{argv}: {probs}")
    a = build_parser().parse_args(["--nranks", "4", "--link-gbps", "10", "--steps", "50",
                                   "--modes", "socket,a2a4+lsq:8", "--out", "/tmp/x"])
    expect(not validate(a) and a.link_gbps == 10.0 and a.out == "/tmp/x", "parsed options")
    argv = rank_argv(a, 2, parse_mode("a2a4"), 1234, "/r.json", "/hb")
    back = build_parser().parse_args(argv[2:])
    expect(back.rank == 2 and back.steps == 50 and back.link_gbps == 10.0 and back.lr == a.lr
           and back.mode == "a2a4" and back.heartbeat == "/hb", f"rank argv {argv}")

    # environments
    base = {"PATH": "/bin", "RCMOE_A2A_BITS": "2", "RCMOE_AR_DENSITY": "0.5",
            "LD_PRELOAD": "/x.so", "NCCL_NET": "IB"}
    e = rank_env(base, parse_mode("socket"), 1, "/p/" + PLUGIN_SO)
    expect(e["NCCL_NET"] == "Socket" and e["NCCL_NET_PLUGIN"] == "none" and
           "RCMOE_A2A_BITS" not in e and "RCMOE_AR_DENSITY" not in e and
           e["NCCL_HOSTID"] == "rcmoe-moeb-h1" and e["NCCL_COLLNET_ENABLE"] == "0" and
           e["LD_PRELOAD"] == "/x.so" and e["PATH"] == "/bin", f"socket env {e}")
    e = rank_env(base, parse_mode("a2a4"), 0, "/p/" + PLUGIN_SO, stats_file="/s")
    expect(e["NCCL_NET"] == "RCMoE" and e["RCMOE_A2A_BITS"] == "4" and
           e["RCMOE_AR_DENSITY"] == "0" and e["NCCL_COLLNET_ENABLE"] == "0" and
           e["RCMOE_STATS_FILE"] == "/s" and e["RCMOE_STATS_FORMAT"] == "json",
           f"a2a4 env {e}")
    e = rank_env(base, parse_mode("a2a8+lsq:8"), 0, "/p/" + PLUGIN_SO, force_collnet=True)
    expect(e["RCMOE_AR_CODEC"] == "lsq" and e["RCMOE_AR_BITS"] == "8" and
           e["NCCL_COLLNET_ENABLE"] == "1" and e["NCCL_ALGO"] == "allreduce:CollNetChain",
           f"+lsq env {e}")
    e = rank_env(dict(base, NCCL_COLLNET_ENABLE="0"), parse_mode("rcmoe+pts:0.01"), 0, "/p")
    expect(e["NCCL_COLLNET_ENABLE"] == "0" and e["RCMOE_AR_DENSITY"] == "0.01" and
           "NCCL_ALGO" not in e, "a user's NCCL_COLLNET_ENABLE is kept (rcmoe-run's rule)")
    e = rank_env(base, parse_mode("rcmoe"), 3, "/p", "/abs/" + SHAPER_SO, 10.0)
    expect(e["LD_PRELOAD"] == f"/abs/{SHAPER_SO}:/x.so" and e["RCMOE_SHAPER_GBPS"] == "10",
           f"link env {e}")
    e = rank_env({}, parse_mode("socket"), 0, "/p", "/abs/" + SHAPER_SO, 2.5)
    expect(e["LD_PRELOAD"] == f"/abs/{SHAPER_SO}" and e["RCMOE_SHAPER_GBPS"] == "2.5",
           f"link env, socket {e}")
    for g in (10.0, 2.5, 0.001, 10.123456789, 1e-3 / 3, 100000.0):
        expect(float(format_gbps(g)) == g, f"RCMOE_SHAPER_GBPS for {g!r}: {format_gbps(g)}")
    try:
        rank_env({}, parse_mode("rcmoe"), 0, "/p", "/a b/" + SHAPER_SO, 10)
        fails.append("a shaper path with a space accepted")
    except ValueError:
        pass
    expect("RCMOE_SHAPER_GBPS" not in rank_env(dict(base, RCMOE_SHAPER_GBPS="5"),
                                               parse_mode("rcmoe"), 0, "/p"),
           "an inherited shaper rate without --link-gbps")

    # splits: random routings on 4 ranks, 8 experts; the counts exchange modelled
    rng = random.Random(5)
    for nranks, experts in ((2, 4), (4, 8), (4, 16), (8, 8)):
        per = experts // nranks
        tokens = 300
        counts = []
        for r in range(nranks):
            ids = []
            for _ in range(tokens):  # top-2 of distinct experts, skewed
                e1 = min(experts - 1, int(rng.expovariate(3.0 / experts)))
                e2 = (e1 + 1 + rng.randrange(experts - 1)) % experts
                ids += [e1, e2]
            counts.append(route_counts(ids, experts))
        got = exchange_counts(counts, nranks)
        sends = [send_splits_from_counts(c, nranks) for c in counts]
        for r in range(nranks):
            recv_splits, per_expert = recv_layout(got[r], nranks)
            expect(sum(sends[r]) == TOP_K * tokens, "send splits sum to top-k x tokens")
            expect(recv_splits == [sends[s][r] for s in range(nranks)],
                   f"n{nranks} e{experts}: rank {r} receives what the others send")
            expect(per_expert == [sum(counts[s][r * per + j] for s in range(nranks))
                                  for j in range(per)], "rows per local expert")
            expect(sum(per_expert) == sum(recv_splits), "every row has an expert")
        expect(len({x for s in sends for x in s}) > 1, f"n{nranks}: the splits are uneven")
    expect(send_splits_from_counts([1, 2, 3, 4, 5, 6, 7, 8], 4) == [3, 7, 11, 15], "splits")
    expect(recv_layout([1, 2, 3, 4], 2) == ([3, 7], [4, 6]), "layout")

    # sizes
    rep, per_rank, total = param_counts(2048, 512, 1024, 2, 8, 4)
    expect(rep == 2048 * 512 + 2 * (4 * 512 + 2 * 512 * 512 + 512 + 512 * 8) + 2 * 512 +
           512 * 2048 + 2048 and per_rank * 4 == total and total == 2 * 8 * (2 * 512 * 1024 +
                                                                            1024 + 512),
           f"parameter counts {rep} {per_rank} {total}")

    # counters
    rows = [
        {"event": "finalize", "comm": "0x1", "dir": "send", "func": "Send",
         "dtype": "ncclBfloat16", "messages": 4, "logical_bytes": 4000, "wire_bytes": 1000},
        {"event": "finalize", "comm": "0x1", "dir": "send", "func": "Send", "dtype": "ncclInt64",
         "messages": 4, "logical_bytes": 100, "wire_bytes": 100},
        {"event": "finalize", "comm": "0x1", "dir": "recv", "func": "Recv",
         "dtype": "ncclBfloat16", "messages": 4, "logical_bytes": 4000, "wire_bytes": 1000},
        {"event": "finalize", "comm": "0x1", "dir": "send", "func": "AllReduce",
         "dtype": "ncclFloat32", "messages": 2, "logical_bytes": 800, "wire_bytes": 800},
        {"event": "finalize", "comm": "0x1:collnet-LSQ", "dir": "send", "func": "AllReduce",
         "dtype": "ncclFloat32", "messages": 3, "logical_bytes": 1200, "wire_bytes": 300},
        {"event": "periodic", "comm": "0x1", "dir": "send", "func": "Send",
         "dtype": "ncclBfloat16", "messages": 1, "logical_bytes": 999, "wire_bytes": 1},
    ]
    w = wire_ratios(rows)
    expect(abs(w["a2a"] - 4100 / 1100) < 1e-9 and abs(w["allreduce"] - 2000 / 1100) < 1e-9 and
           abs(w["all"] - 6100 / 2200) < 1e-9, f"wire ratios {w}")
    expect(wire_ratios([])["a2a"] is None, "no counters")
    expect(collnet_calls(rows, "LSQ") == 3 and collnet_calls(rows, "PTS") == 0, "collnet calls")
    ok_res = {"replicas_identical": True}
    expect(mode_checks(parse_mode("a2a8+lsq:8"), ok_res, rows, []) == [], "checks pass")
    expect(mode_checks(parse_mode("socket"), ok_res, [], []) == [], "socket has no counters")
    expect(any("no all-to-all" in p for p in mode_checks(parse_mode("rcmoe"), ok_res, [], [])),
           "a plugin mode without counters fails")
    flat = [dict(rows[0], wire_bytes=4000)]
    expect(any("did not compress" in p for p in mode_checks(parse_mode("a2a4"), ok_res, flat,
                                                             [])), "uncompressed a2a4 fails")
    expect(mode_checks(parse_mode("rcmoe"), ok_res, flat, []) == [], "lossless ratio 1 is fine")
    expect(any("collnet-PTS" in p for p in mode_checks(parse_mode("a2a8+pts:0.01"), ok_res,
                                                       rows, [])), "no collnet call fails")
    expect(any("differ" in p for p in mode_checks(parse_mode("socket"),
                                                  {"replicas_identical": False}, [], [])),
           "differing replicas fail")

    # reports
    res = {
        "socket": {"ok": True, "ms_per_step": 200.0, "tokens_per_s": 81920.0,
                   "a2a_ms_per_step": 150.0, "allreduce_ms_per_step": 30.0, "final_loss": 3.5,
                   "loss": [(1, 7.6), (20, 5.0), (40, 4.0)]},
        "a2a4": {"ok": True, "ms_per_step": 80.0, "tokens_per_s": 204800.0,
                 "a2a_ms_per_step": 40.0, "allreduce_ms_per_step": 30.0, "final_loss": 3.57,
                 "a2a_wire_ratio": 3.76, "ar_wire_ratio": 1.0,
                 "loss": [(1, 7.6), (20, 5.1), (40, 4.1)]},
        "a2a8": {"ok": False, "loss": [(1, 7.6)]},
    }
    order = ["socket", "rcmoe", "a2a8", "a2a4"]
    srows = summarize(res, order)
    expect(srows[0]["baseline"] == "socket" and abs(srows[3]["speedup"] - 2.5) < 1e-9 and
           abs(srows[3]["loss_ratio"] - 1.02) < 1e-9 and srows[1]["speedup"] is None,
           f"summary {srows}")
    table = summary_table(srows, ["moe_train_bench: test", "", "third"])
    expect(table[0] == "# moe_train_bench: test" and table[1] == "#", f"header {table[:3]}")
    data = table[4:]
    expect(len(data) == 4 and len({len(x) for x in table[3:]}) == 1,
           f"columns aligned {table}")
    expect(data[0].split() == ["socket", "200.00", "81920", "1.00x", "150.00", "30.00",
                               "3.5000", "1.0000", "-", "-", "ok"], f"socket row {data[0]}")
    expect(data[3].split()[3] == "2.50x" and data[3].split()[8] == "3.76", f"a2a4 row {data[3]}")
    expect(data[1].split()[-1] == "FAIL" and data[2].split()[-1] == "FAIL" and
           data[1].split()[1] == "-", f"missing and failed modes {data[1:3]}")
    expect(baseline_of({"rcmoe": {"ms_per_step": 1.0, "final_loss": 2.0}},
                       ["a2a8", "rcmoe"]) == "rcmoe", "baseline without socket")
    expect(baseline_of({"a2a8": {"ms_per_step": 1.0, "final_loss": 2.0}}, ["a2a8"]) is None,
           "a compressed mode is never the baseline")
    lt = loss_table(res, order)
    expect(len(lt) == 4 and lt[1].split() == ["1", "7.6000", "-", "7.6000", "7.6000"] and
           lt[3].split()[2:] == ["-", "-", "4.1000"], f"loss table {lt}")
    expect(fmt(float("nan"), ".2f") == "-" and fmt(None, ".2f") == "-", "fmt")

    # the rank launcher: a failing rank ends the others after the grace; a silent one is hung
    with tempfile.TemporaryDirectory(prefix="moeb-selftest-") as d:
        py = sys.executable
        prog = {0: "import sys; sys.exit(0)", 1: "import sys; sys.exit(7)",
                2: "import time; time.sleep(60)"}
        t0 = time.time()
        codes, hung, logs = run_ranks(lambda r: [py, "-c", prog[r]], lambda r: dict(os.environ),
                                      3, d, "t", 30, lambda r: os.path.join(d, f"hb{r}"),
                                      grace_s=1.0, stacks=False)
        expect(codes[:2] == [0, 7] and codes[2] is None and not hung and time.time() - t0 < 20,
               f"failed rank: codes {codes}, hung {hung}")
        prog = {0: "import time; time.sleep(60)", 1: "import sys; sys.exit(0)"}
        t0 = time.time()
        codes, hung, logs = run_ranks(lambda r: [py, "-c", prog[r]], lambda r: dict(os.environ),
                                      2, d, "h", 1.0, lambda r: os.path.join(d, f"hb{r}"),
                                      stacks=False)
        expect(hung == [0] and codes == [None, 0] and time.time() - t0 < 20,
               f"hung rank: codes {codes}, hung {hung}")
        beat = os.path.join(d, "beat")
        prog = {0: f"import os, time\nfor _ in range(15):\n    os.utime({beat!r})\n"
                   f"    time.sleep(0.2)"}
        touch(beat)
        codes, hung, logs = run_ranks(lambda r: [py, "-c", prog[r]], lambda r: dict(os.environ),
                                      1, d, "b", 1.0, lambda r: beat, stacks=False)
        expect(codes == [0] and not hung, f"a beating rank is not hung: {codes} {hung}")

    for f in fails:
        print(f"selftest FAIL: {f}")
    print(f"moe_train_bench selftest: {'OK' if not fails else f'{len(fails)} FAILED'}")
    return 0 if not fails else 1


def build_parser():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Modes: socket, rcmoe, a2a8, a2a4, a2a2; each plugin mode may add +lsq:B, "
               "+pts:RHO or +collnet (all-reduce through the plugin's collective side).")
    ap.add_argument("--modes", default="socket,rcmoe,a2a8,a2a4",
                    help="comma list (default socket,rcmoe,a2a8,a2a4)")
    ap.add_argument("--nranks", type=int, default=4, help="ranks, all on GPU 0 (default 4)")
    ap.add_argument("--steps", type=int, default=300, help="training steps per mode")
    ap.add_argument("--warmup", type=int, default=10, help="first steps left out of the timing")
    ap.add_argument("--log-every", type=int, default=20, help="loss every K steps")
    ap.add_argument("--link-gbps", type=float, default=0.0,
                    help="emulated link per rank, every mode alike (tools/shaper); 0: none")
    ap.add_argument("--out", default=None, help="logs, JSON, table and plot [a temp dir]")
    ap.add_argument("--build", default=None, help="build directory holding the plugin/shaper")
    ap.add_argument("--plugin", help=f"{PLUGIN_SO} (default $RCMOE_PLUGIN, --build's, the "
                                     f"installed one, then the source tree's build*/)")
    ap.add_argument("--shaper", help=f"{SHAPER_SO} (default found like the plugin)")
    ap.add_argument("--layers", type=int, default=2, help="MoE blocks (default 2)")
    ap.add_argument("--experts", type=int, default=8, help="experts per layer, E/N per rank")
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--ffn", type=int, default=1024, help="experts' hidden width")
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=16, help="sequences per rank and step")
    ap.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    ap.add_argument("--a2a-dtype", default="bf16", choices=("bf16", "fp32"),
                    help="datatype of the dispatched tokens")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--lr-warmup", type=int, default=20, help="steps of linear lr warm-up")
    ap.add_argument("--aux-coef", type=float, default=0.01, help="load-balancing loss weight")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--force-collnet", action="store_true",
                    help="NCCL_ALGO=allreduce:CollNetChain in '+' modes")
    ap.add_argument("--max-loss-ratio", type=float, default=None,
                    help="fail a mode whose final loss is above R x the baseline's")
    ap.add_argument("--hang-s", type=int, default=600,
                    help="a rank that finishes no step in this many seconds is hung")
    ap.add_argument("--dry-run", action="store_true",
                    help="print each mode's environment and rank 0's command; run nothing")
    ap.add_argument("--selftest", action="store_true", help="check the logic; no GPU, no torch")
    for hidden, kind in (("--rank", int), ("--port", int), ("--mode", str), ("--result", str),
                         ("--heartbeat", str)):
        ap.add_argument(hidden, type=kind, default=None, help=argparse.SUPPRESS)
    return ap


def main():
    a = build_parser().parse_args()
    if a.selftest:
        return selftest()
    if a.rank is not None:
        return rank_main(a)
    bad = validate(a)
    try:
        modes = parse_modes(a.modes)
    except ValueError as e:
        bad.append(f"--modes: {e}")
        modes = []
    plugin = find_lib(a.plugin, os.environ.get("RCMOE_PLUGIN"), a.build, "plugin")
    if any(m.net != "socket" for m in modes) and not (plugin and os.path.isfile(plugin)):
        where = plugin or "looked in --build, <prefix>/lib*, build*/plugin"
        bad.append(f"{PLUGIN_SO} not found ({where}): build it (meson setup build && ninja -C "
                   f"build) or pass --plugin / --build")
    shaper = find_lib(a.shaper, None, a.build, "shaper") if a.link_gbps else None
    if a.link_gbps and not (shaper and os.path.isfile(shaper)):
        where = shaper or "looked in --build, <prefix>/lib*, build*/tools/shaper"
        bad.append(f"--link-gbps: {SHAPER_SO} not found ({where}): ninja -C BUILD "
                   f"tools/shaper/{SHAPER_SO}, or --shaper")
    elif shaper and re.search(r"[ :]", shaper):
        bad.append(f"{shaper}: LD_PRELOAD splits paths at spaces and colons")
    if bad:
        for b in bad:
            print(f"moe_train_bench: {b}", file=sys.stderr)
        return 2
    a.out = os.path.abspath(a.out or tempfile.mkdtemp(prefix="rcmoe-moeb-"))
    if a.dry_run:
        for m in modes:
            e = rank_env(os.environ, m, 0, plugin, shaper, a.link_gbps,
                         os.path.join(a.out, "stats-r0.jsonl"), a.force_collnet)
            print(f"== {m.name}: rank 0 of {a.nranks}")
            for k in sorted(e):
                if k.startswith(("NCCL_", "RCMOE_")) or k == "LD_PRELOAD":
                    print(f"  {k}={e[k]}")
            print("  " + " ".join(rank_argv(a, 0, m, 0, "RESULT", "HEARTBEAT")))
        return 0
    os.makedirs(a.out, exist_ok=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    results, order = {}, [m.name for m in modes]
    try:
        for m in modes:
            results[m.name] = run_mode(a, m, plugin, shaper)
    except KeyboardInterrupt:
        print("moe_train_bench: interrupted; the ranks started were killed", file=sys.stderr)
        return 130
    any_res = next((r for r in results.values() if r.get("teacher_entropy") is not None), {})
    head = header_lines(a, any_res)
    rows = summarize(results, order)
    if a.max_loss_ratio:
        for r in rows:
            if r["loss_ratio"] is not None and r["loss_ratio"] > a.max_loss_ratio:
                r["ok"] = results[r["mode"]]["ok"] = False
                print(f"FAIL {r['mode']}: final loss {r['loss_ratio']:.4f} x the baseline's "
                      f"(--max-loss-ratio {a.max_loss_ratio})")
    text = [f"# training loss (mean of the last {a.log_every} steps, all ranks)"]
    text += loss_table(results, order)
    text += [""] + summary_table(rows, head)
    print("\n" + "\n".join(text))
    with open(os.path.join(a.out, "moe_train_bench-summary.txt"), "w") as f:
        f.write("\n".join(text) + "\n")
    with open(os.path.join(a.out, "moe_train_bench-summary.json"), "w") as f:
        json.dump({"header": head, "rows": rows, "nranks": a.nranks, "steps": a.steps,
                   "link_gbps": a.link_gbps or None, "modes": order,
                   "loss": {n: (results.get(n) or {}).get("loss") for n in order},
                   "args": {k: v for k, v in vars(a).items()
                            if k not in ("rank", "port", "mode", "result", "heartbeat")}},
                  f, indent=1)
    link = f", emulated {a.link_gbps:g} Gb/s per rank" if a.link_gbps else ""
    plot(results, order, os.path.join(a.out, "moe_train_bench.png"),
         f"MoE training, {a.nranks} ranks{link}", any_res.get("teacher_entropy"))
    failed = [r["mode"] for r in rows if not r["ok"]]
    print(f"moe_train_bench: {len(rows) - len(failed)} passed, {len(failed)} failed"
          f"{' (' + ', '.join(failed) + ')' if failed else ''}; results in {a.out}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
