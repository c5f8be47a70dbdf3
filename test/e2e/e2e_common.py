# SPDX-License-Identifier: Apache-2.0
"""Shared by test/e2e/torch_allreduce.py and test/e2e/dp_train.py: the modes and the environment
of each, starting N rank processes on one GPU with a deadline, and reading what NCCL and the
plugin report (rank 0's NCCL_TUNING lines, the plugin's RCMOE_STATS_FILE records).

Nothing here imports torch: the drivers run, and their --selftest checks this, without it.
"""
import argparse
import collections
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time

# Modes, as the scripts' --modes lists spell them:
#   none | socket    NCCL's own Socket transport (NCCL_NET=Socket, NCCL_NET_PLUGIN=none)
#   rcmoe            the plugin's net side, all-reduce on NCCL's ring, lossless
#   collnet          the plugin's collective side, lossless (NCCL_COLLNET_ENABLE=1)
#   pts:RHO          the collective side with PTS at density RHO (RCMOE_AR_DENSITY)
#   lsq:B            the collective side with the LSQ two-step at B bits (RCMOE_AR_BITS)
Mode = collections.namedtuple("Mode", "name kind density bits")


def parse_mode(text):
    """A Mode from its spelling; ValueError with the reason otherwise."""
    t = text.strip().lower()
    if t in ("none", "socket"):
        return Mode("none", "socket", 0.0, 0)
    if t in ("rcmoe", "lossless"):
        return Mode("rcmoe", "rcmoe", 0.0, 0)
    if t == "collnet":
        return Mode("collnet", "collnet", 0.0, 0)
    m = re.fullmatch(r"pts:([0-9.eE+-]+)", t)
    if m:
        try:
            d = float(m.group(1))
        except ValueError:
            d = -1.0
        if not 0.0 < d <= 1.0:
            raise ValueError(f"{text}: PTS density must be in (0, 1]")
        return Mode(f"pts:{m.group(1)}", "pts", d, 0)
    m = re.fullmatch(r"lsq:([0-9]+)", t)
    if m:
        b = int(m.group(1))
        if b not in (8, 4, 2):
            raise ValueError(f"{text}: LSQ bits must be 8, 4 or 2")
        return Mode(f"lsq:{b}", "lsq", 0.0, b)
    raise ValueError(f"{text}: a mode is none, rcmoe, collnet, pts:RHO or lsq:B")


def parse_modes(text):
    modes = [parse_mode(t) for t in text.split(",") if t.strip()]
    if not modes:
        raise ValueError("no mode given")
    names = [m.name for m in modes]
    if len(set(names)) != len(names):
        raise ValueError(f"a mode is given twice: {text}")
    return modes


def add_rank_args(ap):
    """The options by which a driver starts one of its ranks (internal: hidden from --help)."""
    ap.add_argument("--rank", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)


def counter_mode(mode):
    """The plugin's counter name for the collective side's calls of this mode (docs/counters.md),
    None when the mode does not use the collective side."""
    return {"collnet": "lossless", "pts": "PTS", "lsq": "LSQ"}.get(mode.kind)


def mode_env(mode, plugin, force_collnet=False, stats_file=None):
    """Environment variables of every rank of a mode (NCCL_HOSTID comes per rank)."""
    env = {
        "NCCL_SOCKET_IFNAME": os.environ.get("NCCL_SOCKET_IFNAME", "lo"),
        "NCCL_MNNVL_ENABLE": "0",
    }
    if mode.kind == "socket":
        env.update({"NCCL_NET": "Socket", "NCCL_NET_PLUGIN": "none",
                    "NCCL_COLLNET_ENABLE": "0"})
        return env
    env.update({
        "NCCL_NET_PLUGIN": os.path.abspath(plugin),
        "NCCL_NET": "RCMoE",  # a plugin that fails to load is an error, not a silent Socket
        "RCMOE_SOCKET_IFNAME": os.environ.get("RCMOE_SOCKET_IFNAME", "lo"),
        "RCMOE_STATS_FORMAT": "json",
    })
    if stats_file:
        env["RCMOE_STATS_FILE"] = stats_file
    if mode.kind == "rcmoe":
        env.update({"NCCL_COLLNET_ENABLE": "0", "RCMOE_AR_DENSITY": "0", "RCMOE_AR_BITS": "0"})
        return env
    env["NCCL_COLLNET_ENABLE"] = "1"
    if mode.kind == "pts":
        env.update({"RCMOE_AR_CODEC": "pts", "RCMOE_AR_DENSITY": repr(mode.density),
                    "RCMOE_AR_BITS": "0"})
    elif mode.kind == "lsq":
        env.update({"RCMOE_AR_CODEC": "lsq", "RCMOE_AR_BITS": str(mode.bits),
                    "RCMOE_AR_DENSITY": "0"})
    else:
        env.update({"RCMOE_AR_CODEC": "auto", "RCMOE_AR_DENSITY": "0", "RCMOE_AR_BITS": "0"})
    if force_collnet:
        # Until the plugin's tuner steers all-reduce there by itself; it makes every (type, op)
        # that the collective side declines fail, so only all-reduces of fp32/fp16/bf16 sum.
        env["NCCL_ALGO"] = "allreduce:CollNetChain"
    return env


def nccl_debug_env():
    """NCCL's INFO log with the algorithm of each collective (rank 0's NCCL_TUNING lines), the
    CollNet connection lines and the plugin's own lines, unless the user chose NCCL_DEBUG."""
    if "NCCL_DEBUG" in os.environ:
        return {}
    return {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": "INIT,NET,TUNING"}


def find_plugin(arg, build):
    if arg:
        return os.path.abspath(arg)
    return os.path.abspath(os.path.join(build, "plugin", "libnccl-net-rcmoe.so"))


def find_shaper(arg, build):
    if arg:
        return os.path.abspath(arg)
    return os.path.abspath(os.path.join(build, "tools", "shaper", "librcmoe-shaper.so"))


def link_env(shaper, gbps):
    """What tools/rcmoe-run --link-gbps sets: the shaper first in LD_PRELOAD, and its rate."""
    if not gbps:
        return {}
    if re.search(r"[ :]", shaper):
        raise ValueError(f"{shaper}: LD_PRELOAD splits paths at spaces and colons")
    pre = os.environ.get("LD_PRELOAD", "")
    return {"LD_PRELOAD": shaper + (":" + pre if pre else ""), "RCMOE_SHAPER_GBPS": str(gbps)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dump_stacks(pid, path):
    for dbg in ("gdb", "cuda-gdb"):
        if shutil.which(dbg):
            try:
                with open(path, "w") as f:
                    subprocess.run([dbg, "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                                   stdout=f, stderr=subprocess.STDOUT, timeout=120)
            except (OSError, subprocess.SubprocessError):
                pass
            return


def run_ranks(argv_of_rank, env_of_rank, nranks, out_dir, tag, timeout_s):
    """Start one process per rank (argv_of_rank(r), env_of_rank(r)), stdout and stderr to
    OUT_DIR/TAG-rank<r>.log; wait at most timeout_s for all. A rank still running then is hung:
    its native stacks are dumped (with gdb, when there) and every rank is killed.
    Returns (list of exit codes or None for hung ranks, list of log paths)."""
    logs = [os.path.join(out_dir, f"{tag}-rank{r}.log") for r in range(nranks)]
    procs = []
    for r in range(nranks):
        with open(logs[r], "w") as log:
            procs.append(subprocess.Popen(argv_of_rank(r), env=env_of_rank(r), stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.time() + timeout_s
    codes = [None] * nranks
    while time.time() < deadline and any(c is None for c in codes):
        for r, p in enumerate(procs):
            if codes[r] is None:
                codes[r] = p.poll()
        # one rank failing leaves the others waiting in NCCL: give them a short grace
        if any(c not in (None, 0) for c in codes):
            deadline = min(deadline, time.time() + 90)
        time.sleep(0.2)
    for r, p in enumerate(procs):
        if codes[r] is None:
            _dump_stacks(p.pid, os.path.join(out_dir, f"{tag}-rank{r}-stacks.txt"))
    for r, p in enumerate(procs):
        if codes[r] is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
    return codes, logs


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


def collnet_counters(rows):
    """{mode: {dtype: [messages, logical_bytes, wire_bytes]}} from the collective side's finalize
    records ("comm": "0x<id>:collnet-<mode>")."""
    out = {}
    for row in rows:
        comm = str(row.get("comm", ""))
        if row.get("event") != "finalize" or ":collnet-" not in comm:
            continue
        mode = comm.split(":collnet-", 1)[1]
        cell = out.setdefault(mode, {}).setdefault(row.get("dtype", "?"), [0, 0, 0])
        cell[0] += int(row.get("messages", 0))
        cell[1] += int(row.get("logical_bytes", 0))
        cell[2] += int(row.get("wire_bytes", 0))
    return out


def wire_ratio(rows, func="AllReduce"):
    """Logical over wire bytes of what this process sent for `func`: the net side's send
    counters plus the collective side's, finalize records only. None without any."""
    logical = wire = 0
    for row in rows:
        if row.get("event") != "finalize" or row.get("dir") != "send" or row.get("func") != func:
            continue
        logical += int(row.get("logical_bytes", 0))
        wire += int(row.get("wire_bytes", 0))
    return (logical / wire) if wire else None


ALGO_RE = re.compile(r"AllReduce: (\d+) Bytes -> Algo (\S+) proto (\S+)")


def algo_tally(text):
    """{bytes: Counter("ALGO/PROTO")} from NCCL's NCCL_TUNING lines (rank 0 logs them)."""
    out = {}
    for m in ALGO_RE.finditer(text):
        out.setdefault(int(m.group(1)), collections.Counter())[f"{m.group(2)}/{m.group(3)}"] += 1
    return out


# ---- rounding, for the bounds' self-tests without torch ----

def round_f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def round_bf16(x):
    u = struct.unpack("I", struct.pack("f", x))[0]
    if (u & 0x7FFFFFFF) > 0x7F800000:
        return x
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("f", struct.pack("I", u))[0]


# Relative rounding of one step in each type (half an ulp, with room), as test/coll uses.
EPS = {"float32": 1.2e-7, "bfloat16": 7.9e-3, "float16": 9.8e-4}
