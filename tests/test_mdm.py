"""MDM on tiny configs: the penalties against closed forms, the permutation groups, one fit batch per penalty with
the critic's unroll count, serialization and explanation, presets and RunConfig resolution."""

import keras
import numpy as np
import pytest
from harness import SHAPES, spec_batch

from keras_mmsa import backbones
from keras_mmsa.estimators import sample_product_of_marginals
from keras_mmsa.models import LMF, MDM, TFN
from keras_mmsa.training import RunConfig, registry

TINY = dict(text_hidden=8, audio_hidden=4, vision_hidden=6, text_out=5, post_fusion_dim=8)


@pytest.fixture(scope="module")
def tiny():
    return backbones.load_text_backbone("tiny")


def tiny_tfn(tiny, **kwargs):
    return TFN(tiny[0], audio_dim=5, vision_dim=20, **{**TINY, **kwargs})


def tiny_mdm(tiny, seed=0, compile=True, **kwargs):
    """A built MDM over a tiny TFN, compiled to run eagerly (tracing the unrolled critic costs ~10 s)."""
    keras.utils.set_random_seed(seed)
    model = MDM(tiny_tfn(tiny), **kwargs)
    model.build(SHAPES)
    if compile:
        model.compile(
            optimizers=model.optimizers_for(MDM.preset("sample")["train"]), run_eagerly=True
        )
    return model


# ------------------------------------------------------------------------------- the penalties' estimates


def _gaussian_triplet(n, rho, rng):
    """Three standard normal 1-D variables with pairwise correlation rho (the joint), its TC in closed form."""
    cov = np.full((3, 3), rho) + (1 - rho) * np.eye(3)
    x = rng.multivariate_normal(np.zeros(3), cov, size=n).astype("float32")
    return x, cov, -0.5 * np.log(np.linalg.det(cov))


def _log_density_ratio(x, cov):
    """log p(x_a, x_v, x_l) − Σ_j log p(x_j): the optimal DV critic (up to a constant)."""
    inv = np.linalg.inv(cov)
    joint = -0.5 * np.einsum("ni,ij,nj->n", x, inv, x) - 0.5 * np.log(np.linalg.det(cov))
    marginals = -0.5 * np.sum(x**2, axis=1)
    return (joint - marginals).astype("float32")


@pytest.mark.parametrize("penalty", ["kl", "f"])
def test_divergence_penalties_reach_the_total_correlation_of_correlated_gaussians(tiny, penalty):
    """With the optimal critic (DV: log p/Πp; NWJ: 1 + log p/Πp) the penalty equals TC = −½ log det R, with the
    product-of-marginals sample drawn as MDM draws it (each variable permuted on its own)."""
    rng = np.random.default_rng(0)
    x, cov, tc = _gaussian_triplet(40000, 0.5, rng)
    (xa, xv, xl), _ = sample_product_of_marginals(
        [x[:, :1], x[:, 1:2], x[:, 2:]], seed=keras.random.SeedGenerator(1)
    )
    marginal = np.concatenate([np.array(xa), np.array(xv), np.array(xl)], axis=1)
    shift = 1.0 if penalty == "f" else 0.0
    model = MDM(tiny_tfn(tiny), penalty=penalty)
    estimate = float(
        model.dependency(
            _log_density_ratio(x, cov) + shift, _log_density_ratio(marginal, cov) + shift
        )
    )
    assert abs(estimate - tc) < 0.04, (estimate, tc)
    # any other critic gives less (both are lower bounds): a scaled-down critic
    worse = float(
        model.dependency(
            0.5 * _log_density_ratio(x, cov) + shift,
            0.5 * _log_density_ratio(marginal, cov) + shift,
        )
    )
    assert worse < estimate - 0.05


def test_wasserstein_critic_is_1_lipschitz_and_reaches_w1_of_a_shift(tiny):
    """p = N(μ1, I_d), q = N(0, I_d): W1 = μ√d. MDM's spectrally normalised critic, trained on the penalty,
    climbs towards W1 and never above it (up to sampling noise): its Lipschitz constant is at most 1."""
    import tensorflow as tf

    d, mu = 8, 0.5
    w1 = mu * np.sqrt(d)
    keras.utils.set_random_seed(0)
    base = tiny_tfn(tiny, post_fusion_dim=d)
    model = MDM(base, penalty="wasserstein", critic_output="linear")
    critic = model.critic
    assert critic.lipschitz == "spectral" and critic.dropout == 0.0
    critic.build((None, d))
    opt = keras.optimizers.Adam(1e-2)
    opt.build(critic.trainable_variables)

    @tf.function
    def step(p, q):
        with tf.GradientTape() as tape:
            loss = -model.dependency(critic(p, training=True), critic(q, training=True))
        opt.apply(tape.gradient(loss, critic.trainable_variables), critic.trainable_variables)

    rng = np.random.default_rng(0)
    for _ in range(300):
        p = rng.normal(size=(256, d)).astype("float32") + mu
        step(p, rng.normal(size=(256, d)).astype("float32"))
    p = rng.normal(size=(20000, d)).astype("float32") + mu
    q = rng.normal(size=(20000, d)).astype("float32")
    # in training mode, as the penalty uses it: the kernels normalised by the power-iteration estimate (in
    # inference mode they are those of the last optimizer step, slightly off the unit spectral norm)
    estimate = float(model.dependency(critic(p, training=True), critic(q, training=True)))
    assert 0.5 * w1 < estimate < w1 + 0.05, (estimate, w1)
    # eq. 8 as printed (with the log) is another number, available as a flag
    literal = MDM(base, penalty="wasserstein", wasserstein_log=True)
    np.testing.assert_allclose(
        float(literal.dependency(np.array([0.5, 0.7]), np.array([0.2, 0.4]))),
        0.6 - np.log(0.3),
        rtol=1e-5,
    )


# ------------------------------------------------------------------------------- negatives


def test_marginal_inputs_permute_each_modality_group_together(tiny):
    model = MDM(tiny_tfn(tiny), penalty="kl", seed=3)
    b, length = 64, 6
    idx = np.arange(b)
    x = {
        "token_ids": np.repeat(idx[:, None] + 10, length, axis=1).astype("int32"),
        "padding_mask": (np.arange(length)[None, :] <= (idx[:, None] % length)),
        "segment_ids": np.repeat(idx[:, None], length, axis=1).astype("int32"),
        "audio": np.repeat(idx[:, None, None], 3, axis=1).astype("float32") * np.ones((1, 1, 5)),
        "audio_lengths": idx.astype("int32"),
        "vision": 1000.0 + np.repeat(idx[:, None, None], 2, axis=1) * np.ones((1, 1, 20)),
        "vision_lengths": idx.astype("int32") + 1000,
        "other": idx.astype("int32"),
    }
    out = {k: np.array(v) for k, v in model.marginal_inputs(x).items()}
    text = out["token_ids"][:, 0] - 10
    audio = out["audio"][:, 0, 0].astype(int)
    vision = out["vision"][:, 0, 0].astype(int) - 1000
    for perm in (text, audio, vision):
        assert sorted(perm) == list(idx)  # a permutation of the batch
    # each group moved as one: every key of a modality carries the same row
    np.testing.assert_array_equal(out["segment_ids"][:, 0], text)
    np.testing.assert_array_equal(out["padding_mask"], x["padding_mask"][text])
    np.testing.assert_array_equal(out["audio_lengths"], audio)
    np.testing.assert_array_equal(out["vision_lengths"] - 1000, vision)
    # the modalities are permuted independently, and a key outside the base's inputs stays in place
    assert not np.array_equal(text, audio) and not np.array_equal(audio, vision)
    assert not np.array_equal(text, idx)
    np.testing.assert_array_equal(out["other"], idx)


def test_stacked_forward_and_feature_negatives_are_the_base_models_own(tiny):
    """The joint half of the stacked 2B forward pass is the base model's forward pass; and for TFN (unimodal
    encoders) fusing permuted h equals encoding the permuted inputs, the claim behind `negatives="features"`."""
    model = tiny_mdm(tiny, penalty="kl", compile=False)
    x, _ = spec_batch(tiny[1])
    x = {k: np.asarray(v) for k, v in x.items()}
    base = model.backbone
    features = model.compute_features(x, training=False)
    reference = base.forward(x, training=False)
    np.testing.assert_allclose(np.array(features["z"]), np.array(reference["z"]), atol=1e-5)
    np.testing.assert_allclose(
        np.array(features["prediction"]), np.array(reference["prediction"]), atol=1e-5
    )
    assert features["z_marginal"].shape == features["z"].shape
    permuted = {k: np.array(v) for k, v in model.marginal_inputs(x).items()}
    sigma = {
        "text": [
            int(np.flatnonzero((x["token_ids"] == r).all(1))[0]) for r in permuted["token_ids"]
        ],
        "audio": [int(np.flatnonzero((x["audio"] == r).all((1, 2)))[0]) for r in permuted["audio"]],
        "vision": [
            int(np.flatnonzero((x["vision"] == r).all((1, 2)))[0]) for r in permuted["vision"]
        ],
    }
    h = {m: np.array(v)[sigma[m]] for m, v in reference["h"].items()}
    np.testing.assert_allclose(
        np.array(base.fuse(h)), np.array(base.fuse(base.encode(permuted))), atol=1e-5
    )


# ------------------------------------------------------------------------------- training


@pytest.mark.parametrize(
    "penalty, kwargs",
    [
        ("kl", {}),
        ("f", {"negatives": "features"}),
        ("wasserstein", {}),
        ("wasserstein", {"lipschitz": "gradient_penalty"}),
        ("none", {}),
    ],
)
def test_one_fit_batch_updates_the_critic_unroll_times_per_model_step(tiny, penalty, kwargs):
    model = tiny_mdm(tiny, penalty=penalty, unroll=3, **kwargs)
    x, y = spec_batch(tiny[1])
    groups = model.variable_groups()
    before = {g: [np.array(v) for v in vs] for g, vs in groups.items()}
    logs = model.train_on_batch(x, y, return_dict=True)
    assert all(np.isfinite(v) for v in logs.values()), logs
    assert int(model.stage_optimizers["main"].iterations) == 1
    moved = {
        g: any(not np.allclose(b, np.array(v)) for b, v in zip(before[g], groups[g]))
        for g in groups
    }
    assert moved["main"]
    if penalty == "none":
        assert set(groups) == {"main"} and model.critic is None
        assert {"task", "loss"} <= set(logs) and "mdm" not in logs
        return
    assert int(model.stage_optimizers["critic"].iterations) == 3  # Algorithm 1's Unroll
    assert moved["critic"]
    critic_ids = {id(v) for v in groups["critic"]}
    assert not critic_ids & {id(v) for v in groups["main"]}
    assert {"task", "mdm", "critic_loss", "mdm_critic"} <= set(logs)
    # eq. 5: the model minimises L_task − λ·L_MDM (it maximises the dependency)
    np.testing.assert_allclose(logs["loss"], logs["task"] - 0.1 * logs["mdm"], atol=1e-5)
    if kwargs.get("lipschitz") == "gradient_penalty":
        np.testing.assert_allclose(
            logs["critic_loss"], -logs["mdm_critic"] + 10.0 * logs["gp"], rtol=1e-4, atol=1e-5
        )
    else:
        np.testing.assert_allclose(logs["critic_loss"], -logs["mdm_critic"], atol=1e-6)


@pytest.mark.parametrize("base_name", ["lmf", "bert_lstm_mlp"])
def test_any_base_model_trains_with_its_own_groups_and_optimizers(tiny, base_name):
    """MDM reads only encode/fuse/head: LMF (Z = its 3 rank products, so T is 1-3 units wide) and BertLSTMMLP
    (two groups, BERT with its own learning rate) train with their own optimizers plus the critic's."""
    keras.utils.set_random_seed(0)
    cls = registry.get_method(base_name)
    small = {"lmf": dict(text_hidden=8, text_out=4, audio_hidden=4, vision_hidden=4, rank=3)}
    backbone = backbones.load_text_backbone("tiny")[
        0
    ]  # fresh: TFN/LMF freeze the backbone they get
    base = cls(backbone, audio_dim=5, vision_dim=20, **small.get(base_name, {"fusion_dim": 8}))
    model = MDM(base, penalty="f", unroll=2)
    model.build(SHAPES)
    train = MDM.preset_for_settings("sample", {"base": base_name})["train"]
    model.compile(optimizers=model.optimizers_for(train), run_eagerly=True)
    assert set(model.stages()[-1].groups) == set(base.variable_groups())
    assert model.critic.input_dim == base.fusion_dim
    widths = [max(16, w) for w in (base.fusion_dim // 2, base.fusion_dim, base.fusion_dim)]
    assert model.critic.hidden_dims[:3] == widths  # Table 4's, floored at 16 (LMF's Z is 3 wide)
    logs = model.train_on_batch(*spec_batch(tiny[1]), return_dict=True)
    assert all(np.isfinite(v) for v in logs.values())
    assert int(model.stage_optimizers["critic"].iterations) == 2
    for group in base.variable_groups():
        assert int(model.stage_optimizers[group].iterations) == 1, group


def test_serialization_roundtrip_and_explain(tiny):
    model = tiny_mdm(tiny, penalty="kl", compile=False, lam=0.3, unroll=4, mine_decay=0.9)
    x, _ = spec_batch(tiny[1])
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert (clone.penalty, clone.lam, clone.unroll, clone.mine_decay) == ("kl", 0.3, 4, 0.9)
    clone.build(SHAPES)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(np.array(clone(x)), np.array(model(x)), atol=1e-5)
    out, again = model.explain(x), clone.explain(x)
    assert set(out) == {"prediction", "t_score"}
    t = np.array(out["t_score"])
    assert t.shape == (8,) and np.all((t > 0) & (t < 1))  # Table 4's sigmoid output
    np.testing.assert_allclose(t, np.array(again["t_score"]), atol=1e-5)
    with pytest.raises(ValueError, match="no statistic network"):
        MDM(tiny_tfn(tiny), penalty="none").explain(x)


def test_rejects_bad_configurations(tiny):
    with pytest.raises(ValueError, match="penalty must be one of"):
        MDM(tiny_tfn(tiny), penalty="mi")
    with pytest.raises(ValueError, match="at least two"):
        MDM(tiny_tfn(tiny, modalities=["text"]))
    with pytest.raises(TypeError, match="multimodal base model"):
        MDM(keras.layers.Dense(2))
    with pytest.raises(ValueError, match="mine_decay"):
        MDM(tiny_tfn(tiny), penalty="kl", mine_decay="fast")
    with pytest.raises(ValueError, match="optimizers_for"):
        MDM.optimizers_from_settings({})


# ------------------------------------------------------------------------------- presets and the workflow


def test_presets_and_run_config_resolution():
    assert registry.get_method("mdm") is MDM
    default = RunConfig(method="mdm").resolved()
    tfn = TFN.preset("sample")
    assert default.model["base"] == "tfn" and default.name == "mdm_sample_seed1111"
    assert {k: default.model[k] for k in tfn["model"]} == tfn["model"]
    assert default.model["unroll"] == 10 and default.model["penalty"] == "wasserstein"
    assert (
        default.train["lr_critic"] == 1e-3 and default.train["lr_main"] == tfn["train"]["lr_main"]
    )
    # --set model.base=lmf --set model.penalty=kl: LMF's own preset, LMF's keys and optimizers' settings
    lmf = RunConfig(method="mdm", dataset="mosi_unaligned").with_overrides(
        ["model.base=lmf", "model.penalty=kl"]
    )
    resolved = lmf.resolved()
    assert resolved.model["rank"] == LMF.preset("mosi")["model"]["rank"]
    assert resolved.train["lr_factors"] == LMF.preset("mosi")["train"]["lr_factors"]
    assert (
        resolved.text_backbone == "bert_base_en_uncased" and "post_fusion_dim" not in resolved.model
    )
    assert resolved.name not in (default.name, "mdm_mosi_unaligned_seed1111")
    names = {
        RunConfig(method="mdm", model=m).resolved().name
        for m in ({}, {"penalty": "kl"}, {"base": "lmf"}, {"base": "bert_lstm_mlp"})
    }
    assert len(names) == 4
    with pytest.raises(ValueError, match="not a base model; choose one of"):
        RunConfig(method="mdm", model={"base": "mmim"}).resolved()
    with pytest.raises(ValueError, match="not mdm hyper-parameters"):
        RunConfig(method="mdm", model={"rank": 3}).resolved()  # an LMF key over the default TFN
    with pytest.raises(ValueError, match="model.lam"):
        RunConfig(method="mdm", model={"lam": "big"}).resolved()


def test_mdm_over_a_word_aligned_base_defaults_to_the_aligned_sample():
    from keras_mmsa.training import RunConfig

    aligned = RunConfig(method="mdm", model={"base": "ef_lstm"}).resolved()
    assert aligned.dataset == "sample_aligned"
    assert RunConfig(method="mdm").resolved().dataset == "sample"
    with pytest.raises(ValueError, match="aligned"):
        RunConfig(method="mdm", dataset="sample", model={"base": "mfn"}).resolved()


def test_cached_text_features_are_permuted_with_their_tokens(tiny):
    model = tiny_mdm(tiny, compile=False)
    x, _ = spec_batch(tiny[1])
    x["text_features"] = model.backbone.text_features(x)
    permuted = model.marginal_inputs(x)
    ids, feats = np.array(x["token_ids"]), np.array(x["text_features"])
    for row_ids, row_feats in zip(
        np.array(permuted["token_ids"]), np.array(permuted["text_features"])
    ):
        rows = [j for j in range(len(ids)) if np.array_equal(ids[j], row_ids)]
        assert any(np.allclose(feats[j], row_feats) for j in rows)
    # the stacked real + permuted pass reads the features (not the backbone): other features, other z
    plain = model.compute_features(x)
    shifted = model.compute_features({**x, "text_features": x["text_features"] + 1.0})
    assert not np.allclose(np.array(plain["z"]), np.array(shifted["z"]))


@pytest.mark.large
def test_fit_in_user_code_as_the_docstring_shows(tmp_path, monkeypatch):
    """The class docstring's example: `model.fit(dataset)` with the preset's optimizers (XLA, unroll 10)."""
    import keras_mmsa
    from keras_mmsa.data import pipeline

    monkeypatch.setenv("KMSA_DATA_DIR", str(tmp_path))
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    model = MDM(TFN(backbone, audio_dim=5, vision_dim=20), penalty="kl", lam=0.1)
    model.build()
    model.compile(optimizers=model.optimizers_for(MDM.preset("sample")["train"]))
    pipeline.prepare_builder("sample")
    train = keras_mmsa.data.load(
        "sample", "train", 32, text_backbone=tokenizer, max_lengths={"audio": 24, "vision": 24}
    )
    history = model.fit(train, epochs=1, verbose=0)
    assert int(model.stage_optimizers["critic"].iterations) == 10 * 19
    assert int(model.stage_optimizers["main"].iterations) == 19
    for key in ("loss", "task", "mdm", "critic_loss"):
        assert np.isfinite(history.history[key][0]), key
