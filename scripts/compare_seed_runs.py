#!/usr/bin/env python3
"""Compare two `emorl reproduce` run directories seed by seed.

    python3 scripts/compare_seed_runs.py RUN_A RUN_B [--metrics m1,m2] [--permutations N]

For every experiment/agent stored in both runs (`seeds/<experiment>/<agent>/<seed>.json`)
and every scalar metric of its per-seed results (or only those named), it
pairs the two runs' values by seed and reports the means, the mean
difference, a two-sided sign-flip permutation p-value of the paired
differences, Holm's correction over all the comparisons made, and d_z
(mean difference / SD of the differences). Used for the check that the DQN
host backend learns like libtorch (docs/v2-dqn.md).
"""

import argparse
import json
import math
import pathlib
import random
import sys


def load(run: pathlib.Path) -> dict:
    out = {}
    for f in sorted((run / "seeds").glob("*/*/*.json")):
        exp, agent = f.parent.parent.name, f.parent.name
        result = json.loads(f.read_text())["result"]
        out.setdefault((exp, agent), {})[result["seed"]] = result
    return out


def sign_flip_p(diffs, permutations, rng):
    observed = abs(sum(diffs))
    if observed == 0:
        return 1.0
    hits = 0
    for _ in range(permutations):
        s = sum(d if rng.random() < 0.5 else -d for d in diffs)
        if abs(s) >= observed - 1e-12:
            hits += 1
    return (hits + 1) / (permutations + 1)


def holm(ps):
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    adjusted = [0.0] * len(ps)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=pathlib.Path)
    ap.add_argument("run_b", type=pathlib.Path)
    ap.add_argument("--metrics", help="comma-separated metric names (default: every scalar)")
    ap.add_argument("--permutations", type=int, default=10000)
    args = ap.parse_args()
    a, b = load(args.run_a), load(args.run_b)
    if not a or not b:
        sys.exit(f"no stored seeds under {args.run_a}/seeds or {args.run_b}/seeds")
    wanted = set(args.metrics.split(",")) if args.metrics else None
    rng = random.Random(0)
    rows = []
    for key in sorted(set(a) & set(b)):
        seeds = sorted(set(a[key]) & set(b[key]))
        if len(seeds) < 2:
            continue
        sample = a[key][seeds[0]]
        names = [k for k, v in sample.items() if k != "seed" and isinstance(v, (int, float))]
        for name in names:
            if wanted is not None and name not in wanted:
                continue
            xa = [float(a[key][s][name]) for s in seeds]
            xb = [float(b[key][s][name]) for s in seeds]
            diffs = [y - x for x, y in zip(xa, xb)]
            n = len(diffs)
            mean_d = sum(diffs) / n
            sd = math.sqrt(sum((d - mean_d) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
            dz = mean_d / sd if sd > 0 else 0.0
            p = sign_flip_p(diffs, args.permutations, rng)
            rows.append([key[0], key[1], name, n, sum(xa) / n, sum(xb) / n, mean_d, dz, p])
    if not rows:
        sys.exit("the two runs share no experiment, agent and metric with two seeds or more")
    adjusted = holm([r[-1] for r in rows])
    print(f"| experiment | agent | metric | seeds | {args.run_a.name} | {args.run_b.name} | difference | d_z | p | Holm p |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r, h in zip(rows, adjusted):
        exp, agent, name, n, ma, mb, md, dz, p = r
        print(f"| {exp} | {agent} | {name} | {n} | {ma:.3f} | {mb:.3f} | {md:+.3f} | {dz:+.2f} | {p:.3f} | {h:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
