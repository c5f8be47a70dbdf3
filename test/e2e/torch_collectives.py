#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end check with PyTorch: N ranks on one GPU, each its own "node" (NCCL_HOSTID), all
traffic through the rcmoe plugin (NCCL_NET=RCMoE makes a load failure fatal).

Lossless mode (default): all_reduce (fp32, bf16, int64), all_to_all_single (bf16 with uneven
splits, int64) and send/recv must be bit-exact, and the plugin's counters (RCMOE_STATS_FILE) must
show the bf16 and int64 all-to-all sends attributed to ncclBfloat16 and ncclInt64.

Lossy mode (--bits 8|4|2, sets RCMOE_A2A_BITS): bf16 all_to_all_single with uneven splits must
arrive within the LSQ bound (per 128-element block of each row: |x' - x| <= max|block| / L plus
a bf16 ulp of the larger of x and x') and not bit-exact; int64 all_to_all_single in the same job
must be exact; an all_to_all_single captured in a CUDA graph and replayed on new data must also be within the
bound; the counters must show the bf16 sends carried fewer wire bytes than logical bytes.

Usage: torch_collectives.py --plugin /abs/libnccl-net-rcmoe.so --nranks 4 [--bits B] [--out DIR]
Exit status 0 only if every check passed on every rank.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pattern(rank, n, dtype, torch, salt=0):
    """Integer-valued data, exact in every dtype used and in sums over a few ranks."""
    i = torch.arange(n, dtype=torch.int64)
    v = ((i * 7 + rank * 13 + salt) % 61) - 30
    return v.to(dtype)


def uneven_splits(nranks, rank, base):
    """Rows this rank sends to each peer: different per (sender, receiver) pair."""
    return [base + ((rank * 3 + peer * 5) % 7) * 37 for peer in range(nranks)]


def gaussian(rank, peer, rows, width, torch, salt=0):
    g = torch.Generator().manual_seed(1000003 * rank + 7919 * peer + salt)
    scale = torch.arange(1, rows + 1, dtype=torch.float32).remainder(7).add(1).unsqueeze(1)
    return (torch.randn(rows, width, generator=g) * scale).to(torch.bfloat16)


def lsq_violations(got, want, bits, torch, block=128):
    """Elements outside the LSQ bound; rows are multiples of the block, so blocks are row-local."""
    levels = (1 << (bits - 1)) - 1
    w = want.float().view(-1, block)
    g = got.float().view(-1, block)
    scale = w.abs().amax(dim=1, keepdim=True) / levels
    # The decoded level is rounded to bf16: half an ulp of the *decoded* value, which can be
    # up to a scale larger than |x| (a tiny x rounded up to the next level).
    ulp = torch.maximum(w.abs(), g.abs()) / 128.0
    return int(((g - w).abs() > scale * 1.0001 + ulp).sum())


def check_lossy(rank, n, bits, dev, torch, dist, failures, graph):
    width = 1024
    send_rows = uneven_splits(n, rank, 200)
    recv_rows = [uneven_splits(n, src, 200)[rank] for src in range(n)]
    want = torch.cat([gaussian(src, rank, recv_rows[src], width, torch) for src in range(n)])
    x = torch.cat([gaussian(rank, peer, send_rows[peer], width, torch)
                   for peer in range(n)]).to(dev)
    y = torch.empty(sum(recv_rows), width, dtype=torch.bfloat16, device=dev)
    dist.all_to_all_single(y, x, recv_rows, send_rows)
    got = y.cpu()
    bad = lsq_violations(got, want, bits, torch)
    check(bad == 0, f"all_to_all_single bf16 {bits}-bit: {bad} elements outside the bound",
          failures)
    check(not torch.equal(got, want), "all_to_all_single bf16 arrived bit-exact: not compressed",
          failures)
    err = float((got.float() - want.float()).norm() / want.float().norm())
    progress(rank, f"all_to_all_single bf16 {bits}-bit done, relative L2 error {err:.4f}")
    if not graph:
        return
    # The same exchange captured in a CUDA graph, replayed on fresh data.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        dist.all_to_all_single(y, x, recv_rows, send_rows)  # warm up outside the capture
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        dist.all_to_all_single(y, x, recv_rows, send_rows)
    for replay in range(3):
        salt = 100 + replay
        x.copy_(torch.cat([gaussian(rank, peer, send_rows[peer], width, torch, salt)
                           for peer in range(n)]).to(dev))
        g.replay()
        torch.cuda.synchronize()
        want = torch.cat([gaussian(src, rank, recv_rows[src], width, torch, salt)
                          for src in range(n)])
        bad = lsq_violations(y.cpu(), want, bits, torch)
        check(bad == 0, f"graph replay {replay}: {bad} elements outside the bound", failures)
    progress(rank, "all_to_all_single in a CUDA graph done")


def check(cond, what, failures):
    if not cond:
        failures.append(what)


def progress(rank, what):
    print(f"[rank {rank}] {what}", flush=True)


def run_rank(rank, args, port, result_file):
    os.environ["NCCL_HOSTID"] = f"rcmoe-e2e-h{rank}"
    import faulthandler
    faulthandler.dump_traceback_later(args.hang_s, exit=False)
    import torch
    import torch.distributed as dist

    failures = []
    torch.cuda.set_device(0)
    dev = torch.device("cuda", 0)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=args.nranks, device_id=dev)
    n = args.nranks
    try:
        if args.bits:
            check_lossy(rank, n, args.bits, dev, torch, dist, failures, args.graph)
        # all_reduce: fp32, bf16, int64, on a size that spans many net chunks
        for dtype in (torch.float32, torch.bfloat16, torch.int64):
            count = (1 << 20) + 3
            x = pattern(rank, count, dtype, torch).to(dev)
            dist.all_reduce(x)
            want = sum(pattern(r, count, torch.float64, torch) for r in range(n)).to(dtype)
            check(torch.equal(x.cpu(), want), f"all_reduce {dtype} not exact", failures)
            progress(rank, f"all_reduce {dtype} done")

        # all_to_all_single with uneven splits: bf16 rows of 1024 (lossless runs), and int64
        # (exact in every mode)
        kinds = ((torch.int64, 64),) if args.bits else ((torch.bfloat16, 1024), (torch.int64, 64))
        for dtype, width in kinds:
            send_rows = uneven_splits(n, rank, 200)
            recv_rows = [uneven_splits(n, src, 200)[rank] for src in range(n)]
            x = torch.cat([pattern(rank * 100 + peer, send_rows[peer] * width, dtype, torch, 1)
                           for peer in range(n)]).view(-1, width).to(dev)
            y = torch.empty(sum(recv_rows), width, dtype=dtype, device=dev)
            dist.all_to_all_single(y, x, recv_rows, send_rows)
            want = torch.cat([pattern(src * 100 + rank, recv_rows[src] * width, dtype, torch, 1)
                              for src in range(n)]).view(-1, width)
            check(torch.equal(y.cpu(), want), f"all_to_all_single {dtype} not exact", failures)
            progress(rank, f"all_to_all_single {dtype} done")

        # send/recv around a ring, fp16
        count = (3 << 20) + 11
        x = pattern(rank, count, torch.float16, torch, 2).to(dev)
        y = torch.empty(count, dtype=torch.float16, device=dev)
        ops = [dist.P2POp(dist.isend, x, (rank + 1) % n), dist.P2POp(dist.irecv, y, (rank - 1) % n)]
        for w in dist.batch_isend_irecv(ops):
            w.wait()
        want = pattern((rank - 1) % n, count, torch.float16, torch, 2)
        check(torch.equal(y.cpu(), want), "send/recv fp16 not exact", failures)
        progress(rank, "send/recv done")
        torch.cuda.synchronize()
    except Exception:
        failures.append("exception: " + traceback.format_exc())
    dist.destroy_process_group()  # finalizes the plugin: counters are written
    with open(result_file, "w") as f:
        json.dump({"rank": rank, "failures": failures}, f)


def dump_stacks(pid, path):
    """Native stacks of every thread of a hung rank, when a debugger is at hand."""
    for dbg in ("gdb", "cuda-gdb"):
        if shutil.which(dbg):
            with open(path, "w") as f:
                subprocess.run([dbg, "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                               stdout=f, stderr=subprocess.STDOUT, timeout=120)
            return


def read_stats(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--nranks", type=int, default=2)
    ap.add_argument("--out", default=tempfile.mkdtemp(prefix="rcmoe-e2e-"))
    ap.add_argument("--bits", type=int, default=0, choices=(0, 2, 4, 8),
                    help="RCMOE_A2A_BITS for a lossy run (0: lossless)")
    ap.add_argument("--graph", action="store_true",
                    help="lossy runs: also capture an all_to_all_single in a CUDA graph")
    ap.add_argument("--hang-s", type=int, default=300,
                    help="seconds after which a rank is declared hung (stacks are dumped)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    stats = os.path.join(args.out, f"stats-{args.nranks}.jsonl")
    if os.path.exists(stats):
        os.remove(stats)
    os.environ.update({
        "NCCL_NET_PLUGIN": os.path.abspath(args.plugin),
        "NCCL_NET": "RCMoE",
        "NCCL_SOCKET_IFNAME": os.environ.get("NCCL_SOCKET_IFNAME", "lo"),
        "RCMOE_SOCKET_IFNAME": os.environ.get("RCMOE_SOCKET_IFNAME", "lo"),
        "RCMOE_STATS_FILE": stats,
        "NCCL_MNNVL_ENABLE": "0",
        "RCMOE_A2A_BITS": str(args.bits),
    })
    import torch.multiprocessing as mp
    port = free_port()
    results = [os.path.join(args.out, f"result-{args.nranks}-{r}.json") for r in range(args.nranks)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=run_rank, args=(r, args, port, results[r])) for r in range(args.nranks)]
    for p in procs:
        p.start()
    deadline = time.time() + args.hang_s + 30
    for p in procs:
        p.join(max(1, deadline - time.time()))
    ok = True
    for r, p in enumerate(procs):
        if p.is_alive():
            dump_stacks(p.pid, os.path.join(args.out, f"stacks-{args.nranks}-{r}.txt"))
            p.kill()
            print(f"rank {r}: hung, killed (thread stacks in {args.out})")
            ok = False
            continue
        if p.exitcode != 0 or not os.path.exists(results[r]):
            print(f"rank {r}: exit code {p.exitcode}")
            ok = False
            continue
        with open(results[r]) as f:
            res = json.load(f)
        for fail in res["failures"]:
            print(f"rank {r}: FAIL {fail}")
            ok = False
    rows = read_stats(stats)
    sends = {(row["func"], row["dtype"]) for row in rows if row["dir"] == "send"}
    for want in (("Send", "ncclBfloat16"), ("Send", "ncclInt64"), ("AllReduce", "ncclFloat32"),
                 ("Send", "ncclFloat16")):
        if want not in sends:
            print(f"counters: no send attributed {want[0]}/{want[1]}; seen {sorted(sends)}")
            ok = False
    if args.bits:
        bf = [row for row in rows if row["dir"] == "send" and row["dtype"] == "ncclBfloat16"
              and row["func"] == "Send"]
        logical = sum(row["logical_bytes"] for row in bf)
        wire = sum(row["wire_bytes"] for row in bf)
        print(f"counters: bf16 sends {logical} logical bytes, {wire} wire bytes")
        if not bf or wire >= logical:
            print("counters: bf16 all-to-all sends were not compressed")
            ok = False
    unknown = sum(row["messages"] for row in rows if row["dtype"] == "unknown")
    total = sum(row["messages"] for row in rows)
    print(f"counters: {total} messages, {unknown} unattributed, kinds {sorted(sends)}")
    print(f"e2e torch nranks={args.nranks} bits={args.bits}: {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
