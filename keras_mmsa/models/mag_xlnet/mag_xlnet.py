"""`MAGXLNet`: MAG-XLNet — a fine-tuned XLNet whose layer-1 input is shifted by the Multimodal Adaptation Gate."""

from __future__ import annotations

import keras
import keras_hub

from keras_mmsa.configs import mag_xlnet as presets
from keras_mmsa.models.mag_transformer import MAGTransformer


@keras.saving.register_keras_serializable(package="keras_mmsa")
class MAGXLNet(MAGTransformer):
    """MAG-XLNet (Rahman et al. 2020) over a KerasHub `XLNetBackbone`, as the reference code builds it.

    The XLNet runs its embeddings and layers `[0, injection_index)` (the reference code's
    `XLNET_INJECTION_INDEX = 1`: MAG shifts the output of the first layer), a `MultimodalAdaptationGate` shifts
    every token state with the audio/vision frames aligned to that token, and the remaining layers follow.
    XLNet has no pooler: as in Hugging Face's `XLNetForSequenceClassification` (the reference code's head,
    `SequenceSummary` with XLNet's defaults), z = tanh(Dense_H(state of the last token)), the last token being
    `<cls>` in XLNet's layout `pieces <sep> <cls>`; with right padding (the pipeline's) it is the last REAL
    token, at `sum(padding_mask) - 1`. The head is `Dense(1)(dropout(z))` (XLNet's summary dropout 0.1).

    The tokenizer is `keras_mmsa.backbones.XLNetTokenizer` (specials at the end, `<cls>` in segment 2). The
    backbone runs through `SplitTextBackbone`, which also fixes two batch-mixing bugs of KerasHub 0.32's XLNet
    (its attention masks and relative positional encoding are wrong for padded batches of more than one
    sentence; see there).

    Everything is trained (XLNet is fine-tuned). Variable groups: `"xlnet"` (the backbone: `lr_xlnet`) and
    `"main"` (gate, summary dense and head: `lr_main`).

    See `MAGTransformer` for h / z / y and the word-aligned inputs (`requires_aligned`).

    Args:
        text_backbone: a `keras_hub.models.XLNetBackbone` (`keras_mmsa.backbones.load_text_backbone(
            "tiny_xlnet")` offline, or a local XLNet preset directory: KerasHub ships no XLNet weights).
        audio_dim: feature size of the aligned acoustic frames (None: no audio).
        vision_dim: feature size of the aligned visual frames (None: no vision).
        modalities: the modalities used (must contain "text"); default: every one with a dimension. Text alone
            is the plain fine-tuned XLNet (no gate).
        injection_index: MAG goes before transformer layer `injection_index` (None: 1, the reference code's).
        beta_shift: MAG's scaling threshold beta.
        dropout_mag: dropout after MAG's layer norm (the reference code's `dropout_prob`).
        dropout_head: dropout on z before the output layer (XLNet's `summary_last_dropout`).
        **kwargs: `keras.layers.Layer` arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny_xlnet")
    base = MAGXLNet(backbone, audio_dim=5, vision_dim=20)
    batch, label = next(iter(keras_mmsa.data.load("sample_aligned", "train", 8, text_backbone=tokenizer)))
    out = base.forward(batch)  # {"h": {...}, "z": [8, 64], "prediction": [8]}
    ```

    Reference:
        Rahman, Hasan, Lee, Zadeh, Mao, Morency, Hoque. "Integrating Multimodal Information in Large Pretrained
        Transformers". ACL 2020, §3; reference code WasifurRahman/BERT_multimodal_transformer (`xlnet.py`,
        `global_configs.py`, `multimodal_driver.py`).
    """

    presets = presets
    text_group = "xlnet"
    default_injection_index = 1  # the official MAG-XLNet code's default

    def __init__(self, text_backbone, **kwargs):
        super().__init__(text_backbone, **kwargs)
        self.summary = keras.layers.Dense(
            self.hidden_dim, activation="tanh", dtype=self.dtype_policy, name="summary"
        )

    def _check_backbone(self, backbone):
        if not isinstance(backbone, keras_hub.models.XLNetBackbone):
            raise TypeError(
                f"MAGXLNet needs a keras_hub XLNetBackbone (e.g. load_text_backbone('tiny_xlnet') or a local "
                f"XLNet preset directory); got {type(backbone).__name__}"
                + (" (use MAGBERT for BERT)" if "Bert" in type(backbone).__name__ else "")
            )

    def summarize(self, states, context, training=False):
        return self.summary(self.transformer.pool(states, context, training=training))
