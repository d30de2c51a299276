"""Coverage of the 95% intervals in pipeline.metrics at the VLMemes design (26 toxic, 25 non-toxic).

A simulation, not a test (minutes of CPU): for each statistic and design point it draws `--reps`
data sets from a known model, computes every candidate interval, and prints the share of intervals
that contain the true value (coverage, target >= 0.93), the mean width, and how often a method gave
no interval ("n/a": not estimable; counted as not covering). The methods pipeline.metrics uses are
marked with *. docs/metrics.md quotes the table.

    nice .venv/bin/python benchmarks/coverage.py [--reps 2000] [--boot 2000] [--seed 20261202] [--quick]

Models
    AUROC  binormal: non-toxic scores N(0, 1), toxic N(d, 1) with d = sqrt(2) * Phi^-1(AUROC);
           "coarse": the same scores read out as one of 11 levels round(10 * Phi(x - d/2)) / 10
           (VLM probabilities are often coarse), whose true AUROC (ties 1/2) is computed exactly;
           "uneq": toxic N(d, 2^2), a binormal curve that is not symmetric.
    F1     toxic-class F1 at (sensitivity, specificity): tp ~ Bin(26, se), fp ~ Bin(25, 1 - sp), the
           true value the population F1 at prevalence 26/51.
    kappa  two answer sets on 51 memes, both saying toxic with probability p, with Cohen's kappa k.
    Wilson exact coverage (binomial sums, no simulation) of k/26 and k/51.
    paired AUROC difference (candidates: MOVER from the logit-DeLong intervals, MOVER from the
           reported hm_delong intervals, Wald on the paired DeLong variance) and paired accuracy
           difference (Newcombe method 10): two correlated binormal scorers (correlation 0.5 of
           the latent scores within each class), each thresholded at d/2 for its answers.
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from scipy.stats import beta, binom, norm

from pipeline import metrics as M  # noqa: E402

N_POS, N_NEG = 26, 25


# ----------------------------------------------------------------------------- AUROC

def auroc_design(kind: str, auc: float):
    """(sampler(rng) -> (pos scores, neg scores), true AUROC)."""
    d = math.sqrt(2) * norm.ppf(auc)
    if kind == "binormal":
        return (lambda rng: (rng.normal(d, 1, N_POS), rng.normal(0, 1, N_NEG))), auc
    if kind == "uneq":
        dd = norm.ppf(auc) * math.sqrt(1 + 4)                  # P(N(dd, 4) > N(0, 1)) = auc
        return (lambda rng: (rng.normal(dd, 2, N_POS), rng.normal(0, 1, N_NEG))), auc
    if kind == "coarse":
        edges = norm.ppf((np.arange(11) + 0.5) / 10) + d / 2   # level j when x - d/2 in its bin
        def probs(mu):
            cdf = np.concatenate([[0.0], norm.cdf(edges[:-1] - mu), [1.0]])
            return np.diff(cdf)
        pp, pn = probs(d), probs(0.0)
        true = float((pp * (np.cumsum(pn) - 0.5 * pn)).sum())
        levels = np.arange(11) / 10
        return (lambda rng: (rng.choice(levels, N_POS, p=pp), rng.choice(levels, N_NEG, p=pn))), true
    raise ValueError(kind)


def auroc_methods(pos: np.ndarray, neg: np.ndarray, rng, n_boot: int) -> dict:
    sc = M.ScoreCounts.from_rows(np.r_[np.ones(pos.size, int), np.zeros(neg.size, int)], np.r_[pos, neg])
    out = {}
    e = M.auroc_estimate(sc, rng=rng, n_boot=n_boot, fast=None)
    out["* chosen"] = (e.low, e.high)
    value = float(M._auroc_from_counts(sc.neg, sc.pos))
    se = M._delong_se(sc, value)
    out["DeLong Wald"] = (max(0.0, value - M.Z * se), min(1.0, value + M.Z * se)) if se > 0 else None
    out["DeLong logit"] = tuple(map(float, M._logit_limits(value, se))) if se > 0 and 0 < value < 1 else None
    lo, hi = M._hm_score_limits(value, sc.n_pos, sc.n_neg)
    out["HM score"] = (float(lo), float(hi))
    old = M._auroc_bootstrap(sc, rng, n_boot)
    old = old[np.isfinite(old)]
    out["percentile (old)"] = tuple(np.quantile(old, [0.025, 0.975]))
    boot = M._auroc_boot_stratified(sc, rng, n_boot)
    out["percentile strat"] = tuple(np.quantile(boot, [0.025, 0.975]))
    jack, w = M._auroc_jackknife(sc)
    out["BCa strat"] = M._bca_limits(value, boot, jack, w)
    return out


# ----------------------------------------------------------------------------- F1

def f1_methods(tp: int, fp: int, rng, n_boot: int) -> dict:
    fn = N_POS - tp
    tn = N_NEG - fp
    table = np.array([[0, tn, fp], [0, fn, tp]])
    out = {}
    e = M.classification_from_counts(table, None, seed=int(rng.integers(1 << 31)), n_boot=n_boot).f1
    out["* chosen"] = None if e.low is None else (e.low, e.high)
    m = tp + fp + fn
    f = 2 * tp / (2 * tp + fp + fn) if m else float("nan")
    se = math.sqrt(4 * tp * (fp + fn) * m / (2 * tp + fp + fn) ** 4) if m else 0.0
    out["delta Wald"] = (max(0.0, f - M.Z * se), min(1.0, f + M.Z * se)) if se > 0 else None
    out["delta logit"] = tuple(map(float, M._logit_limits(f, se))) if se > 0 else None
    lo, hi = M._f1_jaccard_wilson(tp, m) if m else (None, None)
    out["Wilson on J"] = None if lo is None else (float(lo), float(hi))
    c = rng.multinomial(N_POS + N_NEG, np.array([tp, fp, fn, tn]) / (N_POS + N_NEG), size=n_boot)
    old = M._f1_from_counts(c[:, 0], c[:, 1], c[:, 2])
    old = old[np.isfinite(old)]
    out["percentile (old)"] = tuple(np.quantile(old, [0.025, 0.975]))
    boot = M._f1_boot_stratified(tp, fn, fp, tn, rng, n_boot)
    fin = boot[np.isfinite(boot)]
    out["percentile strat"] = tuple(np.quantile(fin, [0.025, 0.975])) if fin.size else None
    jack, w = M._f1_jackknife(tp, fp, fn, tn)
    out["BCa strat"] = M._bca_limits(f, boot, jack, w) if m else None
    return out


# ----------------------------------------------------------------------------- kappa

def kappa_methods(joint: np.ndarray, rng, n_boot: int) -> dict:
    out = {}
    table = np.zeros((2, 3, 3), dtype=np.int64)
    table[0, 1:, 1:] = joint                       # truth does not enter kappa
    e = M.agreement_from_counts(table, seed=int(rng.integers(1 << 31)), n_boot=n_boot).kappa
    out["* chosen"] = None if e.low is None else (e.low, e.high)
    k = float(M._kappa_from_tables(joint))
    se = M._fce_kappa_se(joint)
    out["FCE Wald"] = None if not se else (max(-1.0, k - M.Z * se), min(1.0, k + M.Z * se))
    lo, hi = M._kappa_wilson_limits(joint)
    out["Wilson on p_o"] = None if lo is None else (lo, hi)
    c = rng.multinomial(joint.sum(), joint.ravel() / joint.sum(), size=n_boot).reshape(-1, 2, 2)
    boot = M._kappa_from_tables(c)
    fin = boot[np.isfinite(boot)]
    out["percentile (old)"] = tuple(np.quantile(fin, [0.025, 0.975]))
    jack, w = M._kappa_jackknife(joint)
    out["BCa"] = M._bca_limits(k, boot, jack, w) if math.isfinite(k) else None
    return out


# ----------------------------------------------------------------------------- running

class Tally:
    def __init__(self):
        self.hit, self.width, self.na, self.n = {}, {}, {}, 0

    def add(self, intervals: dict, truth: float):
        self.n += 1
        for name, iv in intervals.items():
            self.hit.setdefault(name, 0)
            self.width.setdefault(name, 0.0)
            self.na.setdefault(name, 0)
            if iv is None or iv[0] is None:
                self.na[name] += 1
                continue
            lo, hi = iv
            self.hit[name] += lo - 1e-12 <= truth <= hi + 1e-12
            self.width[name] += hi - lo

    def rows(self):
        for name in self.hit:
            ok = self.n - self.na[name]
            yield name, self.hit[name] / self.n, self.width[name] / ok if ok else float("nan"), self.na[name] / self.n


def print_block(title: str, results: list[tuple[str, float, Tally]]):
    names = list(results[0][2].hit)
    print(f"\n{title}")
    head = f"  {'method':<18}" + "".join(f"{label:>22}" for label, _, _ in results)
    print(head)
    print(f"  {'':<18}" + "".join(f"{'true ' + format(t, '.3f'):>22}" for _, t, _ in results))
    for name in names:
        cells = []
        for _, _, tally in results:
            row = {r[0]: r for r in tally.rows()}[name]
            _, cov, width, na = row
            flag = "!" if cov < 0.93 else " "
            cells.append(f"{cov:6.3f}{flag} w{width:5.3f}" + (f" na{na:4.2f}" if na else "        "))
        print(f"  {name:<18}" + "".join(f"{c:>22}" for c in cells))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--boot", type=int, default=2000, help="resamples per bootstrap interval")
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--quick", action="store_true", help="200 reps, 500 resamples: a smoke run")
    ap.add_argument("--only", default="auroc,f1,kappa,wilson,paired")
    args = ap.parse_args(argv)
    if args.quick:
        args.reps, args.boot = 200, 500
    only = set(args.only.split(","))
    t_start = time.perf_counter()
    se = math.sqrt(0.95 * 0.05 / args.reps)
    print(f"coverage of nominal 95% intervals, {N_POS} toxic + {N_NEG} non-toxic memes; reps={args.reps} "
          f"per point (MC s.e. of a coverage near 0.95: {se:.4f}), bootstrap resamples={args.boot}, "
          f"seed={args.seed}")
    print("cell: coverage (! below 0.93), mean width w, share with no interval na (counted as a miss)")
    root = np.random.SeedSequence(args.seed)

    if "auroc" in only:
        for kind in ("binormal", "coarse", "uneq"):
            results = []
            for auc in (0.7, 0.8, 0.9, 0.96):
                sampler, truth = auroc_design(kind, auc)
                rng = np.random.default_rng(root.spawn(1)[0])
                tally = Tally()
                for _ in range(args.reps):
                    pos, neg = sampler(rng)
                    tally.add(auroc_methods(pos, neg, rng, args.boot), truth)
                results.append((f"AUROC {auc}", truth, tally))
            print_block(f"AUROC, {kind} scores", results)
            sys.stdout.flush()

    if "f1" in only:
        results = []
        for s_e, s_p in ((0.7, 0.7), (0.8, 0.8), (0.9, 0.9), (0.96, 0.96), (0.6, 0.95), (0.95, 0.6)):
            truth = 2 * N_POS * s_e / (2 * N_POS * s_e + N_NEG * (1 - s_p) + N_POS * (1 - s_e))
            rng = np.random.default_rng(root.spawn(1)[0])
            tally = Tally()
            for _ in range(args.reps):
                tp, fp = int(rng.binomial(N_POS, s_e)), int(rng.binomial(N_NEG, 1 - s_p))
                tally.add(f1_methods(tp, fp, rng, args.boot), truth)
            results.append((f"se {s_e} sp {s_p}", truth, tally))
        print_block("F1 (toxic class)", results)
        sys.stdout.flush()

    if "kappa" in only:
        results = []
        for p, kap in ((0.5, 0.4), (0.5, 0.6), (0.5, 0.8), (0.5, 0.9), (0.3, 0.8)):
            q = p * (1 - p)
            cells = np.array([(1 - p) ** 2 + kap * q, q * (1 - kap), q * (1 - kap), p ** 2 + kap * q])
            rng = np.random.default_rng(root.spawn(1)[0])
            tally = Tally()
            for _ in range(args.reps):
                joint = rng.multinomial(N_POS + N_NEG, cells).reshape(2, 2)
                tally.add(kappa_methods(joint, rng, args.boot), kap)
            results.append((f"p {p} kappa {kap}", kap, tally))
        print_block("Cohen's kappa, 51 memes", results)
        sys.stdout.flush()

    if "wilson" in only:
        print("\nWilson interval, exact coverage (binomial sums)")
        for n in (N_POS, N_POS + N_NEG):
            ks = np.arange(n + 1)
            lo, hi = M._wilson_limits(ks, n)
            cells = []
            for p in (0.5, 0.7, 0.8, 0.9, 0.96):
                cov = float((binom.pmf(ks, n, p) * ((lo <= p) & (p <= hi))).sum())
                cells.append(f"p {p}: {cov:.3f}{'!' if cov < 0.93 else ' '}")
            print(f"  n = {n}: " + "  ".join(cells))
            grid = np.linspace(0.01, 0.99, 981)
            cp_lo = np.where(ks > 0, beta.ppf(0.025, ks, n - ks + 1), 0.0)
            cp_hi = np.where(ks < n, beta.ppf(0.975, ks + 1, n - ks), 1.0)
            for name, (a, b) in (("Wilson *", (lo, hi)), ("Clopper-Pearson", (cp_lo, cp_hi))):
                covs = np.array([float((binom.pmf(ks, n, p) * ((a <= p) & (p <= b))).sum()) for p in grid])
                mid = (grid >= 0.1) & (grid <= 0.9)
                w = float((binom.pmf(ks, n, 0.8) * (b - a)).sum())
                print(f"    {name:<16} p in [0.01, 0.99]: mean {covs.mean():.3f}, min {covs.min():.3f};  "
                      f"p in [0.1, 0.9]: min {covs[mid].min():.3f}, share of p below 0.93 "
                      f"{np.mean(covs[mid] < 0.93):.2f};  mean width at p = 0.8: {w:.3f}")

    if "paired" in only:
        print("\nPaired comparisons (A vs B on the same memes, latent correlation 0.5 within class);"
              " AUROC A - B coverage and mean width, share of DeLong p < 0.05, accuracy A - B")
        for auc_a, auc_b in ((0.8, 0.8), (0.9, 0.8), (0.96, 0.9)):
            da, db = (math.sqrt(2) * norm.ppf(a) for a in (auc_a, auc_b))
            rng = np.random.default_rng(root.spawn(1)[0])
            hit_auc = hit_acc = na = hit_wald = hit_o = 0
            w_wald = w_o = 0.0
            w_auc = w_acc = 0.0
            rej = 0
            cov = np.array([[1, 0.5], [0.5, 1]])
            # accuracy of a threshold at d/2 on each scorer: Phi(d/2)
            acc_true = norm.cdf(da / 2) - norm.cdf(db / 2)
            for _ in range(args.reps):
                zp = rng.multivariate_normal([0, 0], cov, N_POS)
                zn = rng.multivariate_normal([0, 0], cov, N_NEG)
                sa = np.r_[zp[:, 0] + da, zn[:, 0]]
                sb = np.r_[zp[:, 1] + db, zn[:, 1]]
                y = np.r_[np.ones(N_POS, int), np.zeros(N_NEG, int)]
                lab = np.where(y == 1, "toxic", "non_toxic")
                pa = np.where(sa > da / 2, "toxic", "non_toxic")
                pb = np.where(sb > db / 2, "toxic", "non_toxic")
                r = M.paired_comparison(list(lab), list(sa), list(sb), list(pa), list(pb))
                chosen = M._PAIRED_AUROC_METHOD
                M._PAIRED_AUROC_METHOD = "delong_paired"
                w_e = M.paired_auroc_from_rows(y, sa, sb)[2]           # the Wald candidate
                M._PAIRED_AUROC_METHOD = "mover_logit" if chosen != "mover_logit" else "mover_delong"
                o_e = M.paired_auroc_from_rows(y, sa, sb)[2]           # the other MOVER
                other_name = M._PAIRED_AUROC_METHOD
                M._PAIRED_AUROC_METHOD = chosen
                if o_e.low is not None:
                    hit_o += o_e.low <= auc_a - auc_b <= o_e.high
                    w_o += o_e.high - o_e.low
                if w_e.low is not None:
                    hit_wald += w_e.low <= auc_a - auc_b <= w_e.high
                    w_wald += w_e.high - w_e.low
                e = r.auroc_diff
                if e.low is None:
                    na += 1
                else:
                    hit_auc += e.low <= auc_a - auc_b <= e.high
                    w_auc += e.high - e.low
                    rej += (r.auroc_p is not None and r.auroc_p < 0.05)
                a = r.accuracy_diff
                hit_acc += a.low <= acc_true <= a.high
                w_acc += a.high - a.low
            n = args.reps
            print(f"  AUROC {auc_a} vs {auc_b}: * {M._PAIRED_AUROC_METHOD} {hit_auc / n:.3f}"
                  f"{'!' if hit_auc / n < 0.93 else ' '} (width {w_auc / max(1, n - na):.3f}); paired "
                  f"DeLong Wald {hit_wald / n:.3f}{'!' if hit_wald / n < 0.93 else ' '} (width "
                  f"{w_wald / n:.3f}); {other_name} {hit_o / n:.3f}{'!' if hit_o / n < 0.93 else ' '} "
                  f"(width {w_o / n:.3f}); DeLong p < 0.05 in {rej / n:.3f}; accuracy difference (Newcombe 10) coverage {hit_acc / n:.3f}"
                  f"{'!' if hit_acc / n < 0.93 else ' '} (width {w_acc / n:.3f})")

    print(f"\nruntime {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
