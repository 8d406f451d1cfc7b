"""Per-dimension standardisation of zero-padded feature sequences with training-split statistics."""

import collections.abc

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmsa")
class FeatureStandardizer(keras.layers.Layer):
    """Maps each valid frame x of a `[B, T, D]` sequence to (x - mean) / std; padded frames stay 0.

    `mean` and `std` are non-trainable weights fitted by `adapt` on the valid frames of the training split
    only (padding never counts), so they travel with the checkpoints and the exported SavedModel: a served
    model takes the raw features. Until `adapt` runs the layer is the identity (mean 0, std 1).

    Raw acoustic/visual features mix very different scales (COVAREP's F0 in Hz, mean ~190, std ~53, next to
    voicing probabilities with std ~0.03), and an LSTM's input gates saturate on the large ones; features
    the reference pipelines feed unscaled become usable once standardised. A dimension whose std is
    <= `epsilon` (constant over the training split) is only centred (std set to 1), as scikit-learn's
    `StandardScaler` does, so it does not turn noise into unit variance.

    Args:
        epsilon: smallest std treated as non-constant.
        **kwargs: base layer arguments.

    Example:
    >>> layer = FeatureStandardizer()
    >>> frames = np.array([[[1.0, 10.0], [3.0, 30.0]], [[5.0, 50.0], [0.0, 0.0]]], "float32")
    >>> layer.adapt(frames, lengths=np.array([2, 1]))  # the padded frame of example 1 is ignored
    >>> [round(float(v), 3) for v in layer.mean.numpy()]
    [3.0, 30.0]
    >>> keras.ops.convert_to_numpy(layer(frames, np.array([2, 1])))[1, 1].tolist()
    [0.0, 0.0]

    Reference:
        Standard practice for sequence features (e.g. scikit-learn `StandardScaler`); used here so that the
        per-clip COVAREP vector of CMU-MOSI (`mosi_sdk`) reaches MMIM's acoustic LSTM (Han et al. 2021, eq. 2)
        on a usable scale.
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.supports_masking = False

    def build(self, frames_shape, lengths_shape=None):
        dim = frames_shape[-1]
        if dim is None:
            raise ValueError(
                f"{self.name}: the feature dimension must be known; got {frames_shape}"
            )
        self.mean = self.add_weight(shape=(dim,), initializer="zeros", trainable=False, name="mean")
        self.std = self.add_weight(shape=(dim,), initializer="ones", trainable=False, name="std")
        self.built = True

    def call(self, frames, lengths=None):
        out = (frames - ops.cast(self.mean, frames.dtype)) / ops.cast(self.std, frames.dtype)
        if lengths is None:
            return out
        steps = ops.shape(frames)[1]
        valid = ops.arange(steps)[None, :] < ops.cast(lengths, "int32")[:, None]
        return ops.where(valid[..., None], out, ops.zeros_like(out))

    def compute_output_shape(self, frames_shape, lengths_shape=None):
        return frames_shape

    # ------------------------------------------------------------------ fitting
    def adapt(self, data, lengths=None):
        """Sets `mean` and `std` from the valid frames of `data`.

        Args:
            data: a float array `[N, T, D]` (with `lengths`, or every frame valid), or an iterable (e.g. a
                batched `tf.data.Dataset`) of `(frames [B, T, D], lengths [B])` pairs.
            lengths: int array `[N]` of valid frames per example, when `data` is an array.

        Raises:
            ValueError: on non-finite values, a dimension mismatch, or no valid frame at all.
        """
        if isinstance(data, np.ndarray) or ops.is_tensor(data):
            batches = [(data, lengths)]
        elif isinstance(data, collections.abc.Iterable):
            if lengths is not None:
                raise ValueError(
                    f"{self.name}.adapt: pass lengths inside the (frames, lengths) pairs"
                )
            batches = data
        else:
            raise TypeError(
                f"{self.name}.adapt: expected an array or an iterable of (frames, lengths)"
            )
        count, total, total_sq = 0, None, None
        for frames, lens in batches:
            frames = np.asarray(frames, np.float64)
            if frames.ndim != 3:
                raise ValueError(
                    f"{self.name}.adapt: expected frames [B, T, D], got shape {frames.shape}"
                )
            if lens is None:
                valid = np.ones(frames.shape[:2], bool)
            else:
                lens = np.asarray(lens).reshape(-1)
                valid = np.arange(frames.shape[1])[None, :] < lens[:, None]
            x = frames[valid]
            if not np.all(np.isfinite(x)):
                raise ValueError(f"{self.name}.adapt: NaN or inf among the valid frames")
            if total is None:
                total, total_sq = np.zeros(x.shape[-1]), np.zeros(x.shape[-1])
            elif x.shape[-1] != total.shape[0]:
                raise ValueError(
                    f"{self.name}.adapt: feature dimension changed from {total.shape[0]} to {x.shape[-1]}"
                )
            # Shifted sums (by the first batch's mean) keep the variance exact for large offsets (F0 ~ 190).
            if count == 0:
                shift = x.mean(axis=0) if len(x) else np.zeros(x.shape[-1])
            count += len(x)
            total += (x - shift).sum(axis=0)
            total_sq += ((x - shift) ** 2).sum(axis=0)
        if not count:
            raise ValueError(f"{self.name}.adapt: no valid frame to compute statistics from")
        mean_shifted = total / count
        var = np.maximum(total_sq / count - mean_shifted**2, 0.0)
        std = np.sqrt(var)
        std = np.where(std > self.epsilon, std, 1.0)
        if not self.built:
            self.build((None, None, total.shape[0]))
        if self.mean.shape[0] != total.shape[0]:
            raise ValueError(
                f"{self.name}.adapt: the layer was built for {self.mean.shape[0]} features, "
                f"the data has {total.shape[0]}"
            )
        self.mean.assign((mean_shifted + shift).astype("float32"))
        self.std.assign(std.astype("float32"))

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config


def standardized_modalities(standardize, allowed, owner=""):
    """A model's `standardize` setting as a list (a string names one modality), each checked to be in
    `allowed`; `owner` prefixes the error ("MIRD: ...")."""
    if isinstance(standardize, str):
        standardize = [standardize]
    standardize = list(standardize or ())
    bad = [m for m in standardize if m not in allowed]
    if bad:
        prefix = f"{owner}: " if owner else ""
        raise ValueError(f"{prefix}standardize takes modalities among {tuple(allowed)}; got {bad}")
    return standardize


def adapt_standardizers(standardizers, dataset):
    """Fits each layer of `{modality: FeatureStandardizer}` on batches `(inputs, label)` or inputs dicts of
    `dataset`: one streaming pass per modality, nothing but running sums kept in memory."""
    for m, layer in standardizers.items():
        layer.adapt(modality_frames(dataset, m))


def modality_frames(dataset, m):
    """Yields (frames, lengths) of modality m from batches of (inputs, label) or of inputs dicts."""
    for batch in dataset:
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        if m not in inputs or f"{m}_lengths" not in inputs:
            raise ValueError(
                f"adapt: the batches carry no {m!r}/{m}_lengths keys (keys: {sorted(inputs)})"
            )
        yield inputs[m], inputs[f"{m}_lengths"]
