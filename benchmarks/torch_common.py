"""What the PyTorch-side timing scripts share (`torch_reference.py`, `torch_base_models.py`, `torch_self_mm.py`,
`torch_mird.py`).

Like them it runs in the PyTorch environment and imports nothing from keras_mmsa, TensorFlow or the rest of
`benchmarks/` (numpy, easydict and mmsa are imported inside the functions). The scripts import it as a sibling
module (`python benchmarks/torch_self_mm.py` puts `benchmarks/` on the path); the Keras-side benchmarks reuse
`summary_stats` as `benchmarks.torch_common`.
"""

import argparse
import importlib
import json
import os
import time

# BERT sizes of a config-built, randomly initialised BERT (no download): keras_mmsa's "tiny" and bert-base.
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)


def summary_stats(values):
    """median / min / max / interquartile range of timings (seconds)."""
    import numpy as np

    v = np.asarray(values, dtype="float64")
    q1, q3 = np.percentile(v, [25, 75])
    return {
        "median": float(np.median(v)),
        "min": float(v.min()),
        "max": float(v.max()),
        "iqr": float(q3 - q1),
    }


def mmsa_config(model_name, dataset="mosi"):
    """mmsa's own hyper-parameters of `model_name` for `dataset` (commonParams + datasetParams), as an
    EasyDict, from mmsa's `config_regression.json`."""
    from easydict import EasyDict

    path = os.path.join(
        os.path.dirname(importlib.import_module("MMSA").__file__),
        "config",
        "config_regression.json",
    )
    with open(path) as f:
        entry = json.load(f)[model_name]
    return EasyDict({**entry["commonParams"], **entry["datasetParams"][dataset]})


def reference_parser(prog, description, batches_of):
    """The flags of a BERT-size timing script: --backbone, --batches, --warmup, --repeats, --seed,
    --vocab-size, --threads, --out (`batches_of`: the script that writes the .npz)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--backbone", choices=("base", "tiny"), required=True)
    p.add_argument("--batches", required=True, help=f".npz written by {batches_of}")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--vocab-size", type=int, default=None, help="default: base 30522, tiny max id + 1"
    )
    p.add_argument(
        "--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)"
    )
    p.add_argument("--out", required=True)
    return p


def peak_rss_mb():
    """Peak resident set size of this process, MiB (Linux `ru_maxrss` is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_iterations(iteration, warmup, repeats):
    """Calls `iteration(i)` once (the first, untimed in the statistics), `warmup` more times, then `repeats`
    timed times. Returns `(first_s, outs, walls, cpus)`: the first call's seconds and, per timed call, its
    return value, wall and process-CPU seconds."""
    t0 = time.perf_counter()
    iteration(0)
    first = time.perf_counter() - t0
    for i in range(warmup):
        iteration(1 + i)
    outs, walls, cpus = [], [], []
    for r in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        outs.append(iteration(1 + warmup + r))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return first, outs, walls, cpus


def timing_fields(batch_size, first, times, cpus, **parts):
    """A result's timing fields: iteration_s and iteration_cpu_s (statistics of `times` and `cpus`), the
    statistics of each of `parts` (name -> seconds per timed iteration), times_s, samples_per_s,
    first_iteration_s."""
    wall = summary_stats(times)
    return {
        "iteration_s": wall,
        "iteration_cpu_s": summary_stats(cpus),
        **{name: summary_stats(seconds) for name, seconds in parts.items()},
        "times_s": times,
        "samples_per_s": batch_size / wall["median"],
        "first_iteration_s": first,
    }


def write_result(path, result, **extra):
    """Writes `result` as JSON to `path`, followed by peak_rss_mb, torch_version, `extra` (other versions,
    ...), threads and load_average."""
    import torch

    result = {
        **result,
        "peak_rss_mb": peak_rss_mb(),
        "torch_version": torch.__version__,
        **extra,
        "threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
    }
    with open(path, "w") as f:
        json.dump(result, f)


def split_timing_fields(batch_size, first, parts, cpus, *names):
    """`timing_fields` of iterations timed in parts: `parts` holds per timed iteration the seconds of each
    part (in the order of `names`); an iteration's time is their sum."""
    return timing_fields(
        batch_size,
        first,
        [sum(p) for p in parts],
        cpus,
        **{name: [p[k] for p in parts] for k, name in enumerate(names)},
    )
