"""Print the scipy reference values hard-coded in crates/stats/src/paired.rs.

Not run by cargo: the numbers are pasted into the unit tests, and this script
says where they came from. Usage: python paired_reference.py (scipy >= 1.17,
whose `wilcoxon` defaults the Rust code follows)."""

import warnings

import numpy as np
import scipy
from scipy import stats
from scipy.optimize import brentq


def show(name, x):
    print(f"{name} = [{', '.join(repr(float(v)) for v in x)}]")


def samples():
    """The paired samples A..E of the tests (values rounded to print short)."""
    rng = np.random.default_rng(20240601)
    out = {}
    # A: n = 12, no ties, no zeros -> exact signed-rank distribution.
    c = np.round(rng.normal(0.5, 0.2, 12), 3)
    out["A"] = (c, np.round(c + rng.normal(0.08, 0.1, 12), 3))
    # B: n = 12, tied |d| and zeros -> all 2^12 sign flips.
    c = np.round(rng.uniform(0, 1, 12), 1)
    t = c.copy()
    t[:9] += [0.1, 0.1, 0.2, -0.1, 0.3, 0.2, 0.0, 0.1, -0.2]
    out["B"] = (c, np.round(t, 1))
    # C: n = 40 on a 0.05 grid (ties, zeros) -> normal approximation.
    c = np.round(rng.uniform(0, 1, 40) * 20) / 20
    out["C"] = (c, np.round((c + rng.normal(0.04, 0.12, 40)) * 20) / 20)
    # D: n = 40, no ties -> exact.
    c = np.round(rng.normal(0, 1, 40), 4)
    out["D"] = (c, np.round(c + rng.normal(0.25, 1.0, 40), 4))
    # E: n = 60, no ties -> normal approximation (n > 50).
    c = np.round(rng.normal(0, 1, 60), 4)
    out["E"] = (c, np.round(c + rng.normal(0.2, 1.0, 60), 4))
    return out


def paired(c, t):
    c, t = [float(v) for v in c], [float(v) for v in t]
    d = np.array(t) - np.array(c)
    r = stats.ttest_rel(t, c)
    ci = r.confidence_interval(0.95)
    w = stats.wilcoxon(t, c)
    sd = np.std(d, ddof=1)
    print(
        "  t, df, p:", repr(float(r.statistic)), repr(float(r.df)), repr(float(r.pvalue)),
        "\n  ci:", repr(float(ci.low)), repr(float(ci.high)),
        "\n  mean d, d_z:", repr(float(np.mean(d))), repr(float(np.mean(d) / sd) if sd else None),
        "\n  wilcoxon:", repr(float(w.statistic)), repr(float(w.pvalue)),
        "nonzero", int(np.count_nonzero(d)),
    )


def power(d_z, n, alpha):
    """P(|T| > t_crit) under nct(n - 1, d_z sqrt(n)); nct.cdf is NaN far in the
    lower tail for some arguments, where it is negligible."""
    df, nc = n - 1, d_z * np.sqrt(n)
    t_crit = stats.t.ppf(1 - alpha / 2, df)
    return stats.nct.sf(t_crit, df, nc) + np.nan_to_num(stats.nct.cdf(-t_crit, df, nc))


def main():
    warnings.simplefilter("ignore")
    print("scipy", scipy.__version__, "numpy", np.__version__)
    for name, (c, t) in samples().items():
        show(name + "_C", c)
        show(name + "_T", t)
        paired(c, t)
    print("edge cases")
    for c, t in [
        ([1.0, 2, 3, 4, 5], [1.0, 2, 3, 4, 5]),
        ([0.0] * 20, [0.0] * 20),
        ([1.0, 2, 3, 4, 5], [1.5, 2.5, 3.5, 4.5, 5.5]),
        ([1.0] * 20, [0.5] * 20),
        ([1.0, 2.0], [2.0, 1.5]),
    ]:
        r, w = stats.ttest_rel(t, c), stats.wilcoxon(t, c)
        print(" ", len(c), r.statistic, r.pvalue, w.statistic, w.pvalue)
    print("power")
    for d_z, n, alpha in [
        (0.25, 128, 0.05), (0.5, 20, 0.05), (0.3, 128, 0.05 / 6), (0.0, 30, 0.05),
        (1.0, 5, 0.05), (0.1, 2000, 0.01), (2.0, 2, 0.05), (0.8, 3, 0.2),
    ]:
        print(" ", d_z, n, alpha, repr(float(power(d_z, n, alpha))))
    print("min detectable d_z")
    for n, alpha, target in [
        (128, 0.05, 0.8), (128, 0.05 / 6, 0.8), (20, 0.05, 0.9), (1000, 0.001, 0.95), (4, 0.05, 0.8),
    ]:
        root = brentq(lambda d: power(d, n, alpha) - target, 1e-9, 10, xtol=1e-14, rtol=1e-15)
        print(" ", n, alpha, target, repr(root))


if __name__ == "__main__":
    main()
