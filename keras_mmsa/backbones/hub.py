"""The offline hub probe: fail fast, with the two ways out, when a preset must be downloaded and cannot be.

A KerasHub preset already in the local kagglehub / Hugging Face cache loads without network. Otherwise the hub
is probed first (one HTTPS HEAD request, bounded by `KMSA_HUB_TIMEOUT` seconds, default 3, proxies as urllib
applies them), and an unreachable hub raises `PresetUnavailableError` at once, naming the two ways out (run once
with network, or pass a local directory), instead of letting kagglehub wait out its connect/read timeouts. A
download that fails after a good probe (proxy refusal, gated model) raises the same error with the cause
(`keras_mmsa.backbones.loading`). `KMSA_OFFLINE=1` skips the probe and fails immediately.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request


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


def offline_message(spec, handle, reason, probed=True):
    """The error text of `PresetUnavailableError`: what failed and the two ways out."""
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


def resolve_remote(spec, timeout=None):
    """Check a preset name / hub handle before KerasHub tries to download it; return the handle to load.

    Raises:
        ValueError: `spec` is neither a KerasHub preset name nor a hub handle.
        PresetUnavailableError: not cached, and offline mode is set or the hub does not answer within `timeout`
            seconds (default `$KMSA_HUB_TIMEOUT` or 3).
    """
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
        raise PresetUnavailableError(offline_message(spec, handle, "offline mode is set"))
    if timeout is None:
        timeout = float(os.environ.get("KMSA_HUB_TIMEOUT", "3"))
    start = time.monotonic()
    reason = probe_url(url, timeout)
    if reason is not None:
        reason += f", after {time.monotonic() - start:.1f} s"
        raise PresetUnavailableError(offline_message(spec, handle, reason))
    return handle
