#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""rcmoe-check: a two-minute check that a PyTorch job's inter-node traffic goes through the rcmoe
plugin, and arrives intact. Run it like a training script, through rcmoe-run and torchrun:

    tools/rcmoe-run -- torchrun --nnodes 2 --nproc-per-node 8 ... tools/rcmoe-check.py
    tools/rcmoe-run -- torchrun --nproc-per-node 2 tools/rcmoe-check.py --one-host   # one machine

Each rank does an all_reduce (fp32, exact: small integers) and an all_to_all_single (bf16; exact
when lossless, within LSQ's bound when RCMOE_A2A_BITS is set), then finalizes NCCL, and reads the
counters its plugin wrote (RCMOE_STATS_FILE, set here to a temporary file when unset) to show
that the traffic was carried by the plugin. Exit status 0 only if every check passed on this rank.

--one-host makes every rank its own "node" (NCCL_HOSTID) so that, on one machine, the traffic
crosses the net plugin at all; ranks then share the GPUs round-robin (start MPS when several
ranks share one GPU: nvidia-cuda-mps-control -d).
"""
import argparse
import glob
import json
import os
import sys
import tempfile


def log(rank, msg):
    print(f"rcmoe-check: rank {rank}: {msg}", flush=True)


def counters(pattern):
    """Sum the finalize records of this process's stats file(s) per direction."""
    totals = {}
    for path in glob.glob(pattern):
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                rec = json.loads(line)
                if rec.get("event") != "finalize" or rec.get("pid") != os.getpid():
                    continue
                t = totals.setdefault(rec.get("dir", "?"), [0, 0, 0])
                t[0] += rec.get("messages", 0)
                t[1] += rec.get("logical_bytes", 0)
                t[2] += rec.get("wire_bytes", 0)
    return totals


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--one-host", action="store_true",
                    help="every rank its own node (NCCL_HOSTID), GPUs shared round-robin")
    ap.add_argument("--elements", type=int, default=1 << 22,
                    help="elements per rank of each collective [4 Mi]")
    args = ap.parse_args()

    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.one_host:
        os.environ["NCCL_HOSTID"] = f"rcmoe-check-{local_rank}"
    stats_dir = None
    if not os.environ.get("RCMOE_STATS_FILE"):
        stats_dir = tempfile.mkdtemp(prefix="rcmoe-check-")
        os.environ["RCMOE_STATS_FILE"] = os.path.join(stats_dir, "stats-%p.jsonl")
    stats_pattern = os.environ["RCMOE_STATS_FILE"].replace("%p", str(os.getpid()))
    stats_pattern = stats_pattern.replace("%h", "*")
    if os.environ.get("NCCL_NET") != "RCMoE":
        log(rank, "NCCL_NET is not RCMoE: run through tools/rcmoe-run, or NCCL may fall back "
            "to its own transport without saying so")

    import torch
    import torch.distributed as dist

    torch.cuda.set_device(local_rank % torch.cuda.device_count())
    dist.init_process_group("nccl")
    dev = torch.device("cuda", torch.cuda.current_device())
    failed = []

    # all_reduce: rank r contributes r + 1 + (i mod 7); sums of small integers are exact in fp32.
    n = args.elements
    idx = torch.arange(n, device=dev, dtype=torch.float32)
    x = (idx % 7) + (rank + 1)
    dist.all_reduce(x)
    want = (idx % 7) * world + world * (world + 1) / 2
    if not torch.equal(x, want):
        failed.append(f"all_reduce: {int((x != want).sum())} of {n} elements wrong")

    # all_to_all_single: rank r sends to rank p a block of values that encode (r, p, i).
    per = max(1, n // world)
    src = torch.empty(world, per, device=dev, dtype=torch.float32)
    for p in range(world):
        src[p] = torch.sin(torch.arange(per, device=dev) * 0.001 + rank * 1.7 + p * 0.3)
    out = torch.empty_like(src, dtype=torch.bfloat16)
    dist.all_to_all_single(out, src.to(torch.bfloat16))
    ref = torch.empty_like(src)
    for q in range(world):
        ref[q] = torch.sin(torch.arange(per, device=dev) * 0.001 + q * 1.7 + rank * 0.3)
    ref = ref.to(torch.bfloat16).float()
    bits = int(os.environ.get("RCMOE_A2A_BITS", "0") or 0)
    err = (out.float() - ref).abs().max().item()
    # LSQ: at most one quantization step per element, the step being 2 max|x| / (2^bits - 2)
    # per block, with |x| <= 1 here; lossless must be exact.
    bound = 0.0 if bits == 0 else 2.0 / (2 ** bits - 2) + 1e-2
    if err > bound:
        failed.append(f"all_to_all_single: max error {err:.3g} > {bound:.3g}")

    torch.cuda.synchronize()
    dist.destroy_process_group()  # finalizes the plugin: its counters are written

    totals = counters(stats_pattern)
    sent = totals.get("send", [0, 0, 0])
    if world > 1 and sent[0] == 0:
        failed.append("the plugin counted no message: NCCL did not use it for this job (on one "
                      "machine, use --one-host; else see the README's Troubleshooting)")
    else:
        ratio = sent[1] / sent[2] if sent[2] else 1.0
        log(rank, f"the plugin sent {sent[0]} messages, {sent[1]} bytes as {sent[2]} on the "
            f"wire (ratio {ratio:.2f})")
    if failed:
        for f in failed:
            log(rank, "FAIL " + f)
        return 1
    log(rank, f"OK (world {world}, all_reduce exact, all_to_all_single "
        f"{'exact' if bits == 0 else f'within the {bits}-bit bound'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
