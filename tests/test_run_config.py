"""RunConfig: preset resolution, overrides, JSON round trip and clear errors."""

import pytest

from keras_mmsa.models.multimodal_backbone import MultimodalBackbone
from keras_mmsa.training import RunConfig
from keras_mmsa.training.config import method_requires_aligned
from keras_mmsa.training.registry import get_method


def test_resolved_fills_the_papers_presets():
    mosi = RunConfig(method="mmim", dataset="mosi_unaligned").resolved()
    assert mosi.model["alpha"] == 0.3 and mosi.model["beta"] == 0.1  # MMIM Table 3, MOSI
    assert mosi.train["batch_size"] == 32 and mosi.train["lr_lld"] == 5e-3
    assert (
        mosi.text_backbone == "bert_base_en_uncased" and mosi.name == "mmim_mosi_unaligned_seed1111"
    )
    mosei = RunConfig(method="mmim", dataset="mosei_aligned").resolved()
    assert (mosei.model["alpha"], mosei.model["beta"], mosei.train["batch_size"]) == (0.1, 0.05, 64)
    assert mosei.train["stage1_fraction"] == 0.5
    sims = RunConfig(method="mmim", dataset="sims_unaligned").resolved()
    assert sims.model["bidirectional"] and sims.train["clipnorm"] == 1.0


def test_overrides_and_json_roundtrip(tmp_path):
    config = RunConfig(method="mmim").with_overrides(
        ["seed=3", "train.lr_main=5e-4", "model.alpha=0.5", "max_lengths.audio=64", "name=x"]
    )
    assert config.seed == 3 and config.train == {"lr_main": 5e-4} and config.model == {"alpha": 0.5}
    assert config.max_lengths == {"audio": 64}
    resolved = config.resolved()
    assert resolved.model["alpha"] == 0.5 and resolved.model["beta"] == 0.1
    path = tmp_path / "config.json"
    resolved.to_json(path)
    assert RunConfig.from_json(path) == resolved


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["colour=blue"], "unknown key 'colour'"),
        (["seed"], "key=value"),
        (["train.lr_main.x=1"], "only model"),
    ],
)
def test_bad_overrides(overrides, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(method="mmim").with_overrides(overrides)


def test_unknown_settings_name_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="not mmim hyper-parameters"):
        RunConfig(method="mmim", model={"alpah": 1.0}).resolved()
    with pytest.raises(ValueError, match="train settings \\['lr'\\] are unknown"):
        RunConfig(method="mmim", train={"lr": 1.0}).resolved()
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        RunConfig(method="nope").resolved()
    with pytest.raises(ValueError, match="no MMIM preset"):
        RunConfig(method="mmim", dataset="iemocap").resolved()
    bad = tmp_path / "c.json"
    bad.write_text('{"seed": 1, "speed": 2}')
    with pytest.raises(ValueError, match="unknown key"):
        RunConfig.from_json(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        RunConfig.from_json(bad)


def test_model_keys_cover_the_reference_flags_and_the_base_model():
    keys = set(get_method("mmim").model_keys())
    assert {"variance_free", "entropy_projection", "polarity", "logvar_bound"} <= keys
    assert {"audio_hidden", "standardize", "dropout_fusion"} <= keys  # the base model's settings
    assert (
        RunConfig(method="mmim", model={"variance_free": True}).resolved().model["variance_free"]
        is True
    )


def test_a_base_model_alone_resolves_its_own_presets():
    config = RunConfig(method="bert_lstm_mlp", dataset="mosi_unaligned").resolved()
    assert config.train["lr_main"] == 1e-3 and "lr_lld" not in config.train
    assert "alpha" not in config.model and config.name == "bert_lstm_mlp_mosi_unaligned_seed1111"
    with pytest.raises(ValueError, match="not bert_lstm_mlp hyper-parameters"):
        RunConfig(method="bert_lstm_mlp", model={"alpha": 0.3}).resolved()
    with pytest.raises(TypeError, match="method"):
        RunConfig()  # no default method: generic code names none


# --------------------------------------------------------------------------------------------------------
# Word-aligned methods: default dataset "sample_aligned", unaligned datasets refused


class _TinyPresets:
    MODEL_KEYS = ("hidden",)

    @staticmethod
    def get_preset(dataset):
        from keras_mmsa.configs.families import lookup

        preset = dict(
            model={"hidden": 4}, train={"batch_size": 8, "epochs": 1}, text_backbone="tiny"
        )
        return lookup({"sample": preset, "mosi": preset}, dataset, method="dummy")


class _AlignedBase(MultimodalBackbone):
    """Stands for EF-LSTM / MFN / MAG-BERT (other branches): only the class attributes matter here."""

    requires_aligned = True
    presets = _TinyPresets


class _WrapperOverAligned:
    """A method wrapping a base model (like MDM over EF-LSTM): its base model class decides."""

    base_model_class = _AlignedBase
    preset = _AlignedBase.preset
    model_keys = _AlignedBase.model_keys


@pytest.fixture
def aligned_methods(monkeypatch):
    from keras_mmsa.training import registry

    original = registry.get_method
    extra = {"aligned_base": _AlignedBase, "aligned_wrapper": _WrapperOverAligned}
    monkeypatch.setattr(registry, "get_method", lambda name: extra.get(name) or original(name))


@pytest.mark.parametrize("method", ["aligned_base", "aligned_wrapper"])
def test_aligned_methods_default_to_sample_aligned_and_refuse_unaligned_data(
    aligned_methods, method
):
    assert RunConfig(method=method).run_name == f"{method}_sample_aligned_seed1111"
    config = RunConfig(method=method).resolved()
    assert config.dataset == "sample_aligned" and config.name == f"{method}_sample_aligned_seed1111"
    assert (
        RunConfig(method=method, dataset="mosi_sdk_aligned").resolved().dataset
        == "mosi_sdk_aligned"
    )
    with pytest.raises(ValueError) as e:
        RunConfig(method=method, dataset="mosi_unaligned").resolved()
    msg = str(e.value)
    for name in (
        "'mosi_unaligned' is not aligned",
        "sample_aligned",
        "mosi_sdk_aligned",
        "mosi_aligned",
    ):
        assert name in msg, msg
    assert "mosi_unaligned," not in msg  # only aligned datasets are offered


def test_unaligned_methods_keep_the_sample_default():
    assert not MultimodalBackbone.requires_aligned
    assert RunConfig(method="tfn").resolved().dataset == "sample"
    assert RunConfig(method="mmim").run_name == "mmim_sample_seed1111"
    assert RunConfig(method="tfn", dataset="sample_aligned").resolved().dataset == "sample_aligned"

    class Chooser:  # a wrapper whose model settings choose the base model class
        @classmethod
        def base_model_class(cls, model):
            return _AlignedBase if model.get("base") == "aligned" else MultimodalBackbone

    assert method_requires_aligned(Chooser, {"base": "aligned"})
    assert not method_requires_aligned(Chooser, {})
