#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A small data-parallel training job, run once per mode, to show what compressed all-reduce
costs in quality and buys in time: N ranks on one GPU (each its own "node", NCCL_HOSTID), a
student MLP (256 -> 1280 -> 1280 -> 512 -> 64, ReLU, about 2.65 M parameters) regressing a fixed
random teacher MLP's output, Adam, fixed seeds. Every step each rank draws its own batch, and
the gradients of all parameters go through ONE dist.all_reduce of a flat fp32 tensor (about
10.6 MB), divided by N: the job's code is the same in every mode, only the environment changes.

Modes (--modes, default none,rcmoe,pts:0.01,lsq:8):
  none      NCCL's own Socket transport (NCCL_NET=Socket, NCCL_NET_PLUGIN=none): the baseline
  rcmoe     the plugin's net side, all-reduce on NCCL's ring, lossless
  collnet   the plugin's collective side, lossless
  pts:RHO   the collective side, PTS at density RHO
  lsq:B     the collective side, LSQ two-step at B bits

It prints the training loss of rank 0 every K steps (--log-every) of every mode side by side,
then per mode: the final held-out loss and its ratio to the uncompressed run (the first of
none, rcmoe, collnet that ran), the plugin's wire-byte ratio for all-reduce (logical / wire
bytes from its RCMOE_STATS_FILE), milliseconds per all-reduce and per step, and whether the
replicas stayed bit-identical. It writes DIR/dp_train-<mode>.json per mode,
DIR/dp_train-summary.json, and DIR/dp_train-loss.png when matplotlib imports.

--link-gbps G emulates a G Gb/s link per rank for every mode alike, as rcmoe-run --link-gbps
does: tools/shaper's librcmoe-shaper.so first in LD_PRELOAD with RCMOE_SHAPER_GBPS=G (each rank
checks the shaper is mapped in it before it starts).

A mode FAILS when a rank fails or hangs, when the replicas' parameters differ at the end, or
when a collective-side mode's counters show no collNet call (NCCL then ran all-reduce on its
own ring: the mode's figures would not be what they claim). --max-loss-ratio R also fails a
mode whose final held-out loss exceeds R x the uncompressed run's.

Usage (from the repository root, MPS running; the script does not start it):
  test/e2e/dp_train.py --build build --nranks 4 [--modes none,rcmoe,pts:0.01,lsq:8]
      [--steps 300] [--log-every 20] [--link-gbps 10] [--force-collnet] [--out DIR]
  test/e2e/dp_train.py --selftest      # no GPU, no torch
"""
import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_common as ec  # noqa: E402

DIMS = (256, 1280, 1280, 512, 64)
TEACHER_DIMS = (256, 512, 64)


def param_count(dims):
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


# ---- one rank ----

def mlp(torch, dims, act):
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(act())
    return torch.nn.Sequential(*layers)


def batch(torch, teacher, seed, rank, step, size, dev):
    g = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + rank * 100_003 + step)
    x = torch.randn(size, DIMS[0], generator=g).to(dev)
    with torch.no_grad():
        y = teacher(x) + 0.01 * torch.randn(size, DIMS[-1], generator=g).to(dev)
    return x, y


def shaper_mapped():
    try:
        with open("/proc/self/maps") as f:
            return "librcmoe-shaper.so" in f.read()
    except OSError:
        return False


def rank_main(args):
    import faulthandler
    faulthandler.dump_traceback_later(args.hang_s, exit=False)
    if args.link_gbps and not shaper_mapped():
        print(f"--link-gbps {args.link_gbps}: the shaper is not loaded in this rank "
              f"(LD_PRELOAD={os.environ.get('LD_PRELOAD')}): refusing to run unshaped",
              flush=True)
        return 3
    import torch
    import torch.distributed as dist

    n, me = args.nranks, args.rank
    torch.cuda.set_device(0)
    dev = torch.device("cuda", 0)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{args.port}", rank=me,
                            world_size=n, device_id=dev)
    res = {"rank": me, "mode": args.mode, "failures": []}
    try:
        torch.manual_seed(args.seed)  # the same teacher and initial student on every rank
        teacher = mlp(torch, TEACHER_DIMS, torch.nn.Tanh).to(dev)
        model = mlp(torch, DIMS, torch.nn.ReLU).to(dev)
        params = [p for p in model.parameters()]
        opt = torch.optim.Adam(params, lr=args.lr)
        numel = sum(p.numel() for p in params)
        flat = torch.zeros(numel, dtype=torch.float32, device=dev)
        xe, ye = batch(torch, teacher, args.seed + 1, 999, 0, 4096, dev)  # held out

        def evaluate():
            with torch.no_grad():
                return float(torch.nn.functional.mse_loss(model(xe), ye))

        ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        losses, evals, ar_ms, step_ms = [], [], [], []
        for step in range(args.steps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            x, y = batch(torch, teacher, args.seed, me, step, args.batch, dev)
            opt.zero_grad(set_to_none=False)
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            off = 0
            for p in params:  # one flat gradient, one all-reduce
                flat[off:off + p.numel()].copy_(p.grad.reshape(-1))
                off += p.numel()
            ev0.record()
            dist.all_reduce(flat)
            ev1.record()
            flat.div_(n)
            off = 0
            for p in params:
                p.grad.copy_(flat[off:off + p.numel()].view_as(p.grad))
                off += p.numel()
            opt.step()
            torch.cuda.synchronize()
            step_ms.append((time.perf_counter() - t0) * 1e3)
            ar_ms.append(ev0.elapsed_time(ev1))
            if step % args.log_every == 0 or step == args.steps - 1:
                losses.append((step, float(loss)))
                evals.append((step, evaluate()))
                print(f"[rank {me}] step {step} loss {losses[-1][1]:.5f} eval {evals[-1][1]:.5f}"
                      f" all-reduce {ar_ms[-1]:.2f} ms", flush=True)
        # replicas: every rank must hold the same bits
        h = hashlib.sha256()
        for p in params:
            h.update(p.detach().cpu().numpy().tobytes())
        digests = [None] * n
        dist.all_gather_object(digests, h.hexdigest())
        same = all(d == digests[0] for d in digests)
        if not same:
            res["failures"].append("replicas differ after training (parameters' SHA-256)")
        warm = ar_ms[min(5, len(ar_ms) - 1):]
        warm_step = step_ms[min(5, len(step_ms) - 1):]
        res.update({
            "params": numel, "steps": args.steps, "batch_per_rank": args.batch,
            "loss": losses, "eval": evals, "final_eval": evals[-1][1],
            "ms_per_allreduce_median": statistics.median(warm),
            "ms_per_allreduce_mean": statistics.fmean(warm),
            "ms_per_step_median": statistics.median(warm_step),
            "replicas_identical": same,
        })
    except Exception:
        res["failures"].append("exception: " + traceback.format_exc())
    dist.destroy_process_group()  # finalizes the plugin: its counters reach the stats file
    with open(args.result, "w") as f:
        json.dump(res, f)
    return 0


# ---- the driver ----

def baseline_of(results):
    """The uncompressed run the others are compared with: none, else rcmoe, else collnet."""
    for name in ("none", "rcmoe", "collnet"):
        r = results.get(name)
        if r and r.get("final_eval") is not None:
            return name
    return None


def summarize(results, order):
    """Per mode: final eval loss, its ratio to the uncompressed run, and the rest."""
    base = baseline_of(results)
    rows = []
    for name in order:
        r = results.get(name) or {}
        fe = r.get("final_eval")
        b = results[base]["final_eval"] if base else None
        rows.append({
            "mode": name, "ok": r.get("ok", False), "final_eval": fe,
            "eval_ratio": (fe / b) if (fe is not None and b) else None,
            "wire_ratio": r.get("wire_ratio"),
            "ms_per_allreduce": r.get("ms_per_allreduce_median"),
            "ms_per_step": r.get("ms_per_step_median"),
            "replicas_identical": r.get("replicas_identical"),
            "baseline": base,
        })
    return rows


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def loss_table(results, order):
    """The training loss of every mode side by side, one line per logged step."""
    steps = sorted({s for name in order for s, _ in (results.get(name) or {}).get("loss", [])})
    lines = ["step".rjust(7) + "".join(name.rjust(14) for name in order)]
    for s in steps:
        cells = []
        for name in order:
            d = dict((results.get(name) or {}).get("loss", []))
            cells.append(fmt(d.get(s), ".5f").rjust(14))
        lines.append(str(s).rjust(7) + "".join(cells))
    return lines


def summary_table(rows, link):
    head = (f"{'mode':>12} {'eval loss':>11} {'vs base':>8} {'wire x':>8} {'ms/allred':>10} "
            f"{'ms/step':>9} {'replicas':>9}  ok")
    lines = [f"# dp_train summary{', ' + link if link else ''}; 'vs base' = final held-out loss"
             f" / {rows[0]['baseline'] if rows else '-'}'s; 'wire x' = logical / wire bytes of "
             f"all-reduce (plugin counters)", head]
    for r in rows:
        rep = {True: "same", False: "DIFFER", None: "-"}[r["replicas_identical"]]
        lines.append(f"{r['mode']:>12} {fmt(r['final_eval'], '.5f'):>11} "
                     f"{fmt(r['eval_ratio'], '.3f'):>8} {fmt(r['wire_ratio'], '.2f'):>8} "
                     f"{fmt(r['ms_per_allreduce'], '.2f'):>10} {fmt(r['ms_per_step'], '.2f'):>9}"
                     f" {rep:>9}  {'yes' if r['ok'] else 'FAIL'}")
    return lines


def plot(results, order, path, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("dp_train: matplotlib is not importable; no plot")
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in order:
        r = results.get(name) or {}
        for ax, key in zip(axes, ("loss", "eval")):
            pts = r.get(key) or []
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name)
    for ax, what in zip(axes, ("training loss (rank 0)", "held-out loss")):
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(what)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"dp_train: plot {path}")
    return True


def run_mode(args, mode, plugin, shaper):
    out = os.path.join(args.out, f"n{args.nranks}-{mode.name.replace(':', '-')}")
    os.makedirs(out, exist_ok=True)
    port = ec.free_port()
    stats = [os.path.join(out, f"stats-r{r}.jsonl") for r in range(args.nranks)]
    results = [os.path.join(out, f"result-r{r}.json") for r in range(args.nranks)]
    for p in stats + results:
        if os.path.exists(p):
            os.remove(p)

    def argv(r):
        a = [sys.executable, os.path.abspath(__file__), "--rank", str(r), "--port", str(port),
             "--nranks", str(args.nranks), "--mode", mode.name, "--seed", str(args.seed),
             "--steps", str(args.steps), "--log-every", str(args.log_every),
             "--batch", str(args.batch), "--lr", repr(args.lr), "--result", results[r],
             "--hang-s", str(args.hang_s)]
        return a + (["--link-gbps", str(args.link_gbps)] if args.link_gbps else [])

    def env(r):
        e = dict(os.environ)
        e.update(ec.mode_env(mode, plugin, args.force_collnet, stats[r]))
        e.update(ec.link_env(shaper, args.link_gbps))
        e.update({"NCCL_HOSTID": f"rcmoe-dp-h{r}", "PYTHONUNBUFFERED": "1"})
        return e

    print(f"== dp_train: {args.nranks} ranks, mode {mode.name}, {args.steps} steps"
          f"{', link ' + str(args.link_gbps) + ' Gb/s' if args.link_gbps else ''}; logs in {out}",
          flush=True)
    t0 = time.time()
    codes, logs = ec.run_ranks(argv, env, args.nranks, out, "dp", args.hang_s + 60)
    problems, res = [], {}
    for r, code in enumerate(codes):
        if code is None:
            problems.append(f"rank {r}: hung, killed (stacks in {out})")
        elif code != 0 or not os.path.exists(results[r]):
            problems.append(f"rank {r}: exit status {code} (log {logs[r]})")
        else:
            with open(results[r]) as f:
                rr = json.load(f)
            problems += [f"rank {r}: {x}" for x in rr["failures"]]
            if r == 0:
                res = rr
    rows = []
    for p in stats:
        rows += ec.read_jsonl(p)
    res["wire_ratio"] = ec.wire_ratio(rows) if mode.kind != "socket" else None
    want = ec.counter_mode(mode)
    if want and all(c == 0 for c in codes):
        calls = sum(c[0] for c in ec.collnet_counters(rows).get(want, {}).values())
        res["collnet_calls"] = calls
        if not calls:
            problems.append(f"the plugin's counters show no collnet-{want} call: NCCL ran the "
                            f"all-reduce on its own algorithms (--force-collnet until the "
                            f"plugin's tuner steers it)")
    res["ok"] = not problems
    res["problems"] = problems
    res["wall_s"] = time.time() - t0
    res["link_gbps"] = args.link_gbps
    with open(os.path.join(args.out, f"dp_train-{mode.name.replace(':', '-')}.json"), "w") as f:
        json.dump(res, f, indent=1)
    for p in problems:
        print(f"  FAIL {p}")
    print(f"dp_train mode={mode.name}: {'PASS' if res['ok'] else 'FAIL'}", flush=True)
    return res


def selftest():
    fails = []

    def expect(cond, what):
        if not cond:
            fails.append(what)

    n = param_count(DIMS)
    expect(2_000_000 <= n <= 3_000_000, f"student has {n} parameters")
    a = build_parser().parse_args(["--nranks", "4", "--modes", "none,rcmoe,pts:0.01,lsq:8",
                                   "--link-gbps", "10", "--steps", "50"])
    modes = ec.parse_modes(a.modes)
    expect([m.kind for m in modes] == ["socket", "rcmoe", "pts", "lsq"], "modes")
    e = ec.link_env("/abs/librcmoe-shaper.so", 10.0)
    expect(e["LD_PRELOAD"].startswith("/abs/librcmoe-shaper.so") and
           e["RCMOE_SHAPER_GBPS"] == "10.0", f"link env {e}")
    try:
        ec.link_env("/a b/librcmoe-shaper.so", 10)
        fails.append("a shaper path with a space accepted")
    except ValueError:
        pass
    expect(ec.link_env("/x", 0) == {}, "no link")
    res = {
        "none": {"loss": [(0, 1.0), (20, 0.5)], "final_eval": 0.40, "ok": True,
                 "ms_per_allreduce_median": 9.0, "ms_per_step_median": 12.0,
                 "replicas_identical": True, "wire_ratio": None},
        "pts:0.01": {"loss": [(0, 1.0), (20, 0.6)], "final_eval": 0.44, "ok": True,
                     "ms_per_allreduce_median": 1.5, "ms_per_step_median": 4.0,
                     "replicas_identical": True, "wire_ratio": 55.0},
    }
    order = ["none", "rcmoe", "pts:0.01"]
    rows = summarize(res, order)
    expect(rows[2]["eval_ratio"] is not None and abs(rows[2]["eval_ratio"] - 1.1) < 1e-9 and
           rows[1]["final_eval"] is None and rows[0]["baseline"] == "none", f"summary {rows}")
    lines = loss_table(res, order)
    expect(len(lines) == 3 and "0.60000" in lines[2] and lines[2].split()[2] == "-",
           f"loss table {lines}")
    expect(any("FAIL" in x for x in summary_table(rows, None)), "a missing mode shows FAIL")
    expect(baseline_of({"rcmoe": {"final_eval": 1.0}}) == "rcmoe", "baseline rcmoe")
    rows_stats = [
        {"event": "finalize", "comm": "0x1:collnet-PTS", "dir": "send", "func": "AllReduce",
         "dtype": "ncclFloat32", "messages": 5, "logical_bytes": 1000, "wire_bytes": 20},
        {"event": "finalize", "comm": "0x1", "dir": "send", "func": "AllReduce",
         "dtype": "ncclFloat32", "messages": 5, "logical_bytes": 100, "wire_bytes": 100},
        {"event": "finalize", "comm": "0x1", "dir": "send", "func": "AllGather",
         "dtype": "ncclUint8", "messages": 5, "logical_bytes": 100, "wire_bytes": 100},
        {"event": "periodic", "comm": "0x1", "dir": "send", "func": "AllReduce",
         "dtype": "ncclFloat32", "messages": 5, "logical_bytes": 9999, "wire_bytes": 1},
    ]
    expect(abs(ec.wire_ratio(rows_stats) - 1100 / 120) < 1e-9, "wire ratio")
    expect(ec.wire_ratio([]) is None, "wire ratio without counters")
    for f in fails:
        print(f"selftest FAIL: {f}")
    print(f"dp_train selftest: {'OK' if not fails else f'{len(fails)} FAILED'}")
    return 0 if not fails else 1


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="build directory (plugin, shaper)")
    ap.add_argument("--plugin", help="the plugin .so (default BUILD/plugin/...)")
    ap.add_argument("--shaper", help="librcmoe-shaper.so (default BUILD/tools/shaper/...)")
    ap.add_argument("--nranks", type=int, default=4)
    ap.add_argument("--modes", default="none,rcmoe,pts:0.01,lsq:8",
                    help="comma list of none, rcmoe, collnet, pts:RHO, lsq:B")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256, help="samples per rank and step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--link-gbps", type=float, default=0.0,
                    help="emulated link per rank, every mode alike (tools/shaper)")
    ap.add_argument("--force-collnet", action="store_true",
                    help="NCCL_ALGO=allreduce:CollNetChain in collective-side modes")
    ap.add_argument("--max-loss-ratio", type=float, default=None,
                    help="fail a mode whose final held-out loss is above R x the baseline's")
    ap.add_argument("--out", default=None, help="logs, JSON and plot [a temp dir]")
    ap.add_argument("--hang-s", type=int, default=900,
                    help="seconds after which a mode's ranks count as hung")
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
        print(f"dp_train: --modes: {e}", file=sys.stderr)
        return 2
    if not 2 <= args.nranks <= 16 or args.steps < 1 or args.log_every < 1:
        print("dp_train: --nranks 2..16, --steps and --log-every >= 1", file=sys.stderr)
        return 2
    plugin = ec.find_plugin(args.plugin, args.build)
    if any(m.kind != "socket" for m in modes) and not os.path.isfile(plugin):
        print(f"dp_train: no plugin at {plugin} (--build or --plugin)", file=sys.stderr)
        return 2
    shaper = ec.find_shaper(args.shaper, args.build)
    if args.link_gbps:
        if not 0.001 <= args.link_gbps <= 100000 or not os.path.isfile(shaper):
            print(f"dp_train: --link-gbps needs 0.001..100000 and the shaper ({shaper}; "
                  f"ninja -C BUILD tools/shaper/librcmoe-shaper.so, or --shaper)",
                  file=sys.stderr)
            return 2
    args.out = args.out or tempfile.mkdtemp(prefix="rcmoe-dp-")
    os.makedirs(args.out, exist_ok=True)
    results = {}
    for m in modes:
        results[m.name] = run_mode(args, m, plugin, shaper)
    order = [m.name for m in modes]
    link = f"emulated link {args.link_gbps:g} Gb/s per rank" if args.link_gbps else None
    print(f"\n# training loss of rank 0, every {args.log_every} steps "
          f"({args.nranks} ranks, {param_count(DIMS)} parameters, batch {args.batch}/rank)")
    for line in loss_table(results, order):
        print(line)
    rows = summarize(results, order)
    if args.max_loss_ratio:
        for r in rows:
            if r["eval_ratio"] is not None and r["eval_ratio"] > args.max_loss_ratio:
                r["ok"] = results[r["mode"]]["ok"] = False
                print(f"FAIL {r['mode']}: held-out loss {r['eval_ratio']:.3f} x the baseline's "
                      f"(--max-loss-ratio {args.max_loss_ratio})")
    print()
    for line in summary_table(rows, link):
        print(line)
    with open(os.path.join(args.out, "dp_train-summary.json"), "w") as f:
        json.dump({"nranks": args.nranks, "steps": args.steps, "link": link,
                   "params": param_count(DIMS), "rows": rows}, f, indent=1)
    plot(results, order, os.path.join(args.out, "dp_train-loss.png"),
         f"dp_train: {args.nranks} ranks{', ' + link if link else ''}")
    failed = [r["mode"] for r in rows if not r["ok"]]
    print(f"dp_train: {len(rows) - len(failed)} passed, {len(failed)} failed; results in "
          f"{args.out}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
