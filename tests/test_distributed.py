"""The engine under MirroredStrategy on two logical CPUs (a subprocess: devices are set before TF starts)."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_mmsa import backbones
    from keras_mmsa.data import pipeline, staging
    from keras_mmsa.models import MMIM, BertLSTMMLP

    alternation = sys.argv[1]
    keras.utils.set_random_seed(0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    _, tok = backbones.load_text_backbone("tiny")
    common = dict(text_backbone=tok, shuffle=False, max_lengths={"audio": 8, "vision": 8})
    train = pipeline.load("sample", "train", 16, **common).unbatch().take(32).cache()
    with strategy.scope():
        backbone, _ = backbones.load_text_backbone("tiny")
        base = BertLSTMMLP(backbone, audio_dim=5, vision_dim=20)
        model = MMIM(base, batch_size=16, alternation=alternation)
        model.build({"token_ids": (None, 50), "audio": (None, 8, 5), "vision": (None, 8, 20)})
        model.compile(**MMIM.default_optimizers("sample"), jit_compile=False)
    fractions = (1.0, 1.0) if alternation == "epoch" else None
    stream, steps = staging.epoch_stream(
        train, batch_size=16, seed=0, num_epochs=1, stage_fractions=fractions, drop_remainder=True
    )
    try:
        history = model.fit(stream, epochs=1, steps_per_epoch=steps, verbose=0)
    except ValueError as e:
        print("REFUSED", str(e).splitlines()[0])
        sys.exit(0)
    logs = {k: v[-1] for k, v in history.history.items()}
    assert all(np.isfinite(v) for v in logs.values()), logs
    print("REPLICAS", strategy.num_replicas_in_sync)
    print("MEMORY_ROWS", int(np.array(model.entropy["audio"].memory_valid).sum()))
    """
)


def _run(alternation):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, alternation],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_per_batch_mmim_trains_on_two_replicas_and_memory_holds_the_global_batch():
    stdout = _run("batch")
    assert "REPLICAS 2" in stdout
    assert "MEMORY_ROWS 16" in stdout  # 8 rows per replica, all-gathered before the write


def test_per_epoch_alternation_is_refused_with_a_clear_message():
    assert "REFUSED batches carrying a stage id" in _run("epoch")
