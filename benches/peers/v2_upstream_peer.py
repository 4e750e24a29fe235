"""Times upstream Emotional-ED's V2 tabular experiments (`test_statistical.py`:
fear, anger, regret, integration, transfer) on the same seeds as
`emorl reproduce v2-tabular`, for benches/v2_side_by_side.sh.

Upstream's code is not part of emorl: point --upstream at a checkout of
hz1ulqu01gmnZH4/emotional-ed-test. Each `run_*_experiment` is called with its
default episodes and `n_seeds` seeds, its printing sent to /dev/null. Prints
one line per experiment and a total: wall seconds and CPU seconds of this
process.
"""

import argparse
import contextlib
import io
import os
import sys
import time

EXPERIMENTS = ["fear", "anger", "regret", "integration", "transfer"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, help="checkout of emotional-ed-test")
    ap.add_argument("--seeds", type=int, default=50)
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.upstream))
    os.chdir(args.upstream)
    import test_statistical as ts  # noqa: E402  (upstream's module)

    wall0, cpu0 = time.perf_counter(), time.process_time()
    for name in EXPERIMENTS:
        run = getattr(ts, f"run_{name}_experiment")
        w, c = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            run(n_seeds=args.seeds)
        print(f"{name}: wall {time.perf_counter() - w:.2f} s, cpu {time.process_time() - c:.2f} s")
    print(f"total: wall {time.perf_counter() - wall0:.2f} s, cpu {time.process_time() - cpu0:.2f} s")


if __name__ == "__main__":
    main()
