"""`MAGBERT`: MAG-BERT — a fine-tuned BERT whose embeddings are shifted by the Multimodal Adaptation Gate."""

from __future__ import annotations

import keras
import keras_hub

from keras_mmsa.configs import mag_bert as presets
from keras_mmsa.models.mag_transformer import MAGTransformer


@keras.saving.register_keras_serializable(package="keras_mmsa")
class MAGBERT(MAGTransformer):
    """MAG-BERT (Rahman et al. 2020) over a KerasHub `BertBackbone`, as MMSA runs it (`BERT_MAG`).

    The BERT runs its embeddings and transformer layers `[0, injection_index)`, a `MultimodalAdaptationGate`
    shifts every token state with the audio/vision frames aligned to that token, and layers
    `[injection_index, num_layers)` follow; the backbone's own pooler (tanh dense over [CLS]) gives z, and the
    head is `Dense(1)(dropout(z))` (BERT's `BertForSequenceClassification` head, dropout = BERT's hidden dropout
    0.1). MMSA and the reference code inject right after the embeddings (`injection_index=0`), so the gate's
    layer norm and dropout replace nothing: they come on top of BERT's embedding layer norm and dropout.

    Everything is trained (BERT is fine-tuned). Variable groups: `"bert"` (the whole backbone, pooler included:
    `lr_bert`) and `"main"` (gate and head: `lr_main`). MMSA trains both with one learning rate; the presets
    say so with `lr_bert == lr_main`.

    See `MAGTransformer` for h / z / y and the word-aligned inputs (`requires_aligned`).

    Args:
        text_backbone: a `keras_hub.models.BertBackbone` (e.g. `keras_mmsa.backbones.load_text_backbone(
            "bert_base_en_uncased")`, a local preset directory such as a converted MiniLM, or `"tiny"`).
        audio_dim: feature size of the aligned acoustic frames (None: no audio).
        vision_dim: feature size of the aligned visual frames (None: no vision).
        modalities: the modalities used (must contain "text"); default: every one with a dimension. Text alone
            is the plain fine-tuned BERT (no gate).
        injection_index: MAG goes before transformer layer `injection_index` (0: on the embeddings, the paper's
            and MMSA's choice; `num_layers`: on the last layer's output).
        beta_shift: MAG's scaling threshold beta.
        dropout_mag: dropout after MAG's layer norm (MMSA's `dropout_prob`).
        dropout_head: dropout on z before the output layer.
        **kwargs: `keras.layers.Layer` arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    base = MAGBERT(backbone, audio_dim=5, vision_dim=20)
    batch, label = next(iter(keras_mmsa.data.load("sample_aligned", "train", 8, text_backbone=tokenizer)))
    out = base.forward(batch)  # {"h": {...}, "z": [8, 64], "prediction": [8]}
    ```

    Reference:
        Rahman, Hasan, Lee, Zadeh, Mao, Morency, Hoque. "Integrating Multimodal Information in Large Pretrained
        Transformers". ACL 2020, §3; MMSA's port (THUIAR/MMSA, `models/singleTask/BERT_MAG.py`,
        `config/config_regression.json` entry `bert_mag`).
    """

    presets = presets
    text_group = "bert"
    default_injection_index = 0  # the gate after the embeddings: MMSA's BERT_MAG default

    def _check_backbone(self, backbone):
        if not isinstance(backbone, keras_hub.models.BertBackbone):
            raise TypeError(
                f"MAGBERT needs a keras_hub BertBackbone (e.g. load_text_backbone('tiny') or a BERT preset); "
                f"got {type(backbone).__name__}"
                + (" (use MAGXLNet for XLNet)" if "XLNet" in type(backbone).__name__ else "")
            )

    def summarize(self, states, context, training=False):
        return self.transformer.pool(states, context, training=training)
