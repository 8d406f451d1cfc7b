"""MMIM on tiny configs: stage discipline, no-NaN edge cases, memory persistence, modality subsets, learning."""

import warnings

import keras
import numpy as np
import pytest
from harness import SHAPES, T_AUDIO, T_VISION, spec_batch, tiny_mmim  # noqa: F401

from keras_mmsa import backbones
from keras_mmsa.data import pipeline, staging
from keras_mmsa.models import MMIM, BertLSTMMLP


@pytest.fixture(scope="module")
def tiny():
    return backbones.load_text_backbone("tiny")


def _model(tiny, **kwargs):
    return tiny_mmim(**kwargs)


def _batch(tiny, **kwargs):
    return spec_batch(tiny[1], **kwargs)


def _values(variables):
    return [np.array(v) for v in variables]


def test_stage_discipline(tiny):
    """Stage 1 moves only q; stage 2 moves everything but q (Algorithm 1)."""
    model = _model(tiny)
    groups = model.variable_groups()
    assert set(groups) == {"bert", "main", "q"}
    q_ids = {id(v) for v in groups["q"]}
    assert all("q_t" in v.path for v in groups["q"])
    assert not any(id(v) in q_ids for v in groups["bert"] + groups["main"])

    before = {g: _values(vs) for g, vs in groups.items()}
    x, y = _batch(tiny, stage=0)
    model.train_on_batch(x, y)
    after = {g: _values(vs) for g, vs in groups.items()}
    assert all(not np.allclose(a, b) for a, b in zip(before["q"], after["q"]) if a.size > 1)
    for g in ("bert", "main"):
        assert all(np.array_equal(a, b) for a, b in zip(before[g], after[g])), g
    # stage 1 does not touch the memory either (it is written in stage 2)
    assert float(np.sum(np.array(model.entropy["audio"].memory_valid))) == 0.0

    x, y = _batch(tiny, stage=1, seed=1)
    model.train_on_batch(x, y)
    final = {g: _values(vs) for g, vs in groups.items()}
    assert all(np.array_equal(a, b) for a, b in zip(after["q"], final["q"]))
    for g in ("bert", "main"):
        changed = [not np.array_equal(a, b) for a, b in zip(after[g], final[g])]
        assert sum(changed) > 0.8 * len(changed), g  # (BERT's pooler is unused by MMIM)
    assert float(np.sum(np.array(model.entropy["audio"].memory_valid))) == 8.0


def test_polarity_class_counts_follow_the_paper_and_the_reference(tiny):
    y = np.array([-1.0, 0.0, 0.0, 2.0], "float32")
    paper = _model(tiny)
    strict = _model(tiny, polarity="strict")
    h = np.random.default_rng(0).normal(size=(4, 16)).astype("float32")
    for model, expected in ((paper, (3.0, 1.0)), (strict, (1.0, 1.0))):
        labels, mask = model._polarity(y)
        counts = model.entropy["audio"].class_counts(h, labels, mask)
        assert tuple(float(c) for c in counts) == expected


@pytest.mark.parametrize(
    "case",
    ["one_polarity_class", "mem_size_0", "batch_of_one", "all_zero_labels_strict"],
)
def test_no_nan_in_edge_cases(tiny, case):
    kwargs, n, labels = {}, 8, None
    if case == "one_polarity_class":
        labels = np.linspace(0.5, 3.0, 8)
    elif case == "mem_size_0":
        kwargs["mem_size"] = 0
    elif case == "batch_of_one":
        n, labels = 1, [1.2]
    elif case == "all_zero_labels_strict":
        kwargs["polarity"], labels = "strict", np.zeros(8)
    model = _model(tiny, alternation="batch", **kwargs)
    for step in range(3):  # the memory fills after the first step
        x, y = _batch(tiny, n=n, labels=labels, seed=step)
        logs = model.train_on_batch(x, y, return_dict=True)
        assert all(np.isfinite(v) for v in logs.values()), logs
    assert all(np.all(np.isfinite(np.array(v))) for v in model.variables)
    if case == "one_polarity_class":
        assert logs["entropy"] != 0.0  # the single usable class still gives an entropy


def test_memory_survives_save_load_and_backup_restore(tiny, tmp_path):
    model = _model(tiny, alternation="batch")
    ds = [_batch(tiny, seed=s) for s in range(3)]
    backup = tmp_path / "backup"

    def data():
        yield from ds

    cb = keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=False)
    model.fit(data(), epochs=1, steps_per_epoch=3, callbacks=[cb], verbose=0)
    memory = np.array(model.entropy["vision"].memory)
    assert np.abs(memory).sum() > 0

    path = tmp_path / "mmim.weights.h5"
    model.save_weights(path)
    clone = _model(tiny, alternation="batch", seed=5)
    clone.load_weights(path)
    np.testing.assert_array_equal(np.array(clone.entropy["vision"].memory), memory)
    np.testing.assert_array_equal(
        np.array(clone.entropy["audio"].memory_valid), np.array(model.entropy["audio"].memory_valid)
    )

    resumed = _model(tiny, alternation="batch", seed=6)
    resumed.fit(
        data(),
        epochs=1,
        steps_per_epoch=3,
        callbacks=[keras.callbacks.BackupAndRestore(str(backup))],
        verbose=0,
    )  # the backup says epoch 1 is done: nothing runs, the state is restored
    np.testing.assert_array_equal(np.array(resumed.entropy["vision"].memory), memory)


def test_serialization_roundtrip_and_explain(tiny):
    model = _model(tiny, bidirectional=True, entropy_projection="trained")
    x, _ = _batch(tiny)
    config = model.get_config()
    clone = MMIM.from_config(config)
    clone.build(SHAPES)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(np.array(clone(x)), np.array(model(x)), atol=1e-5)
    out = model.explain(x)
    assert set(out) == {"prediction", "s_zt", "s_za", "s_zv", "cos_zt", "cos_za", "cos_zv"}
    for key in ("s_zt", "s_za", "s_zv"):
        s = np.array(out[key])
        assert s.shape == (8,) and np.all((s >= np.exp(-1) - 1e-6) & (s <= np.e + 1e-6))
        np.testing.assert_allclose(np.log(s), np.array(out["cos_z" + key[-1]]), atol=1e-5)


def test_entropy_projection_modes_put_parameters_where_stated(tiny):
    trained = _model(tiny, entropy_projection="trained")
    frozen = _model(tiny, entropy_projection="frozen")
    none = _model(tiny)
    proj = lambda m: [v for v in m.variable_groups()["main"] if "entropy_projection" in v.path]  # noqa: E731
    assert (
        len(proj(trained)) == 4 and not proj(frozen) and not proj(none)
    )  # kernel + bias, t->a, t->v
    assert any("entropy_projection" in v.path for v in frozen.non_trainable_variables)


@pytest.mark.parametrize("modalities", [["text", "audio"], ["text"]])
def test_modality_subsets_train_and_drop_terms(tiny, modalities):
    with pytest.warns(UserWarning, match="dropping"):
        model = _model(tiny, modalities=modalities)
    keys = {
        "text": ("token_ids", "padding_mask", "segment_ids"),
        "audio": ("audio", "audio_lengths"),
    }
    x, y = _batch(tiny)
    x = {k: v for k, v in x.items() if any(k in keys[m] for m in modalities)}
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert set(model.cpc) == set(modalities)
    assert set(model.q) == set(modalities) - {"text"}
    if modalities == ["text"]:
        assert [s.name for s in model.stages()] == ["main"] and "ba" not in logs


def test_rejects_bad_configurations(tiny):
    with pytest.raises(ValueError, match="text"):
        BertLSTMMLP(tiny[0], audio_dim=5, modalities=["audio"])
    with pytest.raises(ValueError, match="vision_dim is None"):
        BertLSTMMLP(tiny[0], audio_dim=5, modalities=["text", "vision"])
    with pytest.raises(ValueError, match="alternation"):
        MMIM(BertLSTMMLP(tiny[0], audio_dim=5), alternation="sometimes")
    with pytest.raises(TypeError, match="multimodal base model"):
        MMIM(tiny[0])


def _fit_on_sample(modalities, epochs, seed=0):
    """Best validation MAE of MMIM on the sample dataset (sequences cut to 64 frames: the planted signal is an
    offset over every valid frame, so the first 64 carry it)."""
    keras.utils.set_random_seed(seed)
    backbone, tokenizer = backbones.load_text_backbone("tiny")
    common = dict(
        text_backbone=tokenizer,
        shuffle=False,
        modalities=modalities,
        max_lengths={"audio": 64, "vision": 64},
    )
    train = pipeline.load("sample", "train", 32, **common).unbatch().cache()
    val = pipeline.load("sample", "validation", 150, **common).cache()
    with warnings.catch_warnings():  # the text-only ablation drops its BA/CPC terms on purpose
        warnings.simplefilter("ignore", UserWarning)
        model = MMIM.from_config_name("sample", text_backbone=backbone, modalities=modalities)
    model.build({"token_ids": (None, 50), "audio": (None, 64, 5), "vision": (None, 64, 20)})
    model.compile(**MMIM.default_optimizers("sample"), jit_compile=False)
    fractions = (1.0, 1.0) if len(modalities) > 1 else None
    stream, steps = staging.epoch_stream(
        train, batch_size=32, seed=seed, num_epochs=epochs, stage_fractions=fractions
    )
    history = model.fit(
        stream, validation_data=val, epochs=epochs, steps_per_epoch=steps, verbose=0
    )
    y = np.concatenate([b[1] for b in val])
    return min(history.history["val_loss"]), float(np.mean(np.abs(y - np.median(y))))


def test_mmim_learns_the_planted_signal_beyond_text():
    """On `sample`, MMIM (all modalities, the paper's per-epoch alternation) beats the constant predictor and
    its own text-only ablation.

    Margins: the best constant (median) predictor has validation MAE 1.40; a ridge oracle on hand features reaches
    0.94 with text alone and 0.26 with all three modalities (`python -m keras_mmsa_datasets.msa.sample`). In 15
    epochs (seed 0) MMIM reaches 0.521 and the text-only ablation 1.025 (before the base-model split and the
    reference's one-layer encoder dropout of 0.0: 0.597 and 1.025; earlier runs 0.81–0.86); we require a third
    of the constant's error gone and a 0.08 gap to text-only, both well inside those numbers.
    """
    mmim, constant = _fit_on_sample(["text", "audio", "vision"], epochs=15)
    text_only, _ = _fit_on_sample(["text"], epochs=15)
    print(f"val MAE: constant {constant:.3f}, text-only {text_only:.3f}, MMIM {mmim:.3f}")
    assert mmim < constant * (2 / 3)
    assert mmim < text_only - 0.08


@pytest.mark.parametrize("alternation, steps, q_updates", [("epoch", 2 * 3, 3), ("batch", 3, 3)])
def test_fit_through_the_public_api_runs_the_papers_schedule(tiny, alternation, steps, q_updates):
    """The README's code path: `model.fit(kmsa.data.load(...))` on a plain dataset. With
    `alternation="epoch"` (Algorithm 1) each epoch is a pass of lld-only batches, then a pass of main batches:
    2 x 3 steps, q updated on the first 3 only and the main group on the last 3; with "batch" both stages run
    on each of the 3 batches."""
    model = _model(tiny, alternation=alternation)
    xs, ys = zip(*(spec_batch(tiny[1], seed=i) for i in range(3)))
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(
        ({k: np.concatenate([x[k] for x in xs]) for k in xs[0]}, np.concatenate(ys))
    ).batch(8)
    ran = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: ran.append(
            (
                int(model.stage_optimizers["q"].iterations),
                int(model.stage_optimizers["main"].iterations),
            )
        )
    )
    model.fit(ds, epochs=1, verbose=0, callbacks=[record])
    assert len(ran) == steps
    if alternation == "epoch":
        assert ran[:3] == [(1, 0), (2, 0), (3, 0)] and ran[3:] == [(3, 1), (3, 2), (3, 3)], ran
    else:
        assert ran == [(1, 1), (2, 2), (3, 3)], ran
    assert int(model.stage_optimizers["q"].iterations) == q_updates


def test_unlabelled_examples_stay_out_of_the_task_loss_and_the_polarity_memory(tiny):
    model = _model(tiny)
    x, y = _batch(tiny)
    w = np.array([1, 0, 1, 0, 1, 0, 1, 0], "float32")
    labels, mask = model._polarity(y, w)
    np.testing.assert_array_equal(np.array(mask), w > 0)
    features = model.compute_features(x)
    stage = model.stages()[-1]
    _, logs = model.compute_stage_losses(stage, features, x, y, sample_weight=w)
    pred = np.array(features["prediction"])
    np.testing.assert_allclose(float(logs["task"]), np.mean(np.abs(pred - y)[w > 0]), rtol=1e-5)


def test_cpc_direction_flag_reaches_every_predictor_and_changes_the_loss(tiny):
    paper = _model(tiny)
    official = _model(tiny, cpc_normalize_over="prediction")
    official.set_weights(paper.get_weights())
    assert {p.normalize_over for p in official.cpc.values()} == {"prediction"}
    assert MMIM.from_config(official.get_config()).cpc_normalize_over == "prediction"
    x, y = _batch(tiny)
    f = paper.compute_features(x)
    stage = paper.stages()[-1]
    cpc_paper = float(paper.compute_stage_losses(stage, f, x, y)[1]["cpc"])
    cpc_official = float(official.compute_stage_losses(stage, f, x, y)[1]["cpc"])
    assert np.isfinite(cpc_paper) and abs(cpc_paper - cpc_official) > 1e-6
