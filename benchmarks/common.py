"""What the benchmark scripts share: the import path when run as `python benchmarks/<name>.py`, the
environment set before TensorFlow loads, and one-line errors.

Nothing here imports keras_mmsa or TensorFlow (`torch_reference.py`, which runs in a PyTorch environment,
does not use this module at all).
"""

import functools
import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
# Errors that come from what the user passed (missing files, bad flags, an unreadable backbone): exit 2.
USER_ERRORS = (ValueError, KeyError, OSError)
USER_ERROR_NAMES = ("AssertionError", "DatasetNotFoundError", "NonMatchingChecksumError")


def set_environment():
    """The TensorFlow backend and quiet TensorFlow C++ logs, unless the caller's environment says otherwise."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def add_run_flags(parser):
    """The flags every training benchmark shares: --no-jit, --verbose, --debug."""
    parser.add_argument("--no-jit", action="store_true", help="disable XLA compilation")
    parser.add_argument("--verbose", type=int, default=2, help="Keras verbosity of each run")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def time_iterations(iteration, *, warmup, repeats, log=None, label=""):
    """Times `iteration(i)` (one training step on batch i): a first (compiling) call, `warmup` untimed calls,
    then `repeats` timed ones. Returns `(last_logs, first_s, walls, cpus)`: the last call's return value, the
    first call's seconds, and per timed call its wall and process-CPU seconds. `log(text)` (optional) gets one
    line per timed call, named by `label`."""
    import time

    t0 = time.perf_counter()
    logs = iteration(0)
    first = time.perf_counter() - t0
    for i in range(warmup):
        iteration(1 + i)
    walls, cpus = [], []
    for r in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        logs = iteration(1 + warmup + r)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        if log:
            log(f"  {label}: iteration {r + 1}/{repeats} {walls[-1]:.3f}s")
    return logs, first, walls, cpus


def iteration_fields(batch_size, first, walls, cpus):
    """A Keras-side result's timing fields from `time_iterations`' first call and timed calls: statistics of the
    timed calls' wall and CPU seconds, samples/s, the timed seconds, the first call's seconds and the
    compilation time (the first call's excess over the median)."""
    from benchmarks.torch_common import summary_stats

    wall = summary_stats(walls)
    return {
        "iteration_s": wall,
        "iteration_cpu_s": summary_stats(cpus),
        "samples_per_s": batch_size / wall["median"],
        "times_s": walls,
        "first_iteration_s": first,
        "compile_s": max(0.0, first - wall["median"]),
    }


def run_json_subprocess(cmd, out_path, what, env=None, timeout=None):
    """Runs `cmd` (a worker that writes its result as JSON to `out_path`) and returns that result; a
    RuntimeError naming `what` with the last 25 lines of stderr when it fails or writes nothing."""
    import json
    import subprocess

    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0 or not pathlib.Path(out_path).exists():
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(pathlib.Path(out_path).read_text())


def command_line(script, argv):
    """The command as results files record it: `python benchmarks/<script> <argv>` without --debug."""
    import shlex

    return f"python benchmarks/{script} " + " ".join(shlex.quote(a) for a in argv if a != "--debug")


def one_line_errors(main):
    """Wraps `main(argv) -> int` so that an exception prints one `error: ...` line and returns 2 (bad input)
    or 1 (anything else); `--debug` in argv re-raises it instead."""

    @functools.wraps(main)
    def wrapper(argv=None):
        argv = list(sys.argv[1:] if argv is None else argv)
        try:
            return main(argv) or 0
        except KeyboardInterrupt:
            print("interrupted: re-running the same command resumes where it can", file=sys.stderr)
            return 130
        except Exception as exc:  # noqa: BLE001 - the one place that turns errors into messages
            if "--debug" in argv:
                raise
            text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            text = " ".join(text.split()) or type(exc).__name__
            user = isinstance(exc, USER_ERRORS) or type(exc).__name__ in USER_ERROR_NAMES
            kind = "" if user else f"{type(exc).__name__}: "
            print(f"error: {kind}{text} (run with --debug for the traceback)", file=sys.stderr)
            return 2 if user else 1

    return wrapper


def backend_row_cells(tf_result, jax_result, reference, digits=3):
    """The cells of one row of a three-column throughput table: s per iteration (`digits`), samples/s and peak
    RSS of the TensorFlow result, the JAX result and the PyTorch reference (empty cells for a missing one), then
    the throughput ratios JAX / TF, TF / torch and JAX / torch."""

    def fmt(x, d):
        return "" if x is None else f"{x:.{d}f}"

    cells = []
    for r in (tf_result, jax_result, reference):
        if r is None:
            cells += ["", "", ""]
        else:
            cells += [
                fmt(r["iteration_s"]["median"], digits),
                fmt(r["samples_per_s"], 1),
                fmt(r["peak_rss_mb"], 0),
            ]
    for a, b in ((jax_result, tf_result), (tf_result, reference), (jax_result, reference)):
        cells.append(fmt(a["samples_per_s"] / b["samples_per_s"], 2) if a and b else "")
    return cells
