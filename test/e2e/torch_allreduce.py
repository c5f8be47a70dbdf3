#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""All-reduce through the plugin's collective side, end to end with PyTorch: N ranks on one GPU,
each its own "node" (NCCL_HOSTID), no change to the job's code (plain dist.all_reduce).

Per mode (--modes, default pts:0.01,lsq:8,collnet; each runs as its own job):
  - dist.all_reduce of fp32 and bf16 tensors of 1001, 1,000,003 and 4,194,311 elements (odd
    sizes; the small one below RCMOE_AR_MIN_BYTES, so summed losslessly or by NCCL itself):
    * every rank holds the same bits (SHA-256 of each rank's result, compared through
      all_gather_object);
    * every element is within the bound below of the exact sum, computed in fp64 on each rank
      from all ranks' inputs (each input comes from a per-(rank, case) seed, so every rank can
      make everyone's);
    * compressed modes: the largest size is not exact (it was compressed);
  - lossless collective side (collnet): integer-valued fp32 and bf16 all-reduce bit-exact;
  - int64 all_reduce bit-exact in every mode (the collective side declines it, so NCCL's ring
    carries it; skipped with --force-collnet, which leaves NCCL no algorithm for it);
  - the plugin's counters (RCMOE_STATS_FILE) show collective-side calls of the mode
    (comm "...:collnet-PTS" / "collnet-LSQ" / "collnet-lossless") for ncclFloat32 and
    ncclBfloat16, with fewer wire than logical bytes when compressing.
NCCL's algorithm per all-reduce size is printed from rank 0's log (NCCL_DEBUG_SUBSYS=TUNING).

THE BOUNDS (the CPU tests' forms, test/coll/test_coll_codec.c, docs/compression.md). N ranks,
x_r rank r's input, eps the relative rounding of one step in the type (fp32 1.2e-7, bf16 7.9e-3).
NCCL's CollNetChain hands the plugin slices of the tensor (a "call" of roughly chunk x channels
bytes, whose last one also covers leftovers of earlier inputs of the same rank in NCCL's
buffers), so the per-call quantities are bounded by M_r = the largest |x| rank r has put into a
float all-reduce so far in the job (inputs are uniform in [-s_r, s_r], s_r = 1 + r/2):
  - PTS at density rho: a call's threshold is tau_r = ||x_r||_1 / (rho n) <= M_r / rho, and each
    element is off by at most the sum over ranks of tau_r, so
      |y_i - sum_r x_r,i| <= 1.01 T + (|sum_r x_r,i| + T) (eps + 1e-6 N),  T = sum_r M_r / rho;
    (also reported: the share of elements above the whole tensor's own sum_r ||x_r||_1/(rho n))
  - LSQ two-step at b bits, L = 2^(b-1) - 1: rank r's block scale s_r <= M_r / L and the summed
    block's s_sum <= (S + S/L) / L with S = sum_r M_r, so
      |y_i - sum_r x_r,i| <= 1.01 (S/L + (S + S/L)/L) + (|sum_r x_r,i| + S) eps (N + 3);
  - lossless (the collective side, NCCL's own algorithms, and calls under RCMOE_AR_MIN_BYTES):
      |y_i - sum_r x_r,i| <= eps (N + 1) sum_r |x_r,i|   (any order of the additions).

Usage (from the repository root, MPS running; test/e2e/ar-checks.sh does this for 2 and 4 ranks):
  test/e2e/torch_allreduce.py --build build --nranks 4 [--modes pts:0.01,lsq:8,collnet]
      [--force-collnet] [--out DIR] [--hang-s 300]
  test/e2e/torch_allreduce.py --selftest     # no GPU, no torch: modes, environment, bounds
Prints one PASS/FAIL line per mode, then "torch_allreduce: N passed, N failed"; exit status 0
only if every mode passed on every rank.
"""
import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_common as ec  # noqa: E402

SIZES = (1001, 1_000_003, 4_194_311)
DTYPES = ("float32", "bfloat16")
COUNTER_DTYPES = {"float32": "ncclFloat32", "bfloat16": "ncclBfloat16"}


# ---- the bounds: arithmetic only, so that they take floats (self-test) or tensors (ranks) ----

def scale_of(rank):
    return 1.0 + 0.5 * rank


def pts_bound(exact_abs, max_abs, density, dtype, nranks):
    """Per element, PTS at `density`: max_abs[r] = M_r (see the module's text)."""
    t = sum(max_abs) / density
    return 1.01 * t + (exact_abs + t) * (ec.EPS[dtype] + 1e-6 * nranks) + 1e-30


def lsq_bound(exact_abs, max_abs, bits, dtype, nranks):
    """Per element, the LSQ two-step at `bits`."""
    levels = (1 << (bits - 1)) - 1
    s = sum(max_abs)
    return 1.01 * (s / levels + (s + s / levels) / levels) + \
        (exact_abs + s) * ec.EPS[dtype] * (nranks + 3) + 1e-30


def lossless_bound(sum_abs, dtype, nranks):
    """Per element, any exact-arithmetic sum rounded once per addition."""
    return ec.EPS[dtype] * (nranks + 1) * sum_abs + 1e-30


def mode_bound(mode, exact_abs, sum_abs, max_abs, dtype, nranks):
    if mode.kind == "pts":
        return pts_bound(exact_abs, max_abs, mode.density, dtype, nranks)
    if mode.kind == "lsq":
        return lsq_bound(exact_abs, max_abs, mode.bits, dtype, nranks)
    return lossless_bound(sum_abs, dtype, nranks)


# ---- one rank ----

def make_input(torch, seed, rank, case, count, dtype):
    g = torch.Generator().manual_seed(seed * 1_000_003 + case * 7919 + rank)
    v = (torch.rand(count, generator=g, dtype=torch.float64) * 2 - 1) * scale_of(rank)
    return v.to(getattr(torch, dtype))


def int_pattern(torch, rank, count, dtype):
    i = torch.arange(count, dtype=torch.int64)
    # |values| <= 15: sums over 16 ranks stay integers exact in bf16 (<= 256)
    return (((i * 7 + rank * 13) % 31) - 15).to(dtype)


def rank_main(args):
    import faulthandler
    faulthandler.dump_traceback_later(args.hang_s, exit=False)
    import torch
    import torch.distributed as dist

    mode = ec.parse_mode(args.mode)
    n, me = args.nranks, args.rank
    res = {"rank": me, "mode": mode.name, "failures": [], "cases": []}

    def fail(what):
        res["failures"].append(what)
        print(f"[rank {me}] FAIL {what}", flush=True)

    torch.cuda.set_device(0)
    dev = torch.device("cuda", 0)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{args.port}", rank=me,
                            world_size=n, device_id=dev)
    min_bytes = int(os.environ.get("RCMOE_AR_MIN_BYTES", "65536"))
    max_abs = [0.0] * n  # M_r: the largest |x| each rank has all-reduced so far
    try:
        case = 0
        for dtype in DTYPES:
            tdt = getattr(torch, dtype)
            esize = torch.tensor([], dtype=tdt).element_size()
            for count in SIZES:
                case += 1
                inputs = [make_input(torch, args.seed, r, case, count, dtype) for r in range(n)]
                for r in range(n):
                    max_abs[r] = max(max_abs[r], float(inputs[r].double().abs().max()))
                x = inputs[me].to(dev)
                dist.all_reduce(x)
                got = x.cpu()
                digest = hashlib.sha256(got.view(torch.uint8).numpy().tobytes()).hexdigest()
                digests = [None] * n
                dist.all_gather_object(digests, digest)
                what = f"all_reduce {dtype} n={count}"
                if any(d != digests[0] for d in digests):
                    fail(f"{what}: ranks hold different bits (SHA-256 {digests})")
                exact = torch.zeros(count, dtype=torch.float64)
                sum_abs = torch.zeros(count, dtype=torch.float64)
                for inp in inputs:
                    exact += inp.double()
                    sum_abs += inp.double().abs()
                err = (got.double() - exact).abs()
                bound = mode_bound(mode, exact.abs(), sum_abs, max_abs, dtype, n)
                out = ~(err <= bound)  # NaN counts as outside
                nout = int(out.sum())
                worst = float((err / bound).max())
                rel = float((got.double() - exact).norm() / exact.norm())
                inexact = int((err > lossless_bound(sum_abs, dtype, n)).sum())
                row = {"dtype": dtype, "count": count, "rel_l2": rel,
                       "max_abs": float(err.max()), "worst_err_over_bound": worst,
                       "outside": nout, "inexact": inexact}
                if mode.kind == "pts":
                    nominal = sum(float(inp.double().abs().sum()) for inp in inputs) / (
                        mode.density * count)
                    row["above_nominal_tau_sum"] = float((err > 1.01 * nominal).double().mean())
                res["cases"].append(row)
                if nout:
                    i = int(out.nonzero()[0])
                    fail(f"{what}: {nout} elements outside the bound (first {i}: got "
                         f"{float(got[i].double())}, exact {float(exact[i])}, bound "
                         f"{float(bound[i])})")
                compressing = mode.kind in ("pts", "lsq")
                if compressing and count * esize >= 4 * min_bytes and inexact == 0:
                    fail(f"{what}: exact to the rounding: not compressed (did NCCL use "
                         f"CollNet? see the algo lines)")
                print(f"[rank {me}] {what}: relL2 {rel:.3e} max|err| {row['max_abs']:.3e} "
                      f"worst err/bound {worst:.3f}", flush=True)
        if mode.kind in ("collnet", "rcmoe", "socket"):
            for dtype in DTYPES:
                count = 1_000_003
                x = int_pattern(torch, me, count, getattr(torch, dtype)).to(dev)
                dist.all_reduce(x)
                want = sum(int_pattern(torch, r, count, torch.float64) for r in range(n))
                if not torch.equal(x.cpu().double(), want):
                    fail(f"all_reduce {dtype} of integer values not exact")
        if args.force_collnet:
            # NCCL_ALGO=allreduce:CollNetChain leaves NCCL no algorithm for what the collective
            # side declines (integers): that all-reduce would fail by design, not by the plugin
            print(f"[rank {me}] int64 all_reduce skipped (--force-collnet)", flush=True)
        else:
            count = (1 << 20) + 3
            x = int_pattern(torch, me, count, torch.int64).to(dev)
            dist.all_reduce(x)
            want = sum(int_pattern(torch, r, count, torch.int64) for r in range(n))
            if not torch.equal(x.cpu(), want):
                fail("all_reduce int64 not exact")
        torch.cuda.synchronize()
        print(f"[rank {me}] done", flush=True)
    except Exception:
        fail("exception: " + traceback.format_exc())
    dist.destroy_process_group()  # finalizes the plugin: its counters reach the stats file
    with open(args.result, "w") as f:
        json.dump(res, f)
    return 0


# ---- the driver: one job per mode ----

def check_counters(mode, stats_rows, problems):
    """The collective side carried the float all-reduces of this mode."""
    counters = ec.collnet_counters(stats_rows)
    want = ec.counter_mode(mode)
    line = ", ".join(f"collnet-{m} {d}: {c[0]} calls {c[1]} logical {c[2]} wire"
                     for m, per in sorted(counters.items()) for d, c in sorted(per.items()))
    print(f"  counters: {line or 'no collNet call'}")
    if want is None:
        return
    for dtype in DTYPES:
        cell = counters.get(want, {}).get(COUNTER_DTYPES[dtype])
        if not cell or cell[0] == 0:
            problems.append(f"counters: no collnet-{want} call for {COUNTER_DTYPES[dtype]}: "
                            f"NCCL did not carry the float all-reduces through the plugin's "
                            f"collective side (try --force-collnet; see CollNet lines in the "
                            f"rank logs)")
        elif want != "lossless" and cell[2] >= cell[1]:
            problems.append(f"counters: collnet-{want} {COUNTER_DTYPES[dtype]}: wire bytes "
                            f"{cell[2]} not below logical {cell[1]}: not compressed")


def run_mode(args, mode, plugin):
    out = os.path.join(args.out, f"n{args.nranks}-{mode.name.replace(':', '-')}")
    os.makedirs(out, exist_ok=True)
    port = ec.free_port()
    stats = [os.path.join(out, f"stats-r{r}.jsonl") for r in range(args.nranks)]
    results = [os.path.join(out, f"result-r{r}.json") for r in range(args.nranks)]
    for p in stats + results:
        if os.path.exists(p):
            os.remove(p)

    def argv(r):
        return [sys.executable, os.path.abspath(__file__), "--rank", str(r), "--port", str(port),
                "--nranks", str(args.nranks), "--mode", mode.name, "--seed", str(args.seed),
                "--result", results[r], "--hang-s", str(args.hang_s)] + \
            (["--force-collnet"] if args.force_collnet else [])

    def env(r):
        e = dict(os.environ)
        e.update(ec.mode_env(mode, plugin, args.force_collnet, stats[r]))
        e.update(ec.nccl_debug_env())
        e.update({"NCCL_HOSTID": f"rcmoe-ar-h{r}", "PYTHONUNBUFFERED": "1"})
        return e

    print(f"== torch_allreduce: {args.nranks} ranks, mode {mode.name}"
          f"{', NCCL_ALGO=allreduce:CollNetChain' if args.force_collnet else ''}; logs in {out}",
          flush=True)
    codes, logs = ec.run_ranks(argv, env, args.nranks, out, "torch", args.hang_s + 60)
    problems = []
    for r, code in enumerate(codes):
        if code is None:
            problems.append(f"rank {r}: hung, killed after {args.hang_s + 60} s "
                            f"(stacks in {out})")
        elif code != 0 or not os.path.exists(results[r]):
            problems.append(f"rank {r}: exit status {code} (log {logs[r]})")
        else:
            with open(results[r]) as f:
                res = json.load(f)
            problems += [f"rank {r}: {x}" for x in res["failures"]]
            if r == 0:
                for c in res["cases"]:
                    extra = (f", {100 * c['above_nominal_tau_sum']:.2f}% above the whole "
                             f"tensor's tau sum" if "above_nominal_tau_sum" in c else "")
                    print(f"  all_reduce {c['dtype']:8s} n={c['count']:8d}: relL2 "
                          f"{c['rel_l2']:.3e}  max|err| {c['max_abs']:.3e}  worst err/bound "
                          f"{c['worst_err_over_bound']:.3f}  inexact {c['inexact']}{extra}")
    with open(logs[0], errors="replace") as f:
        tally = ec.algo_tally(f.read())
    for nbytes, algos in sorted(tally.items()):
        print(f"  NCCL all-reduce {nbytes} B: " +
              ", ".join(f"{a} x{k}" for a, k in algos.most_common()))
    if not tally and "NCCL_DEBUG" not in os.environ:
        print("  NCCL's algorithm lines not found in rank 0's log")
    rows = []
    for p in stats:
        rows += ec.read_jsonl(p)
    if all(c == 0 for c in codes):
        check_counters(mode, rows, problems)
    for p in problems:
        print(f"  FAIL {p}")
    ok = not problems
    print(f"torch_allreduce nranks={args.nranks} mode={mode.name}: {'PASS' if ok else 'FAIL'}",
          flush=True)
    return ok


# ---- self-test: no GPU, no torch ----

def _sim_call(kind, param, parts, dtype, rng):
    """What the plugin's collective side makes of one call (DESIGN.md section 3): PTS (each
    contribution sparsified once, summed in rank order in fp32, rounded once) or the LSQ
    two-step (blocks of 128, rank-order sum rounded per addition, the sum quantized again)."""
    rnd = ec.round_bf16 if dtype == "bfloat16" else ec.round_f32
    n = len(parts[0])
    if kind == "pts":
        acc = [0.0] * n
        for g in parts:
            tau = sum(abs(v) for v in g) / (param * n)
            for i, v in enumerate(g):
                if abs(v) < tau:
                    v = (tau if v > 0 else -tau) if rng.random() * tau < abs(v) else 0.0
                acc[i] = ec.round_f32(acc[i] + v)
        return [rnd(v) for v in acc]
    levels = (1 << (param - 1)) - 1

    def lsq(xs):
        out = []
        for b in range(0, len(xs), 128):
            blk = xs[b:b + 128]
            m = max(abs(v) for v in blk)
            s = m / levels if m else 0.0
            for v in blk:
                q = 0.0 if not s else max(-levels, min(levels, (v / s + rng.random()) // 1))
                out.append(rnd(q * s))
        return out
    acc = None
    for g in parts:
        d = lsq(g)
        acc = d if acc is None else [rnd(ec.round_f32(a + b)) for a, b in zip(acc, d)]
    return lsq(acc)


def selftest():
    fails = []

    def expect(cond, what):
        if not cond:
            fails.append(what)

    for good, kind in (("pts:0.01", "pts"), ("lsq:8", "lsq"), ("collnet", "collnet"),
                       ("none", "socket"), ("rcmoe", "rcmoe"), ("LSQ:2", "lsq")):
        expect(ec.parse_mode(good).kind == kind, f"parse_mode({good})")
    for bad in ("pts:0", "pts:1.5", "pts:x", "lsq:3", "lsq:16", "gzip", ""):
        try:
            ec.parse_mode(bad)
            fails.append(f"parse_mode({bad!r}) accepted")
        except ValueError:
            pass
    try:
        ec.parse_modes("pts:0.01,pts:0.01")
        fails.append("a mode given twice accepted")
    except ValueError:
        pass
    e = ec.mode_env(ec.parse_mode("pts:0.01"), "/x/p.so", False, "/tmp/s.jsonl")
    expect(e["NCCL_COLLNET_ENABLE"] == "1" and e["RCMOE_AR_DENSITY"] == "0.01" and
           e["RCMOE_AR_CODEC"] == "pts" and e["RCMOE_AR_BITS"] == "0" and
           "NCCL_ALGO" not in e and e["NCCL_NET"] == "RCMoE", f"pts env {e}")
    e = ec.mode_env(ec.parse_mode("lsq:4"), "/x/p.so", True)
    expect(e["RCMOE_AR_BITS"] == "4" and e["NCCL_ALGO"] == "allreduce:CollNetChain",
           f"lsq env {e}")
    e = ec.mode_env(ec.parse_mode("none"), "/x/p.so", True)
    expect(e["NCCL_NET"] == "Socket" and e["NCCL_NET_PLUGIN"] == "none" and
           "NCCL_ALGO" not in e, f"socket env {e}")
    e = ec.mode_env(ec.parse_mode("rcmoe"), "/x/p.so", True)
    expect(e["NCCL_COLLNET_ENABLE"] == "0" and "NCCL_ALGO" not in e, f"rcmoe env {e}")

    # The bounds hold for the codecs' definitions, whatever NCCL's calls are: random slices of
    # the tensor, the last with leftovers of an earlier input, uniform data as the ranks use.
    rng = random.Random(7)
    for kind, param, dtype, nranks in (("pts", 0.01, "float32", 4), ("pts", 0.1, "bfloat16", 3),
                                       ("lsq", 8, "float32", 4), ("lsq", 2, "bfloat16", 3),
                                       ("lsq", 4, "bfloat16", 2)):
        rnd = ec.round_bf16 if dtype == "bfloat16" else ec.round_f32
        n = 3000
        xs = [[rnd((rng.random() * 2 - 1) * scale_of(r)) for _ in range(n)]
              for r in range(nranks)]
        junk = [[rnd((rng.random() * 2 - 1) * scale_of(r)) for _ in range(700)]
                for r in range(nranks)]
        got, at = [], 0
        while at < n:
            m = min(n - at, rng.choice((128, 512, 1024, 1111)))
            parts = [x[at:at + m] + (junk[r] if at + m == n else [])
                     for r, x in enumerate(xs)]
            got += _sim_call(kind, param, parts, dtype, rng)[:m]
            at += m
        max_abs = [max(abs(v) for v in xs[r] + junk[r]) for r in range(nranks)]
        mode = ec.Mode(kind, kind, param if kind == "pts" else 0.0,
                       param if kind == "lsq" else 0)
        worst, inexact = 0.0, 0
        for i in range(n):
            exact = sum(x[i] for x in xs)
            sum_abs = sum(abs(x[i]) for x in xs)
            b = mode_bound(mode, abs(exact), sum_abs, max_abs, dtype, nranks)
            err = abs(got[i] - exact)
            worst = max(worst, err / b)
            inexact += err > lossless_bound(sum_abs, dtype, nranks)
        expect(worst <= 1.0, f"{kind}:{param} {dtype} {nranks} ranks: err/bound {worst:.3f}")
        # a useful bound: the codec's error reaches a fair share of it
        expect(worst > 0.05, f"{kind}:{param} {dtype}: bound too loose ({worst:.4f})")
        expect(inexact > n // 10, f"{kind}:{param} {dtype}: simulated codec looks exact")
    # the lossless bound covers any order of bf16 additions
    for _ in range(2000):
        vals = [ec.round_bf16(rng.uniform(-3, 3)) for _ in range(4)]
        order = vals[:]
        rng.shuffle(order)
        acc = order[0]
        for v in order[1:]:
            acc = ec.round_bf16(acc + v)
        expect(abs(acc - sum(vals)) <= lossless_bound(sum(abs(v) for v in vals), "bfloat16", 4),
               f"lossless bound: {vals} -> {acc}")

    rows = [
        {"event": "finalize", "comm": "0x1:collnet-PTS", "dir": "send", "func": "AllReduce",
         "dtype": "ncclFloat32", "messages": 5, "logical_bytes": 1000, "wire_bytes": 30},
        {"event": "finalize", "comm": "0x1:collnet-PTS", "dir": "send", "func": "AllReduce",
         "dtype": "ncclBfloat16", "messages": 4, "logical_bytes": 800, "wire_bytes": 20},
        {"event": "periodic", "comm": "0x1:collnet-PTS", "dtype": "ncclFloat32", "messages": 9},
        {"event": "finalize", "comm": "0x1", "dir": "send", "func": "Send",
         "dtype": "ncclInt64", "messages": 7, "logical_bytes": 70, "wire_bytes": 70},
    ]
    problems = []
    check_counters(ec.parse_mode("pts:0.01"), rows, problems)
    expect(not problems, f"counters accepted: {problems}")
    problems = []
    check_counters(ec.parse_mode("lsq:8"), rows, problems)
    expect(len(problems) == 2, f"counters without LSQ calls: {problems}")
    problems = []
    check_counters(ec.parse_mode("pts:0.01"), rows[2:], problems)
    expect(len(problems) == 2, f"counters with no finalize collNet record: {problems}")
    t = ec.algo_tally("x NCCL INFO AllReduce: 4000 Bytes -> Algo COLLNET_CHAIN proto SIMPLE "
                      "channel{Lo..Hi}={0..1}\ny NCCL INFO AllReduce: 4000 Bytes -> Algo RING "
                      "proto LL channel{Lo..Hi}={0..0}\n")
    expect(t == {4000: {"COLLNET_CHAIN/SIMPLE": 1, "RING/LL": 1}}, f"algo tally {t}")
    a = build_parser().parse_args(["--build", "b", "--nranks", "4", "--modes", "pts:0.05,lsq:4"])
    expect([m.name for m in ec.parse_modes(a.modes)] == ["pts:0.05", "lsq:4"], "args")
    for f in fails:
        print(f"selftest FAIL: {f}")
    print(f"torch_allreduce selftest: {'OK' if not fails else f'{len(fails)} FAILED'}")
    return 0 if not fails else 1


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="build directory holding the plugin")
    ap.add_argument("--plugin", help="the plugin .so (default BUILD/plugin/...)")
    ap.add_argument("--nranks", type=int, default=2)
    ap.add_argument("--modes", default="pts:0.01,lsq:8,collnet",
                    help="comma list of pts:RHO, lsq:B, collnet (also rcmoe, none)")
    ap.add_argument("--force-collnet", action="store_true",
                    help="NCCL_ALGO=allreduce:CollNetChain (until the plugin's tuner steers "
                         "all-reduce to CollNet by itself)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None, help="logs, results and counters [a temp dir]")
    ap.add_argument("--hang-s", type=int, default=300,
                    help="seconds after which a rank counts as hung")
    ap.add_argument("--selftest", action="store_true", help="check the logic; no GPU, no torch")
    ec.add_rank_args(ap)
    return ap


def main():
    args = build_parser().parse_args()
    if args.selftest:
        return selftest()
    if args.rank is not None:
        return rank_main(args)
    try:
        modes = ec.parse_modes(args.modes)
    except ValueError as e:
        print(f"torch_allreduce: --modes: {e}", file=sys.stderr)
        return 2
    if not 2 <= args.nranks <= 16:
        print("torch_allreduce: --nranks: 2..16", file=sys.stderr)
        return 2
    plugin = ec.find_plugin(args.plugin, args.build)
    if not os.path.isfile(plugin):
        print(f"torch_allreduce: no plugin at {plugin} (--build or --plugin)", file=sys.stderr)
        return 2
    args.out = args.out or tempfile.mkdtemp(prefix="rcmoe-ar-")
    os.makedirs(args.out, exist_ok=True)
    passed = sum(run_mode(args, m, plugin) for m in modes)
    print(f"torch_allreduce: {passed} passed, {len(modes) - passed} failed")
    return 0 if passed == len(modes) else 1


if __name__ == "__main__":
    sys.exit(main())
