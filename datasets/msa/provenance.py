"""What a prepared `msa` config was made from, and whether a manual directory still holds the same thing.

A prepared config is a cache of its sources: the user's files (MMSA pickles, SDK `.csd` files, `label.csv`) or,
for `sample`, the generator. The builder stores a *source record* in the prepared dataset's metadata
(`<data_dir>/msa/<config>/<version>/metadata.json`, written with the data, so a record never outlives or predates
its data) and compares it with the sources at hand on every prepare/load:

* files: name, size, and a SHA-256 of the content for files up to `HASH_LIMIT` bytes (mtime for larger ones,
  which are not read on every load), so a copy of the same files elsewhere is the same source;
* the generator: a SHA-256 of the generator module's source, with the config's seed and sizes in the fields;
* the config's fields that shape the prepared examples (a custom config may reuse a name with other files).

`differences(recorded, current)` lists what differs, in words, for the one-line message the builder gives.

`global_rng_preserved()` restores Python's and NumPy's global random state around preparation: TFDS names its
temporary folder with Python's `random`, and Keras draws the seed of every unseeded initializer/dropout from the
same generator, so preparing between `keras.utils.set_random_seed` and model building would change the model.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import random

import numpy as np
from etils import epath

FORMAT = 1
HASH_LIMIT = 64 * 2**20  # bytes; larger files are compared by size and mtime
# (path, size, mtime_ns) -> sha256, so one process hashes each file once however often it loads
_DIGESTS: dict[tuple, str] = {}


def _stat(path: epath.Path) -> tuple[int, int]:
    """(size in bytes, mtime in ns) of a local or remote file."""
    try:
        st = os.stat(os.fspath(path))
        return int(st.st_size), int(st.st_mtime_ns)
    except OSError:  # not a local path (gs://, ...)
        st = epath.Path(path).stat()
        return int(st.length), int(st.mtime * 1e9)


def _sha256(path: epath.Path, size: int, mtime_ns: int) -> str:
    key = (os.fspath(path), size, mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with epath.Path(path).open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def file_record(path: epath.PathLike) -> dict:
    """`{"path", "size", "mtime_ns", "sha256"}` of one source file (sha256 None above `HASH_LIMIT`)."""
    path = epath.Path(path)
    size, mtime_ns = _stat(path)
    return {
        "path": os.fspath(path),
        "size": size,
        "mtime_ns": mtime_ns,
        "sha256": _sha256(path, size, mtime_ns) if size <= HASH_LIMIT else None,
    }


def module_digest(module) -> str:
    """SHA-256 of a module's source file (a generator's "version": any edit of it prepares again)."""
    return hashlib.sha256(epath.Path(module.__file__).read_bytes()).hexdigest()


def _file_differences(old: dict, new: dict) -> list[str]:
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            out.append(f"{name} {'added' if a is None else 'removed'}")
        elif a["size"] != b["size"]:
            out.append(f"{name}: {a['size']} -> {b['size']} bytes")
        elif a.get("sha256") and b.get("sha256"):
            if a["sha256"] != b["sha256"]:
                out.append(
                    f"{name}: other content (sha256 {a['sha256'][:12]} -> {b['sha256'][:12]})"
                )
        elif a["mtime_ns"] != b["mtime_ns"]:
            when = datetime.datetime.fromtimestamp(b["mtime_ns"] / 1e9).isoformat(
                timespec="seconds"
            )
            out.append(f"{name}: modified {when}")
    return out


def differences(recorded: dict, current: dict, *, files: bool = True) -> list[str]:
    """What differs between two source records, in words ([] = the same sources).

    `files=False` compares everything but the files (when there is no manual directory to look at).
    """
    out = []
    if recorded.get("format") != current.get("format"):
        out.append(f"record format {recorded.get('format')} -> {current.get('format')}")
    old_config, new_config = recorded.get("config", {}), current.get("config", {})
    for key in sorted(set(old_config) | set(new_config)):
        if old_config.get(key) != new_config.get(key):
            out.append(f"{key}: {old_config.get(key)!r} -> {new_config.get(key)!r}")
    if recorded.get("generator") != current.get("generator"):
        out.append("the sample generator's code changed")
    if files:
        out += _file_differences(recorded.get("files") or {}, current.get("files") or {})
    return out


@contextlib.contextmanager
def global_rng_preserved():
    """Gives Python's and NumPy's global random state back as it was, whatever the body drew from them."""
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
