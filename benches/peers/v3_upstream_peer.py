"""Times upstream Emotional-ED's V3 experiment scripts (Exp 17, 19-23) on
the same seeds as `emorl reproduce v3`, for benches/v3_side_by_side.sh.

Upstream's code is not part of emorl: point --upstream at a checkout of
hz1ulqu01gmnZH4/emotional-ed-test. Each script's own `run_experiment` is
called with its default episodes and `n_seeds` seeds (seeds 0..n-1, as the
scripts loop); its printing goes to /dev/null. Prints one line per script
and a total: wall seconds and CPU seconds of this process.
"""

import argparse
import contextlib
import importlib.util
import io
import os
import sys
import time

SCRIPTS = [
    "exp17_pitch_black",
    "exp19_changing_seasons",
    "exp20_bottleneck",
    "exp21_visual_transfer",
    "exp22_predator_prey",
    "exp23_battery_run",
]


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, help="checkout of emotional-ed-test")
    ap.add_argument("--seeds", type=int, default=50)
    args = ap.parse_args()
    folder = os.path.join(args.upstream, "experiments")
    if not os.path.isdir(folder):
        sys.exit(f"{folder}: no such directory (clone hz1ulqu01gmnZH4/emotional-ed-test)")
    sys.path.insert(0, folder)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for name in SCRIPTS:
        module = load(os.path.join(folder, name + ".py"), name)
        w, c = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            module.run_experiment(n_seeds=args.seeds)
        print(f"{name}: wall {time.perf_counter() - w:.2f} s, cpu {time.process_time() - c:.2f} s")
    print(f"total: wall {time.perf_counter() - wall0:.2f} s, cpu {time.process_time() - cpu0:.2f} s")


if __name__ == "__main__":
    main()
