"""Dataset (TFDS builder config) names and the preset family each belongs to."""

import copy

# Dataset (builder config) name -> preset family.
FAMILY_OF = {
    "sample": "sample",
    "sample_aligned": "sample",
    "sample_unlabeled": "sample",
    "mosi_unaligned": "mosi",
    "mosi_aligned": "mosi",
    "mosi_sdk": "mosi",
    "mosi_sdk_aligned": "mosi",
    "mosi_label_csv": "mosi",
    "mosei_unaligned": "mosei",
    "mosei_aligned": "mosei",
    "mosei_sdk": "mosei",
    "mosei_label_csv": "mosei",
    "sims_unaligned": "sims",
    "sims_label_csv": "sims",
}


def lookup(presets, name, *, method):
    """A deep copy of `presets[family of name]`; a ValueError naming the known names otherwise."""
    key = FAMILY_OF.get(name, name)
    if key not in presets:
        raise ValueError(
            f"no {method} preset for {name!r}; known: {sorted(presets)} and datasets {sorted(FAMILY_OF)}"
        )
    return copy.deepcopy(presets[key])
