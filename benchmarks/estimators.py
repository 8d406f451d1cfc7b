"""The correlated-Gaussian MI-estimator benchmark (Poole et al., 2019; Cheng et al., 2020; DESIGN §2).

    python benchmarks/estimators.py                          # full protocol: 5 levels x 4000 steps, both variants
    python benchmarks/estimators.py --quick --out OUT_DIR    # 300 steps per level, minutes

Writes summary.csv (estimator,variant,true_mi,mean,var,bias,mse,nan_count), estimators_<variant>.png,
trajectories_<variant>.npz, run.json and run.log into --out (default benchmarks/results/estimators).

x ~ N(0, I_d), y = ρx + √(1−ρ²)ε, so I(x; y) = −(d/2) log(1−ρ²). ρ steps through the levels
I = 2, 4, 6, 8, 10 nats; every estimator is trained continuously through all levels on a fresh batch each step
(Adam); the "cubic" variant replaces y by y³ elementwise (same MI, non-Gaussian conditional). Statistics are
over the last `window` steps of each level: mean, variance, bias = |truth − mean|, MSE, and the number of
non-finite estimates over the whole level.

The default protocol is the CLUB notebook's (Cheng et al., 2020): d = 20, batch 64, 4000 steps per level,
lr 5e-3, concatenation critics [x, y] → 15 → 1 (ReLU), CLUB/BA nets x → 7 → y with a tanh-bounded log σ².
`critic="separable"` swaps in Poole et al.'s separable critic g(x)ᵀh(y) (2×256 ReLU, embedding 32; use it
with their lr 5e-4).

The training loop here is TensorFlow (`tf.GradientTape`, one XLA-compiled step for all estimators): like the
training engine, it is the backend-specific part; the estimators (`keras_mmsa.estimators`, public API only) are
`keras.ops` only.
"""

import argparse
import csv
import dataclasses
import json
import math
import os
import pathlib
import platform
import sys
import time

# Run as `python benchmarks/estimators.py`: `benchmarks` imports from the repository root.
if not __package__:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

common.set_environment()

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_mmsa import estimators as E  # noqa: E402

ALL_ESTIMATORS = ("InfoNCE", "NWJ", "DV", "MINE", "JS", "CPC", "BA", "CLUB", "CLUB-sample")
LOWER_BOUNDS = ("InfoNCE", "NWJ", "DV", "MINE", "JS", "CPC", "BA")
UPPER_BOUNDS = ("CLUB", "CLUB-sample")
VARIANTS = ("gaussian", "cubic")
EULER_GAMMA = 0.5772156649015329
SUMMARY_COLUMNS = ("estimator", "variant", "true_mi", "mean", "var", "bias", "mse", "nan_count")


@dataclasses.dataclass
class BenchmarkConfig:
    """Settings of one benchmark run (defaults: the DESIGN / CLUB-notebook protocol)."""

    dim: int = 20
    batch_size: int = 64
    levels: tuple = (2.0, 4.0, 6.0, 8.0, 10.0)
    steps_per_level: int = 4000
    window: int = 500
    learning_rate: float = 5e-3
    hidden_dim: int = 15
    q_hidden_dim: int = (
        None  # hidden width of the Gaussian q of BA/CLUB; None = hidden_dim // 2 (CLUB notebook)
    )
    logvar_bound: float = 1.0  # q's bound on |log σ²|; 1.0 = the CLUB notebook's Tanh
    critic: str = "concat"
    estimators: tuple = ALL_ESTIMATORS
    variants: tuple = VARIANTS
    mine_decay: float = 0.99
    seed: int = 0
    steps_per_call: int = 10

    def __post_init__(self):
        self.levels = tuple(float(v) for v in self.levels)
        self.estimators = tuple(self.estimators)
        self.variants = tuple(self.variants)
        unknown = set(self.estimators) - set(ALL_ESTIMATORS)
        if unknown:
            raise ValueError(f"Unknown estimators {sorted(unknown)}; choose from {ALL_ESTIMATORS}.")
        unknown = set(self.variants) - set(VARIANTS)
        if unknown:
            raise ValueError(f"Unknown variants {sorted(unknown)}; choose from {VARIANTS}.")
        if self.critic not in ("concat", "separable"):
            raise ValueError(f"`critic` must be 'concat' or 'separable'; got {self.critic!r}.")
        if not 0 < self.window <= self.steps_per_level:
            raise ValueError(
                f"Need 0 < window <= steps_per_level; got {self.window}, {self.steps_per_level}."
            )
        if self.q_hidden_dim is None:
            self.q_hidden_dim = self.hidden_dim // 2
        if self.steps_per_level % self.steps_per_call:
            raise ValueError("`steps_per_level` must be a multiple of `steps_per_call`.")


def marginal_entropy(*, dim, variant):
    """The true differential entropy H(y) of the benchmark's y, in nats (y ~ N(0, I) marginally).

    Gaussian: (d/2) log 2πe. Cubic (y³ elementwise): H(y³) = H(y) + E log|3y²| per dimension
    = ½ log 2πe + log 3 + 2 E log|y|, with E log|y| = −(γ + log 2)/2 for y ~ N(0, 1).
    """
    per_dim = 0.5 * math.log(2.0 * math.pi * math.e)
    if variant == "cubic":
        per_dim += math.log(3.0) - (EULER_GAMMA + math.log(2.0))
    return dim * per_dim


def club_gaussian_limit(*, mi, dim):
    """CLUB's value with the exact conditional q = p(y|x) on the Gaussian variant: d·ρ²/(1−ρ²) = d(e^{2I/d} − 1).

    Per dimension, CLUB = E_{p(x)p(y)}[(y−ρx)²]/(2σ²) − E_{p(x,y)}[(y−ρx)²]/(2σ²) = ((1+ρ²) − (1−ρ²))/(2σ²)
    with σ² = 1−ρ². It exceeds I = −(d/2) log(1−ρ²) (≈ 2I for small ρ): the gap of the upper bound itself,
    which a well-fitted CLUB estimate converges to — not an estimation error.
    """
    return dim * math.expm1(2.0 * mi / dim)


class _Estimator:
    """One benchmarked estimator: its networks, its training loss and its reported MI estimate."""

    def __init__(self, name, config, variant):
        self.name = name
        self.config = config
        self.variant = variant
        d, h = config.dim, config.hidden_dim
        self.layers = []
        self.log_ma = None
        if name in ("InfoNCE", "NWJ", "DV", "MINE", "JS"):
            if config.critic == "separable":
                self.critic = E.SeparableCritic(
                    embed_dim=32, hidden_dims=(256, 256), name=f"{name}_critic"
                )
            else:
                self.critic = E.StatisticNetwork(
                    input_dim=2 * d,
                    hidden_dims=[h],
                    dropout=0.0,
                    negative_slope=0.0,
                    output_activation=None,
                    name=f"{name}_critic",
                )
            self.layers.append(self.critic)
            if name == "MINE":
                self.log_ma = keras.Variable(0.0, trainable=False, name="mine_log_ma")
                self.ma_initialised = keras.Variable(0.0, trainable=False, name="mine_ma_init")
        elif name == "CPC":
            self.cpc = E.CPCPredictor(x_dim=d, y_dim=d, name="cpc")
            self.layers.append(self.cpc)
        elif name == "BA":
            self.q = E.GaussianConditional(
                y_dim=d,
                hidden_dim=config.q_hidden_dim,
                logvar_bound=config.logvar_bound,
                name="ba_q",
            )
            self.layers.append(self.q)
            self.entropy = marginal_entropy(dim=d, variant=variant)
        elif name in ("CLUB", "CLUB-sample"):
            self.club = E.CLUB(
                y_dim=d,
                hidden_dim=config.q_hidden_dim,
                sample=name == "CLUB-sample",
                seed=config.seed + 17,
                logvar_bound=config.logvar_bound,
                name=name.replace("-", "_").lower(),
            )
            self.layers.append(self.club)

    def build(self):
        x = ops.zeros((self.config.batch_size, self.config.dim))
        self.loss_and_estimate(x, x)
        if self.log_ma is not None:  # building must not count as MINE's first moving-average step
            self.log_ma.assign(0.0)
            self.ma_initialised.assign(0.0)

    @property
    def trainable_variables(self):
        return [v for layer in self.layers for v in layer.trainable_variables]

    def loss_and_estimate(self, x, y):
        name = self.name
        if name in ("InfoNCE", "NWJ", "DV", "MINE", "JS"):
            scores = self.critic.score_matrix(x, y)
            if name == "InfoNCE":
                value = E.infonce_lower_bound(scores=scores)
                return -value, value
            if name == "NWJ":
                value = E.nwj_lower_bound(scores=scores)
                return -value, value
            if name == "DV":
                value = E.donsker_varadhan_lower_bound(scores=scores)
                return -value, value
            if name == "JS":
                value = E.js_lower_bound(scores=scores)
                return -value, value
            # MINE: DV value, bias-corrected gradient with a moving average of E_q[e^T].
            _, _, marg, mmask = E.split_score_matrix(scores=scores)
            batch_lme = ops.stop_gradient(E.log_mean_exp(marg, mask=mmask))
            log_ma = ops.where(self.ma_initialised > 0, self.log_ma, batch_lme)
            new_ma = E.update_log_moving_average(
                log_moving_average=log_ma,
                marginal_scores=marg,
                mask=mmask,
                decay=self.config.mine_decay,
            )
            value = E.donsker_varadhan_lower_bound(scores=scores, log_moving_average=new_ma)
            self.log_ma.assign(new_ma)
            self.ma_initialised.assign(1.0)
            return -value, value
        if name == "CPC":
            loss = self.cpc(x, y)
            return loss, math.log(self.config.batch_size) - loss
        if name == "BA":
            ll = self.q.log_likelihood(x, y)
            value = E.barber_agakov_lower_bound(log_likelihood=ll, entropy=self.entropy)
            return -ops.mean(ll), value
        # CLUB / CLUB-sample: q is fitted by likelihood; the bound is reported (no encoder to train here).
        return self.club.learning_loss(x, y), ops.stop_gradient(self.club(x, y))


def _make_step(estimators, optimizer, config, variant, seed_gen):
    import tensorflow as tf

    variables = [v for e in estimators for v in e.trainable_variables]
    d, b = config.dim, config.batch_size

    def one_step(rho):
        x = keras.random.normal((b, d), seed=seed_gen)
        eps = keras.random.normal((b, d), seed=seed_gen)
        y = rho * x + ops.sqrt(1.0 - rho * rho) * eps
        if variant == "cubic":
            y = y * y * y
        with tf.GradientTape() as tape:
            losses, values = [], []
            for e in estimators:
                loss, value = e.loss_and_estimate(x, y)
                losses.append(loss)
                values.append(value)
            total = ops.sum(ops.stack(losses))
        grads = tape.gradient(total, variables)
        optimizer.apply(grads, variables)
        return ops.stack(values)

    n_est = len(estimators)

    @tf.function(jit_compile=True)
    def steps(rho):
        # A compiled loop over `steps_per_call` steps: one XLA program whatever the count, no Python per step.
        def body(i, acc):
            return i + 1, acc.write(i, one_step(rho))

        acc = tf.TensorArray(tf.float32, size=config.steps_per_call, element_shape=(n_est,))
        _, acc = tf.while_loop(lambda i, _: i < config.steps_per_call, body, (tf.constant(0), acc))
        return acc.stack()

    return steps


def summarize(trajectory, true_mis, names, variant, config):
    """Rows of summary.csv from a [n_levels, steps_per_level, n_estimators] trajectory."""
    rows = []
    for j, name in enumerate(names):
        for k, truth in enumerate(true_mis):
            level = trajectory[k, :, j]
            tail = level[-config.window :]
            finite = tail[np.isfinite(tail)]
            mean = float(np.mean(finite)) if finite.size else float("nan")
            var = float(np.var(finite)) if finite.size else float("nan")
            mse = float(np.mean((finite - truth) ** 2)) if finite.size else float("nan")
            rows.append(
                {
                    "estimator": name,
                    "variant": variant,
                    "true_mi": round(float(truth), 6),
                    "mean": mean,
                    "var": var,
                    "bias": abs(truth - mean),
                    "mse": mse,
                    "nan_count": int(np.sum(~np.isfinite(level))),
                }
            )
    return rows


def _trailing_mean(series, span):
    """Mean over the last `span` finite values at each step (no edge artefacts, NaNs skipped)."""
    finite = np.isfinite(series)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, series, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(finite)])
    idx = np.arange(1, series.size + 1)
    lo = np.maximum(idx - span, 0)
    count = ccount[idx] - ccount[lo]
    return np.where(count > 0, (csum[idx] - csum[lo]) / np.maximum(count, 1), np.nan)


def plot_variant(trajectory, true_mis, names, variant, config, path):
    """One PNG: a panel per estimator, its raw and smoothed trajectory against the true-MI staircase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 3.0 * rows), sharex=True, squeeze=False
    )
    steps = trajectory.shape[1]
    truth = np.repeat(np.asarray(true_mis), steps)
    t = np.arange(truth.size)
    span = max(1, steps // 40)
    log_b = math.log(config.batch_size)
    top = max(true_mis) + 2.0
    for j, name in enumerate(names):
        ax = axes[j // cols][j % cols]
        series = trajectory[:, :, j].reshape(-1).astype(np.float64)
        finite = series[np.isfinite(series)]
        lo, hi = -1.0, top
        if finite.size:
            lo = max(-80.0, min(lo, float(np.percentile(finite, 0.5)) - 0.5))
            hi = min(60.0, max(hi, float(np.percentile(finite, 99.5)) + 0.5))
        ax.plot(t, series, color="tab:blue", alpha=0.25, linewidth=0.5)
        ax.plot(
            t,
            _trailing_mean(series, span),
            color="tab:blue",
            linewidth=1.2,
            label=f"estimate ({span}-step mean)",
        )
        ax.plot(t, truth, color="black", linewidth=1.2, label="true MI")
        if name in ("InfoNCE", "CPC"):
            ax.axhline(
                log_b,
                color="tab:red",
                linestyle="--",
                linewidth=0.9,
                label=f"log {config.batch_size}",
            )
        if name == "CPC":
            cap = log_b - math.log1p((config.batch_size - 1) * math.exp(-2.0))
            ax.axhline(
                cap, color="tab:orange", linestyle=":", linewidth=0.9, label="cosine-score cap"
            )
        if name in UPPER_BOUNDS and variant == "gaussian":
            limit = np.repeat([club_gaussian_limit(mi=m, dim=config.dim) for m in true_mis], steps)
            ax.plot(
                t,
                limit,
                color="tab:green",
                linestyle="--",
                linewidth=0.9,
                label="CLUB with exact q",
            )
            hi = min(60.0, max(hi, float(limit.max()) + 1.0))
        nan_count = int(np.sum(~np.isfinite(series)))
        kind = "upper" if name in UPPER_BOUNDS else "lower"
        title = f"{name} ({kind} bound)" + (f", {nan_count} NaN" if nan_count else "")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(lo, hi)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="upper left")
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    for r in range(rows):
        axes[r][0].set_ylabel("MI (nats)")
    critic = (
        "separable critic 2x256"
        if config.critic == "separable"
        else f"concat critic {config.hidden_dim}"
    )
    fig.suptitle(
        f"MI estimators on correlated Gaussians, {variant} variant (d={config.dim}, batch {config.batch_size}, "
        f"{critic}, q hidden {config.q_hidden_dim}, lr {config.learning_rate:g})",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_variant(config, variant, log=print):
    """Train every estimator through all levels of one variant; returns (trajectory, names, seconds)."""
    keras.utils.set_random_seed(config.seed + (0 if variant == "gaussian" else 1000))
    estimators = [_Estimator(name, config, variant) for name in config.estimators]
    for e in estimators:
        e.build()
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    variables = [v for e in estimators for v in e.trainable_variables]
    optimizer.build(variables)
    seed_gen = keras.random.SeedGenerator(config.seed + 7)
    step = _make_step(estimators, optimizer, config, variant, seed_gen)
    names = [e.name for e in estimators]
    calls = config.steps_per_level // config.steps_per_call
    traj = np.zeros((len(config.levels), config.steps_per_level, len(names)), dtype=np.float32)
    start = time.perf_counter()
    for k, mi in enumerate(config.levels):
        rho = np.float32(E.mi_to_rho(mi=mi, dim=config.dim))
        for c in range(calls):
            out = step(rho)
            traj[k, c * config.steps_per_call : (c + 1) * config.steps_per_call] = np.asarray(out)
        tail = traj[k, -config.window :]
        log(
            f"[{variant}] level I={mi:g} (rho={rho:.4f}) done at {time.perf_counter() - start:.0f}s: "
            + ", ".join(f"{n}={np.nanmean(tail[:, j]):.2f}" for j, n in enumerate(names))
        )
    return traj, names, time.perf_counter() - start


def run_benchmark(config, out_dir, log=print):
    """Run the benchmark; write summary.csv, a PNG and a trajectory file per variant, run.json and run.log.

    Args:
        config: `BenchmarkConfig`.
        out_dir: output directory (created).
        log: callable for progress lines.

    Returns:
        The summary rows (list of dicts with `SUMMARY_COLUMNS`).
    """
    os.makedirs(out_dir, exist_ok=True)
    log_file = open(os.path.join(out_dir, "run.log"), "w")
    user_log = log

    def log(msg):
        user_log(msg)
        log_file.write(msg + "\n")
        log_file.flush()

    log(f"config: {json.dumps(dataclasses.asdict(config))}")
    all_rows, timings = [], {}
    wall = time.perf_counter()
    for variant in config.variants:
        traj, names, seconds = run_variant(config, variant, log=log)
        timings[variant] = round(seconds, 1)
        rows = summarize(traj, config.levels, names, variant, config)
        all_rows.extend(rows)
        np.savez_compressed(
            os.path.join(out_dir, f"trajectories_{variant}.npz"),
            estimates=traj,
            estimators=np.asarray(names),
            true_mi=np.asarray(config.levels, dtype=np.float32),
        )
        plot_variant(
            traj,
            config.levels,
            names,
            variant,
            config,
            os.path.join(out_dir, f"estimators_{variant}.png"),
        )
    with open(os.path.join(out_dir, "summary.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for row in all_rows:
            writer.writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )
    info = {
        "config": dataclasses.asdict(config),
        "club_gaussian_limit": {
            str(m): round(club_gaussian_limit(mi=m, dim=config.dim), 4) for m in config.levels
        },
        "seconds_per_variant": timings,
        "wall_seconds": round(time.perf_counter() - wall, 1),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
    }
    with open(os.path.join(out_dir, "run.json"), "w") as f:
        json.dump(info, f, indent=2)
    log(f"done in {info['wall_seconds']}s")
    log_file.close()
    return all_rows


def parser():
    p = argparse.ArgumentParser(
        prog="estimators.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--steps-per-level", type=int, default=4000)
    p.add_argument(
        "--quick", action="store_true", help="300 steps per level; statistics over the last eighth"
    )
    p.add_argument("--out", default="benchmarks/results/estimators")
    p.add_argument("--estimators", nargs="+", default=list(ALL_ESTIMATORS), choices=ALL_ESTIMATORS)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--critic", default="concat", choices=("concat", "separable"))
    p.add_argument("--learning-rate", type=float, default=5e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--hidden-dim", type=int, default=15, help="critic hidden width (CLUB notebook: 15)"
    )
    p.add_argument(
        "--q-hidden-dim", type=int, default=None, help="BA/CLUB q hidden width (default hidden/2)"
    )
    p.add_argument(
        "--logvar-bound", type=float, default=1.0, help="q's |log var| bound (1 = CLUB's Tanh)"
    )
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    steps = 300 if args.quick else args.steps_per_level
    window = steps // 8 if args.quick else min(500, steps)
    config = BenchmarkConfig(
        steps_per_level=steps,
        window=window,
        estimators=tuple(args.estimators),
        variants=tuple(args.variants),
        critic=args.critic,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        hidden_dim=args.hidden_dim,
        q_hidden_dim=args.q_hidden_dim,
        logvar_bound=args.logvar_bound,
        seed=args.seed,
        steps_per_call=next(n for n in (100, 50, 20, 10, 5, 2, 1) if steps % n == 0),
    )
    start = time.perf_counter()
    rows = run_benchmark(config, args.out, log=lambda msg: print(msg, flush=True))
    print(
        f"wrote {len(rows)} rows to {os.path.join(args.out, 'summary.csv')} in {time.perf_counter() - start:.0f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
