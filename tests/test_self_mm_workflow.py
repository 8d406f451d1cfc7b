"""Self-MM / Self-MI through the workflow (issue 12): exact resume of the label memory after a SIGKILL, and the
`train.py --method self_mm|self_mi` runs with their unimodal-label report and export."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_mmsa.training import RunConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from keras_mmsa.data import pipeline

    d = tmp_path_factory.mktemp("tfds")
    pipeline.prepare_builder("sample", data_dir=str(d))
    return d


_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import keras
    from keras_mmsa.training import RunConfig, train_and_evaluate

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 7:   # mid-epoch 2 (of 19 batches): labels are being generated
                os.kill(os.getpid(), signal.SIGKILL)

    config = RunConfig.from_json(sys.argv[1])
    kill = sys.argv[3] == "kill"
    train_and_evaluate(config, sys.argv[2], verbose=0, export=False, callbacks=[Kill()] if kill else [])
    """
)


def _run(config_path, workdir, mode, data_dir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KMSA_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-c", _KILLER, str(config_path), str(workdir), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_label_memory_survives_a_sigkill_exactly(tmp_path, data_dir):
    """SIGKILL mid-epoch 2 (while labels are generated), then the same command: the label memory, feature
    memories, centres, epoch counter and every other state variable equal an uninterrupted run's."""
    config = RunConfig(
        method="self_mm",
        dataset="sample",
        seed=3,
        max_lengths={"audio": 24, "vision": 24},
        jit_compile=False,
        deterministic=True,
        train={"epochs": 2, "log_every": 5},
    )
    config_path = tmp_path / "c.json"
    config.to_json(config_path)
    killed = _run(config_path, tmp_path / "a", "kill", data_dir)
    assert killed.returncode == -9, killed.stderr[-2000:]
    run_a = tmp_path / "a" / "self_mm_sample_seed3"
    assert json.loads((run_a / "backup" / "state.json").read_text())["epoch"] == 1
    resumed = _run(config_path, tmp_path / "a", "resume", data_dir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = _run(config_path, tmp_path / "b", "straight", data_dir)
    assert straight.returncode == 0, straight.stderr[-2000:]
    run_b = tmp_path / "b" / "self_mm_sample_seed3"
    a = np.load(run_a / "backup" / "epoch-2.npz")
    b = np.load(run_b / "backup" / "epoch-2.npz")
    assert a.files == b.files
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    ma = json.loads((run_a / "metrics.json").read_text())
    mb = json.loads((run_b / "metrics.json").read_text())
    assert ma == mb
    # the label memory ([600, 1 + 3 tasks]: y_m, then the generated labels) moved off the multimodal labels in
    # epoch 2, so the equality above holds for generated labels
    memory = [a[k] for k in a.files if a[k].shape == (600, 4)]
    assert len(memory) == 1
    assert np.abs(memory[0][:, 1:] - memory[0][:, :1]).max() > 0.1
    assert set(ma["generated_labels"]) == set(ma["unimodal_heads"]) == {"text", "audio", "vision"}


@pytest.mark.large
@pytest.mark.parametrize("method", ["self_mm", "self_mi"])
def test_train_script_with_no_option_reports_generated_labels_and_exports(
    method, tmp_path, data_dir
):
    """`python scripts/train.py --method self_mm|self_mi`, nothing else (the sample's 12 epochs, ~2 min each):
    the test MAE beats the constant predictor (1.261), the generated audio/vision labels correlate with the
    planted ones better than the multimodal label does (the point of label generation), and the SavedModel's
    signature has no training-time key."""
    env = dict(os.environ, KMSA_DATA_DIR=str(data_dir), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "train.py"),
            "--method",
            method,
            "--workdir",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / f"{method}_sample_seed1111"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["mae"] < 1.0
    for m in ("audio", "vision"):
        g = metrics["generated_labels"][m]
        assert g["corr"] > g["corr_multimodal_label"] + 0.05, (m, g)
    assert metrics["unimodal_heads"]["text"]["corr"] > 0.5

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the serve_text signature's tokenizer ops)

    served = tf.saved_model.load(str(run_dir / "export"))
    for signature in served.signatures.values():
        keys = set(signature.structured_input_signature[1])
        assert not keys & {"index", "label_T", "label_A", "label_V"}, keys
