#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Soak test shaped like expert-parallel MoE training (test/e2e/gpu-soak.sh runs it over every
configuration): N ranks on one GPU, each its own "node"
(NCCL_HOSTID), every byte through the rcmoe plugin (NCCL_NET=RCMoE).

The model: token embedding, L blocks of (LayerNorm, dense mixer, LayerNorm, MoE layer), a head.
Each MoE layer routes every token to its top-2 of E experts (E/N per rank) and, per step, does
what an expert-parallel job does: an int64 all_to_all_single of the split sizes, an int64
all_to_all_single of the expert ids, the token all_to_all_single (uneven splits that change
every step, --dtype fp32 or bf16) there and back, and the same two in backward; then one fp32
all_reduce of the replicated weights' gradients (about 2.5 M elements). Under bf16 autocast the
dispatched activations are fp32, as in the job that found the 2-bit crash.

Checks, every step, unless --no-verify (which runs the bare workload):
- every int64 exchange arrives exact: each sender publishes a signature of what it sent to each
  peer (an all_gather of int64 words), the receiver recomputes it over what arrived;
- token exchanges: exact with --bits 0; with 8/4/2 bits each received segment's sum must lie
  within 6 standard deviations of the sender's (stochastic rounding's variance per element is at
  most s^2/4, s = max|block|/L, 128-element blocks), and nothing may arrive non-finite;
- the replicated weights stay bit-identical on every rank (checked every 50 steps and at the end).
Any exception, NCCL error, GPU fault, hang (--hang-s) or failed check fails the run.

Usage: moe_soak.py --plugin /abs/libnccl-net-rcmoe.so --nranks 4 --bits 2 [--dtype fp32]
       [--steps N] [--min-collectives N] [--out DIR]
Prints one line "soak ... PASS|FAIL collectives=N" and exits 0 only on PASS.
"""
import argparse
import json
import os
import socket
import sys
import tempfile
import time
import traceback

D_MODEL = 512
EXPERTS = 8
TOP_K = 2
VOCAB = 2048
BLOCK = 128  # RCMOE_LSQ_BLOCK's default: the bound below assumes it


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Soak:
    """One rank's model, data and checks."""

    def __init__(self, rank, n, args, torch, dist, dev):
        self.rank, self.n, self.args = rank, n, args
        self.torch, self.dist, self.dev = torch, dist, dev
        self.collectives = 0
        self.failures = []
        self.tok_dtype = torch.float32 if args.dtype == "fp32" else torch.bfloat16
        self.levels = (1 << (args.bits - 1)) - 1 if args.bits else 0
        nn = torch.nn
        torch.manual_seed(1234)  # replicated weights: the same on every rank
        self.emb = nn.Embedding(VOCAB, D_MODEL).to(dev)
        self.blocks = []
        for _ in range(args.layers):
            b = nn.ModuleDict({
                "ln1": nn.LayerNorm(D_MODEL), "mix": nn.Linear(D_MODEL, D_MODEL),
                "ln2": nn.LayerNorm(D_MODEL), "router": nn.Linear(D_MODEL, EXPERTS),
            }).to(dev)
            self.blocks.append(b)
        self.head = nn.Linear(D_MODEL, VOCAB).to(dev)
        self.replicated = [p for m in [self.emb, self.head] + self.blocks for p in m.parameters()]
        torch.manual_seed(99 + rank)  # experts: this rank's own
        self.local = EXPERTS // n
        self.experts = [[nn.Sequential(nn.Linear(D_MODEL, 2 * D_MODEL), nn.GELU(),
                                       nn.Linear(2 * D_MODEL, D_MODEL)).to(dev)
                         for _ in range(self.local)] for _ in range(args.layers)]
        params = self.replicated + [p for layer in self.experts for e in layer
                                    for p in e.parameters()]
        self.opt = torch.optim.AdamW(params, lr=1e-3)
        # A fixed random first-order Markov chain: a task the model can learn.
        g = torch.Generator().manual_seed(7)
        self.chain = torch.randint(0, VOCAB, (VOCAB, 4), generator=g).to(dev)
        self.gen = torch.Generator(device=dev).manual_seed(1000 + rank)

    # ---- collectives, counted -------------------------------------------------------------

    def a2a(self, out, inp, out_splits, in_splits):
        self.dist.all_to_all_single(out, inp, out_splits, in_splits)
        self.collectives += 1

    def all_gather(self, x):
        out = self.torch.empty(self.n * x.numel(), dtype=x.dtype, device=self.dev)
        self.dist.all_gather_into_tensor(out, x.contiguous().view(-1))
        self.collectives += 1
        return out.view(self.n, *x.shape)

    def check(self, cond, what):
        if not cond and len(self.failures) < 20:
            self.failures.append(what)

    # ---- exactness and bound checks of one exchange ----------------------------------------

    def int_signature(self, x, splits):
        """Per destination segment: sum of words times their position, mod 2^61 (int64)."""
        t = self.torch
        w = x.contiguous().view(-1).view(t.int64) if x.element_size() == 8 else \
            x.contiguous().view(-1).view(t.int32).to(t.int64)
        per_row = w.numel() // max(1, x.shape[0]) if x.dim() > 1 else 1
        segs = t.split(w, [s * per_row for s in splits])
        out = []
        for s in segs:
            pos = t.arange(1, s.numel() + 1, device=self.dev, dtype=t.int64)
            out.append(((s & ((1 << 40) - 1)) * pos + (s >> 40) * 7919).sum() if s.numel()
                       else t.zeros((), dtype=t.int64, device=self.dev))
        return t.stack(out)

    def check_exact(self, sent, send_splits, got, recv_splits, what):
        if self.args.no_verify:
            return
        sig = self.all_gather(self.int_signature(sent, send_splits))  # [src, dst]
        mine = self.int_signature(got, recv_splits)
        bad = (sig[:, self.rank] != mine).nonzero().view(-1).tolist()
        self.check(not bad, f"step {self.step}: {what} from ranks {bad} not exact")

    def float_moments(self, x, splits):
        """Per destination segment: the sum, and a bound on the variance of LSQ's rounding.
        The plugin cuts blocks from the start of each network step, which need not fall on a
        128-element boundary of the segment, so an element's block maximum is bounded by the
        largest |x| of its own 128 elements and their two neighbours."""
        t = self.torch
        f = x.float().reshape(-1, BLOCK)
        rows_per = x.shape[1] // BLOCK
        amax = f.abs().amax(dim=1)
        wide = amax.clone()
        if amax.numel() > 1:
            wide[1:] = t.maximum(wide[1:], amax[:-1])
            wide[:-1] = t.maximum(wide[:-1], amax[1:])
        s = wide / max(1, self.levels)
        var = s.double() ** 2 * BLOCK / 4
        if self.tok_dtype == t.bfloat16:  # decoded values are rounded to bf16 (half an ulp)
            var = var + (wide.double() * 2.0 ** -9) ** 2 * BLOCK
        sums = f.double().sum(dim=1)
        out = []
        for seg_s, seg_v in zip(t.split(sums, [k * rows_per for k in splits]),
                                t.split(var, [k * rows_per for k in splits])):
            out.append(t.stack([seg_s.sum(), seg_v.sum()]))
        return t.stack(out)

    def check_tokens(self, sent, send_splits, got, recv_splits, what):
        if self.args.no_verify:
            return
        t = self.torch
        self.check(bool(t.isfinite(got).all()), f"step {self.step}: {what}: non-finite arrived")
        if not self.args.bits:
            return self.check_exact(sent, send_splits, got, recv_splits, what)
        mom = self.all_gather(self.float_moments(sent, send_splits))  # [src, dst, 2]
        recv = t.stack([seg.double().sum() for seg in t.split(got, recv_splits)])
        want, var = mom[:, self.rank, 0], mom[:, self.rank, 1]
        tol = 6 * var.sqrt() + 1e-6 * (1 + want.abs()) + 1e-3
        bad = ((recv - want).abs() > tol).nonzero().view(-1).tolist()
        self.check(not bad, f"step {self.step}: {what} from ranks {bad}: segment sums "
                   f"{recv.tolist()} vs {want.tolist()} beyond 6 sigma {tol.tolist()}")

    # ---- the model ---------------------------------------------------------------------------

    def moe(self, li, x):
        """x: [T, d] fp32. Returns the combined expert outputs, [T, d] fp32."""
        t, n = self.torch, self.n
        logits = self.blocks[li]["router"](x).float()
        weights, expert = t.topk(logits.softmax(dim=-1), TOP_K, dim=-1)  # [T, K]
        flat_e = expert.reshape(-1)
        order = t.argsort(flat_e, stable=True)
        token_of = order // TOP_K
        dest = flat_e[order] // self.local
        send_counts = t.bincount(dest, minlength=n).to(t.int64)
        recv_counts = t.empty_like(send_counts)
        self.a2a(recv_counts, send_counts, None, None)
        self.check_exact(send_counts.view(n, 1), [1] * n, recv_counts.view(n, 1), [1] * n,
                         f"layer {li} split sizes")
        send_splits, recv_splits = send_counts.tolist(), recv_counts.tolist()
        ids_out = flat_e[order].contiguous()
        ids_in = t.empty(sum(recv_splits), dtype=t.int64, device=self.dev)
        self.a2a(ids_in, ids_out, recv_splits, send_splits)
        self.check_exact(ids_out.view(-1, 1), send_splits, ids_in.view(-1, 1), recv_splits,
                         f"layer {li} expert ids")
        lo = self.rank * self.local
        if not self.args.no_verify:
            ok = bool(((ids_in >= lo) & (ids_in < lo + self.local)).all())
            self.check(ok, f"step {self.step}: layer {li}: expert ids for another rank arrived")
        xs = x[token_of].to(self.tok_dtype)
        recv = _A2A.apply(self, xs, recv_splits, send_splits, f"layer {li} tokens")
        y = t.zeros(recv.shape[0], D_MODEL, dtype=t.float32, device=self.dev)
        for j in range(self.local):
            m = ids_in == lo + j
            if bool(m.any()):
                y = y.index_put((m.nonzero().view(-1),),
                                self.experts[li][j](recv[m].float()).float())
        back = _A2A.apply(self, y.to(self.tok_dtype), send_splits, recv_splits,
                          f"layer {li} tokens back").float()
        w = weights.reshape(-1)[order].unsqueeze(1)
        return t.zeros_like(x).index_add(0, token_of, back * w)

    def batch(self):
        t = self.torch
        b, s = self.args.batch, self.args.seq
        start = t.randint(0, VOCAB, (b,), device=self.dev, generator=self.gen)
        pick = t.randint(0, 4, (b, s), device=self.dev, generator=self.gen)
        toks = [start]
        for i in range(s):
            toks.append(self.chain[toks[-1], pick[:, i]])
        seq = t.stack(toks, dim=1)
        return seq[:, :-1], seq[:, 1:]

    def train_step(self):
        t = self.torch
        inp, tgt = self.batch()
        with t.autocast("cuda", dtype=t.bfloat16):
            x = self.emb(inp).float().view(-1, D_MODEL)
            for li, b in enumerate(self.blocks):
                x = x + b["mix"](b["ln1"](x)).float()
                x = x + self.moe(li, b["ln2"](x).float())
            logits = self.head(x).float()
        loss = t.nn.functional.cross_entropy(logits, tgt.reshape(-1))
        self.opt.zero_grad(set_to_none=False)
        loss.backward()
        grads = t.cat([p.grad.view(-1) for p in self.replicated])
        self.dist.all_reduce(grads)
        self.collectives += 1
        grads /= self.n
        off = 0
        for p in self.replicated:
            p.grad.copy_(grads[off:off + p.numel()].view_as(p))
            off += p.numel()
        self.opt.step()
        return float(loss)

    def check_replicas(self):
        t = self.torch
        words = t.cat([p.detach().view(-1).view(t.int32) for p in self.replicated])
        sig = (words.to(t.int64) * t.arange(1, words.numel() + 1, device=self.dev)).sum()
        all_sig = self.all_gather(sig.view(1)).view(-1)
        self.check(bool((all_sig == all_sig[0]).all()),
                   f"step {self.step}: replicated weights differ between ranks")


class _A2A:
    """all_to_all_single as an autograd function: the gradient goes back the same way."""

    @staticmethod
    def apply(soak, x, out_splits, in_splits, what):
        import torch

        class F(torch.autograd.Function):
            @staticmethod
            def forward(ctx, inp):
                out = torch.empty(sum(out_splits), inp.shape[1], dtype=inp.dtype,
                                  device=inp.device)
                soak.a2a(out, inp.contiguous(), out_splits, in_splits)
                soak.check_tokens(inp, in_splits, out, out_splits, what)
                return out

            @staticmethod
            def backward(ctx, g):
                g = g.contiguous()
                out = torch.empty(sum(in_splits), g.shape[1], dtype=g.dtype, device=g.device)
                soak.a2a(out, g, in_splits, out_splits)
                soak.check_tokens(g, out_splits, out, in_splits, what + " (grad)")
                return out

        return F.apply(x)


def run_rank(rank, args, port, result_file):
    os.environ["NCCL_HOSTID"] = f"rcmoe-soak-h{rank}"
    import faulthandler
    faulthandler.dump_traceback_later(args.hang_s, exit=True)
    import torch
    import torch.distributed as dist

    torch.cuda.set_device(0)
    dev = torch.device("cuda", 0)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=args.nranks, device_id=dev)
    soak = Soak(rank, args.nranks, args, torch, dist, dev)
    losses = []
    t0 = time.time()
    try:
        soak.step = 0
        while soak.step < args.steps or soak.collectives < args.min_collectives:
            faulthandler.dump_traceback_later(args.hang_s, exit=True)  # per step
            losses.append(soak.train_step())
            soak.step += 1
            if soak.step % 50 == 0 and not args.no_verify:
                soak.check_replicas()
            if rank == 0 and args.kill_rank is not None:
                with open(os.path.join(args.out, "progress"), "w") as f:
                    f.write(str(soak.step))
            if rank == 0 and soak.step % args.print_every == 0:
                print(f"[rank 0] step {soak.step} loss {losses[-1]:.4f} collectives "
                      f"{soak.collectives} ({time.time() - t0:.0f} s)", flush=True)
            if soak.failures:
                break
        if not args.no_verify:
            soak.check_replicas()
        torch.cuda.synchronize()
    except Exception:
        soak.failures.append("exception: " + traceback.format_exc())
    dist.destroy_process_group()
    with open(result_file, "w") as f:
        json.dump({"rank": rank, "failures": soak.failures, "collectives": soak.collectives,
                   "steps": soak.step, "first_loss": losses[:1], "last_loss": losses[-1:],
                   "seconds": time.time() - t0}, f)


def peer_death_drill(args, procs):
    """Kill one rank mid-training; time how long each survivor takes to end, and how."""
    progress = os.path.join(args.out, "progress")
    t_start = time.time()
    while time.time() - t_start < args.hang_s:
        try:
            with open(progress) as f:
                if int(f.read() or 0) >= args.kill_after:
                    break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    else:
        print("peer-death: training never reached the kill point")
        sys.exit(1)
    import signal
    os.kill(procs[args.kill_rank].pid, signal.SIGKILL)
    t_kill = time.time()
    ended = {}
    while len(ended) < len(procs) - 1 and time.time() - t_kill < args.hang_s:
        for r, p in enumerate(procs):
            if r != args.kill_rank and r not in ended and not p.is_alive():
                ended[r] = (time.time() - t_kill, p.exitcode)
        time.sleep(0.05)
    for r, p in enumerate(procs):
        if p.is_alive():
            p.kill()
    knobs = {k: v for k, v in os.environ.items() if k.startswith(("TORCH_NCCL", "NCCL_", "RCMOE_"))
             and k not in ("NCCL_NET_PLUGIN", "NCCL_NET")}
    for r in sorted(ended):
        print(f"peer-death: rank {r} ended {ended[r][0]:.1f} s after the kill, exit code "
              f"{ended[r][1]}")
    alive = [r for r in range(len(procs)) if r != args.kill_rank and r not in ended]
    print(f"peer-death: rank {args.kill_rank} killed after step {args.kill_after}; "
          f"{len(ended)} survivors ended within {max([e[0] for e in ended.values()] or [0]):.1f} s"
          f"{'; still running after ' + str(args.hang_s) + ' s: ' + str(alive) if alive else ''}"
          f"; settings {knobs}")
    sys.exit(0 if not alive else 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plugin", required=True,
                    help="the plugin .so, or 'socket' for NCCL's built-in Socket transport "
                         "(the baseline of the peer-death drill; --bits must be 0)")
    ap.add_argument("--nranks", type=int, default=4)
    ap.add_argument("--bits", type=int, default=0, choices=(0, 2, 4, 8))
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"),
                    help="datatype of the dispatched tokens")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--min-collectives", type=int, default=3000)
    ap.add_argument("--no-verify", action="store_true",
                    help="the bare workload: no signature exchanges, no checks")
    ap.add_argument("--print-every", type=int, default=25)
    ap.add_argument("--hang-s", type=int, default=600)
    ap.add_argument("--kill-rank", type=int, default=None,
                    help="peer-death drill: SIGKILL this rank (not 0) after --kill-after steps "
                         "and report how long the others take to end")
    ap.add_argument("--kill-after", type=int, default=20)
    ap.add_argument("--out", default=tempfile.mkdtemp(prefix="rcmoe-soak-"))
    args = ap.parse_args()
    if EXPERTS % args.nranks:
        sys.exit(f"{EXPERTS} experts do not divide over {args.nranks} ranks")
    if args.plugin == "socket" and args.bits:
        sys.exit("--plugin socket carries everything losslessly: --bits must be 0")
    os.makedirs(args.out, exist_ok=True)
    socket_net = args.plugin == "socket"
    os.environ.update({
        "NCCL_NET_PLUGIN": "none" if socket_net else os.path.abspath(args.plugin),
        "NCCL_NET": "Socket" if socket_net else "RCMoE",
        "NCCL_SOCKET_IFNAME": os.environ.get("NCCL_SOCKET_IFNAME", "lo"),
        "RCMOE_SOCKET_IFNAME": os.environ.get("RCMOE_SOCKET_IFNAME", "lo"),
        "NCCL_MNNVL_ENABLE": "0",
        "RCMOE_A2A_BITS": str(args.bits),
    })
    import torch.multiprocessing as mp
    port = free_port()
    tag = f"n{args.nranks}-b{args.bits}-{args.dtype}"
    results = [os.path.join(args.out, f"soak-{tag}-{r}.json") for r in range(args.nranks)]
    for path in results:
        if os.path.exists(path):
            os.remove(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=run_rank, args=(r, args, port, results[r]))
             for r in range(args.nranks)]
    for p in procs:
        p.start()
    if args.kill_rank is not None:
        return peer_death_drill(args, procs)
    deadline = time.time() + args.hang_s + 60
    for p in procs:
        p.join(max(1, deadline - time.time()))
    ok, colls = True, []
    for r, p in enumerate(procs):
        if p.is_alive():
            p.kill()
            print(f"rank {r}: hung, killed")
            ok = False
            continue
        if p.exitcode != 0 or not os.path.exists(results[r]):
            print(f"rank {r}: exit code {p.exitcode}, no result")
            ok = False
            continue
        with open(results[r]) as f:
            res = json.load(f)
        colls.append(res["collectives"])
        for fail in res["failures"]:
            print(f"rank {r}: FAIL {fail}")
            ok = False
        print(f"rank {r}: {res['steps']} steps, {res['collectives']} collectives, loss "
              f"{res['first_loss']} -> {res['last_loss']}, {res['seconds']:.0f} s")
    if colls and min(colls) < args.min_collectives:
        print(f"only {min(colls)} collectives, fewer than {args.min_collectives}")
        ok = False
    bufs = os.environ.get("RCMOE_CUDA_BUFFERS", "auto")
    print(f"soak {tag} buffers={bufs}: {'PASS' if ok else 'FAIL'} "
          f"collectives={min(colls) if colls else 0}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
