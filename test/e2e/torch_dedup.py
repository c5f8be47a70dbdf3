#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end check of collaboration dedup (RCMOE_A2A_DEDUP=on) with PyTorch: N ranks on one
GPU, each its own "node" (NCCL_HOSTID), all traffic through the rcmoe plugin, lossless
(RCMOE_A2A_BITS=0).

Each rank's all_to_all_single send buffer holds, for every peer, bf16 token rows of WIDTH
elements (a multiple of RCMOE_LSQ_BLOCK, so the plugin dedups row by row) of which about
--dup-frac are copies of an earlier row of the same peer's slice, at random distances (a token
routed to two of the peer's experts). The slices are several MiB, so copies travel in different
NCCL steps. Checks:
- the received rows are bit-exact (twice: two operations, so the windows start a second epoch);
- the plugin's stats file (RCMOE_STATS_FILE, docs/counters.md "Dedup") has dedup records whose
  send side saved bytes > 0 and whose receive side rebuilt as many duplicate blocks.

Which buffers this covers: with RCMOE_CUDA_BUFFERS=auto (the default) and dedup on, the plugin
keeps NCCL's buffers in host memory and dedups with the C codec (kernels/wdedup.c). The GPU
window-dedup kernels (kernels/wdedup_enc.cu, wdedup_dec.cu) are checked against that codec by
test/gpu/test_gpu_wdedup.c; the plugin's GPU path does not use them yet.

Usage: torch_dedup.py --plugin /abs/libnccl-net-rcmoe.so --nranks 4 [--out DIR]
Exit status 0 only if every check passed on every rank.
"""
import argparse
import json
import os
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_common  # noqa: E402  (no torch in it)

WIDTH = 1024  # bf16 elements per row: 8 LSQ blocks of 128


def slice_rows(rank, peer, rows, dup_frac, torch, salt):
    """The rows `rank` sends `peer`: random bf16 rows, about dup_frac of them copies of an earlier
    row of the same slice. Returns (rows tensor, number of copies)."""
    g = torch.Generator().manual_seed(1000003 * rank + 7919 * peer + salt)
    x = torch.randn(rows, WIDTH, generator=g).to(torch.bfloat16)
    pick = torch.rand(rows, generator=g) < dup_frac
    copies = 0
    for i in range(1, rows):
        if pick[i]:
            j = int(torch.randint(0, i, (1,), generator=g))
            x[i] = x[j]
            copies += 1
    return x, copies


def progress(rank, what):
    print(f"[rank {rank}] {what}", flush=True)


def run_rank(rank, args, port, result_file):
    os.environ["NCCL_HOSTID"] = f"rcmoe-dedup-h{rank}"
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
    rows = args.rows
    try:
        for op in range(2):
            salt = 17 * op
            parts, planted = [], 0
            for peer in range(n):
                x, c = slice_rows(rank, peer, rows, args.dup_frac, torch, salt)
                parts.append(x)
                planted += c if peer != rank else 0
            send = torch.cat(parts).to(dev)
            recv = torch.empty(n * rows, WIDTH, dtype=torch.bfloat16, device=dev)
            dist.all_to_all_single(recv, send)
            want = torch.cat([slice_rows(src, rank, rows, args.dup_frac, torch, salt)[0]
                              for src in range(n)])
            got = recv.cpu()
            if not torch.equal(got, want):
                bad = int((got.view(torch.int16) != want.view(torch.int16)).sum())
                failures.append(f"operation {op}: all_to_all_single bf16 not exact "
                                f"({bad} elements differ)")
            progress(rank, f"operation {op} done: {planted} copied rows sent to other ranks")
        torch.cuda.synchronize()
    except Exception:
        failures.append("exception: " + traceback.format_exc())
    dist.destroy_process_group()  # finalizes the plugin: counters are written
    with open(result_file, "w") as f:
        json.dump({"rank": rank, "failures": failures}, f)


def dedup_totals(rows):
    """{dir: [blocks, duplicate_blocks, saved_bytes]} over the finalize dedup records."""
    out = {}
    for row in rows:
        if row.get("record") != "dedup" or row.get("event") != "finalize":
            continue
        cell = out.setdefault(row.get("dir", "?"), [0, 0, 0])
        cell[0] += int(row.get("blocks", 0))
        cell[1] += int(row.get("duplicate_blocks", 0))
        cell[2] += int(row.get("saved_bytes", 0))
    return out


def check_counters(rows):
    """The failures the stats file shows (empty when fine), and a summary line."""
    fails = []
    tot = dedup_totals(rows)
    send = tot.get("send", [0, 0, 0])
    recv = tot.get("recv", [0, 0, 0])
    if send[2] <= 0:
        fails.append(f"counters: no saved bytes on the send side (dedup records: {tot})")
    if send[1] != recv[1]:
        fails.append(f"counters: {send[1]} duplicate blocks sent, {recv[1]} rebuilt")
    frac = send[1] / send[0] if send[0] else 0.0
    summary = (f"counters: dedup send {send[0]} blocks, {send[1]} duplicates "
               f"({frac:.3f}), {send[2]} bytes saved; recv {recv[1]} duplicates rebuilt")
    return fails, summary


def selftest():
    rec = {"event": "finalize", "record": "dedup", "dtype": "ncclBfloat16", "peer": 1}
    rows = [dict(rec, dir="send", blocks=100, duplicate_blocks=25, saved_bytes=6400),
            dict(rec, dir="recv", blocks=100, duplicate_blocks=25, saved_bytes=6400),
            {"event": "finalize", "dir": "send", "func": "Send", "logical_bytes": 1}]
    fails, _ = check_counters(rows)
    assert not fails, fails
    fails, _ = check_counters(rows[1:])
    assert fails and "no saved bytes" in fails[0], fails
    fails, _ = check_counters([rows[0]])
    assert fails and "rebuilt" in fails[0], fails
    print("torch_dedup selftest: PASS")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plugin")
    ap.add_argument("--nranks", type=int, default=2)
    ap.add_argument("--rows", type=int, default=4096,
                    help="rows per (sender, receiver) pair (4096 x 2 KiB = 8 MiB)")
    ap.add_argument("--dup-frac", type=float, default=0.25,
                    help="share of rows that copy an earlier row of the same slice")
    ap.add_argument("--out", default=None)
    ap.add_argument("--hang-s", type=int, default=300,
                    help="seconds after which a rank is declared hung")
    ap.add_argument("--selftest", action="store_true",
                    help="check the counter parsing without torch or a GPU")
    args = ap.parse_args()
    if args.selftest:
        selftest()
        return
    if not args.plugin:
        ap.error("--plugin is required")
    args.out = args.out or tempfile.mkdtemp(prefix="rcmoe-dedup-")
    os.makedirs(args.out, exist_ok=True)
    stats = os.path.join(args.out, f"stats-dedup-{args.nranks}.jsonl")
    if os.path.exists(stats):
        os.remove(stats)
    os.environ.update({
        "NCCL_NET_PLUGIN": os.path.abspath(args.plugin),
        "NCCL_NET": "RCMoE",
        "NCCL_SOCKET_IFNAME": os.environ.get("NCCL_SOCKET_IFNAME", "lo"),
        "RCMOE_SOCKET_IFNAME": os.environ.get("RCMOE_SOCKET_IFNAME", "lo"),
        "RCMOE_STATS_FILE": stats,
        "RCMOE_STATS_FORMAT": "json",
        "NCCL_MNNVL_ENABLE": "0",
        "RCMOE_A2A_BITS": "0",
        "RCMOE_A2A_DEDUP": "on",
    })
    import torch.multiprocessing as mp
    port = e2e_common.free_port()
    results = [os.path.join(args.out, f"result-dedup-{r}.json") for r in range(args.nranks)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=run_rank, args=(r, args, port, results[r]))
             for r in range(args.nranks)]
    for p in procs:
        p.start()
    deadline = time.time() + args.hang_s + 30
    for p in procs:
        p.join(max(1, deadline - time.time()))
    ok = True
    for r, p in enumerate(procs):
        if p.is_alive():
            p.kill()
            print(f"rank {r}: hung, killed")
            ok = False
            continue
        if p.exitcode != 0 or not os.path.exists(results[r]):
            print(f"rank {r}: exit code {p.exitcode}")
            ok = False
            continue
        with open(results[r]) as f:
            for fail in json.load(f)["failures"]:
                print(f"rank {r}: FAIL {fail}")
                ok = False
    fails, summary = check_counters(e2e_common.read_jsonl(stats))
    print(summary)
    for fail in fails:
        print(fail)
        ok = False
    print(f"e2e torch dedup nranks={args.nranks} dup={args.dup_frac}: "
          f"{'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
