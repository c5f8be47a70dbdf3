#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Draw an rcmoe-bench JSON document: busbw against size per op, Socket beside RCMoE (and
RCMoE-collNet when the run had it; median over runs), and, for --check error runs, the
relative L2 error. Run by `rcmoe-bench --plot FILE.png`; also usable alone:
rcmoe-bench-plot.py RESULT.json OUT.png

matplotlib is optional for rcmoe: without it this prints a note and exits 3.
"""
import json
import statistics
import sys


def main():
    if len(sys.argv) != 3:
        print("usage: rcmoe-bench-plot.py RESULT.json OUT.png", file=sys.stderr)
        return 2
    try:
        import matplotlib
        matplotlib.use("Agg")  # no display on a GPU box
        import matplotlib.pyplot as plt
    except ImportError:
        print("rcmoe-bench-plot: matplotlib is not importable; no plot", file=sys.stderr)
        return 3
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    cfg = doc["config"]
    ops = cfg["ops"]
    lossy = cfg.get("check") == "error"

    # (op, transport) -> size -> [busbw of each run], and the same for relL2
    bw, err = {}, {}
    for run in doc["runs"]:
        for row in run["results"]:
            key = (row["op"], run["transport"])
            if row.get("busbw") is not None:
                bw.setdefault(key, {}).setdefault(row["size"], []).append(row["busbw"])
            if row.get("rel_l2") is not None:
                err.setdefault(key, {}).setdefault(row["size"], []).append(row["rel_l2"])

    # the same transport, the same colour everywhere
    color = {"Socket": "C0", "RCMoE": "C1", "RCMoE-collNet": "C2"}
    nrows = 2 if lossy else 1
    fig, axes = plt.subplots(nrows, len(ops), figsize=(5 * len(ops), 4 * nrows), squeeze=False)
    for j, op in enumerate(ops):
        ax = axes[0][j]
        for transport in cfg["transports"]:
            pts = sorted(bw.get((op, transport), {}).items())
            if pts:
                ax.plot([p[0] for p in pts], [statistics.median(p[1]) for p in pts],
                        marker="o", label=transport, color=color.get(transport))
        ax.set_xscale("log", base=2)
        ax.set_title(f"{op} {cfg['datatype']}, {cfg['nranks']} ranks")
        ax.set_xlabel("size per rank (B)")
        ax.set_ylabel("busbw (GB/s)")
        ax.grid(True, alpha=0.3)
        ax.legend()
        if lossy:
            ax = axes[1][j]
            for transport in cfg["transports"]:
                pts = sorted(err.get((op, transport), {}).items())
                pts = [(s, statistics.median(v)) for s, v in pts if min(v) > 0]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                            label=transport, color=color.get(transport))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("size per rank (B)")
            ax.set_ylabel("relative L2 error")
            ax.grid(True, alpha=0.3)
            if ax.lines:
                ax.legend()
    fig.suptitle("rcmoe-bench: NCCL Socket vs RCMoE" + (" (simulated)" if cfg.get("simulated")
                                                        else ""))
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
