import keras
from keras import ops

from keras_mmsa.estimators.gaussian import LOG_2PI, cholesky_log_det

FORMS = ("full", "paper")


@keras.saving.register_keras_serializable(package="keras_mmsa")
class PolarityGMMEntropy(keras.layers.Layer):
    """Entropy H(Y) of representations as a two-class (sentiment polarity) Gaussian mixture, with a history memory.

    MMIM's entropy term of the Barber–Agakov bound (eq. 5–8, App. A.1). Samples are split by the polarity of
    their sentiment label — "pos" (label ≥ 0, non-negative) and "neg" (label < 0). For each class c, on the
    union of the history memory and the current batch:

        μ_c = (1/N_c) Σ_i h_i,   Σ_c = (1/N_c) Σ_i (h_i − μ_c)(h_i − μ_c)ᵀ   (eq. 5; biased, as the paper)
        h_c = ½ log det(2πe Σ_c)                                           (eq. 6)
        H(Y) ≈ Σ_c w_c h_c,  w_c = ½                                       (eq. 7, lower bound of the GMM entropy)

    `form="full"` (default) returns that value, with all constants, in nats; `form="paper"` returns eq. 8,
    ¼ [log det Σ_pos + log det Σ_neg] (eq. 7 without the ½ k log 2πe constant, which has no gradient).

    Numerics (DESIGN §2 "Known defects": the official plain `logdet` of an unjittered covariance NaNs):
    * the covariance is built from centred samples, and its log-det is a Cholesky log-det of
      Σ_c + λ·(tr Σ_c / k + 1e-6)·I with λ = `jitter` — a jitter relative to the average variance, so the
      estimate is scale-equivariant (scaling h by a multiplies H by k log a) and a class with N_c < k
      samples (a singular Σ_c) stays finite.
    * a class with fewer than `min_class_size` (≥ 2) valid samples has no usable covariance: its term is
      dropped and the remaining class gets all the weight (w = 1). With no usable class at all the entropy
      is 0 with zero gradient, i.e. the BA term reduces to its likelihood part for that step. Nothing NaNs.

    Memory (App. A.1): a FIFO queue of the last `mem_size` batches, each padded to `batch_size` rows with a
    validity mask, stored with each row's polarity in non-trainable variables (so it is checkpointed and
    works under `tf.function`/XLA). `call` reads it (no gradient flows into the memory; gradients reach the
    current batch only); `update_memory` pushes the current batch (detached) and drops the oldest one. The
    engine calls `update_memory` after `call` (Algorithm 1, stage 2), after an all-gather under a
    distribution strategy. `mem_size=0` uses the current batch only (the paper's failing ablation, made safe).

    Precision: the layer computes in float32 under any dtype policy. Under "mixed_float16" /
    "mixed_bfloat16" its inputs are not autocast, half-precision inputs are cast to float32 inside, the
    memory variables are float32, and the entropy is returned in float32.

    Call arguments: `call(y, labels, sample_mask=None)` with y [B, dim], labels [B] (or [B, 1]) and an
    optional validity mask [B] (padding rows); a NaN label makes its row invalid. `update_memory` takes the
    same arguments. Inside a `keras.Model`, build it (or call it once) before the first `fit` step.

    Where H's parameters are trained: this layer has none. Any projection applied to h before it (the
    official code's never-trained Tanh(Linear) projection, DESIGN §2) belongs to the model, which must put
    it in the optimiser group that actually receives the entropy's gradient (stage 2).

    Args:
        dim: int, dimension k of the representations.
        mem_size: int ≥ 0, number of past batches kept (MMIM Table 3: 1).
        batch_size: int, rows per memory slot (the training batch size, or the global batch size after an
            all-gather); a larger pushed batch is an error, a smaller one is padded.
        jitter: float ≥ 0, relative diagonal jitter λ.
        form: "full" (eq. 7 with constants, nats) or "paper" (eq. 8, constant-free).
        min_class_size: int ≥ 2, fewest valid samples for a class to contribute.
        **kwargs: `keras.layers.Layer` arguments.

    Example:
    >>> gmm = PolarityGMMEntropy(dim=8, mem_size=1, batch_size=32)
    >>> h, labels = keras.random.normal((32, 8)), keras.random.uniform((32,), -3.0, 3.0)
    >>> entropy = gmm(h, labels)          # H(Y) on memory ∪ batch
    >>> gmm.update_memory(h, labels)      # then push the batch (FIFO)

    Reference: MMIM (Han et al., 2021) eq. 5–8, Algorithm 1, App. A.1; Huber et al. (2008) for eq. 7.
    """

    def __init__(
        self,
        dim,
        *,
        mem_size=1,
        batch_size=32,
        jitter=1e-3,
        form="full",
        min_class_size=2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Covariances and Cholesky log-determinants need float32 (TensorFlow has no bfloat16 Cholesky, and
        # float16 loses the log-det): under a mixed-precision policy inputs are not cast to the compute
        # dtype on the way in (they are cast to float32 in `_inputs`), and the memory variables are float32
        # and not autocast when read (Keras enters an autocast scope for a mixed layer even without autocast).
        self.autocast = False
        if form not in FORMS:
            raise ValueError(f"`form` must be one of {FORMS}; got {form!r}.")
        if mem_size < 0 or batch_size < 1 or dim < 1:
            raise ValueError(
                f"Need dim >= 1, mem_size >= 0, batch_size >= 1; got {dim}, {mem_size}, {batch_size}."
            )
        if min_class_size < 2:
            raise ValueError(
                f"`min_class_size` must be >= 2 (a covariance needs 2 samples); got {min_class_size}."
            )
        self.dim = int(dim)
        self.mem_size = int(mem_size)
        self.batch_size = int(batch_size)
        self.jitter = float(jitter)
        self.form = form
        self.min_class_size = int(min_class_size)
        self.supports_masking = False
        if self.mem_size > 0:
            slots = (self.mem_size, self.batch_size)
            self.memory = self.add_weight(
                shape=slots + (self.dim,),
                initializer="zeros",
                dtype="float32",
                autocast=False,
                trainable=False,
                aggregation="only_first_replica",
                name="memory",
            )
            self.memory_positive = self.add_weight(
                shape=slots,
                initializer="zeros",
                dtype="float32",
                autocast=False,
                trainable=False,
                aggregation="only_first_replica",
                name="memory_positive",
            )
            self.memory_valid = self.add_weight(
                shape=slots,
                initializer="zeros",
                dtype="float32",
                autocast=False,
                trainable=False,
                aggregation="only_first_replica",
                name="memory_valid",
            )
        self.built = True

    # ----------------------------------------------------------------------------------------- helpers

    def _inputs(self, y, labels, sample_mask):
        shape = ops.shape(y)
        if len(shape) != 2 or shape[-1] != self.dim:
            raise ValueError(
                f"{self.name}: expected representations of shape [B, {self.dim}]; got {shape}."
            )
        if len(ops.shape(labels)) not in (1, 2) or (
            len(ops.shape(labels)) == 2 and ops.shape(labels)[-1] != 1
        ):
            raise ValueError(
                f"{self.name}: expected labels of shape [B] or [B, 1]; got {ops.shape(labels)}."
            )
        static_batch = y.shape[0]  # None inside a traced function with a dynamic batch
        if isinstance(static_batch, int) and static_batch > self.batch_size:
            raise ValueError(
                f"{self.name}: a batch of {shape[0]} rows does not fit memory slots of batch_size="
                f"{self.batch_size}; construct the layer with the (global) batch size."
            )
        y = ops.convert_to_tensor(y)
        # float32 at least, whatever the policy (float64 inputs keep float64).
        dtype = "float64" if keras.backend.standardize_dtype(y.dtype) == "float64" else "float32"
        y = ops.cast(y, dtype)
        labels = ops.reshape(ops.cast(labels, dtype), (-1,))
        positive = ops.cast(labels >= 0.0, dtype)
        valid = (
            ops.ones_like(positive)
            if sample_mask is None
            else ops.cast(ops.reshape(sample_mask, (-1,)), dtype)
        )
        # A NaN label has no polarity: treat the row as invalid rather than guessing a class.
        valid = valid * ops.cast(ops.logical_not(ops.isnan(labels)), dtype)
        return y, positive, valid

    def _class_entropy(self, y, weights):
        """(entropy term ½ log det Σ_c [+ constants], N_c) for one class given per-row weights in {0, 1}."""
        n = ops.sum(weights)
        safe_n = ops.maximum(n, 1.0)
        w = ops.expand_dims(weights, -1)
        mean = ops.sum(w * y, axis=0) / safe_n
        centred = (y - mean) * w
        cov = ops.matmul(ops.transpose(centred), centred) / safe_n
        k = float(self.dim)
        scale = ops.trace(cov) / k + 1e-6
        eye = ops.eye(self.dim, dtype=y.dtype)
        usable = n >= float(self.min_class_size)
        # An unusable class gets an identity matrix so the factorisation (and its gradient) stays finite;
        # its term is then dropped by the weights below.
        cov = ops.where(usable, cov + self.jitter * scale * eye, eye)
        log_det = cholesky_log_det(matrix=cov)
        if self.form == "paper":
            term = 0.5 * log_det
        else:
            term = 0.5 * (k * (LOG_2PI + 1.0) + log_det)
        return term, usable

    def _all_samples(self, y, positive, valid):
        if self.mem_size == 0:
            return y, positive, valid
        mem_y = ops.stop_gradient(ops.reshape(ops.cast(self.memory, y.dtype), (-1, self.dim)))
        mem_pos = ops.reshape(ops.cast(self.memory_positive, y.dtype), (-1,))
        mem_valid = ops.reshape(ops.cast(self.memory_valid, y.dtype), (-1,))
        return (
            ops.concatenate([mem_y, y], axis=0),
            ops.concatenate([mem_pos, positive], axis=0),
            ops.concatenate([mem_valid, valid], axis=0),
        )

    # ------------------------------------------------------------------------------------------- API

    def call(self, y, labels, sample_mask=None):
        y, positive, valid = self._inputs(y, labels, sample_mask)
        all_y, all_pos, all_valid = self._all_samples(y, positive, valid)
        h_pos, use_pos = self._class_entropy(all_y, all_valid * all_pos)
        h_neg, use_neg = self._class_entropy(all_y, all_valid * (1.0 - all_pos))
        u_pos = ops.cast(use_pos, y.dtype)
        u_neg = ops.cast(use_neg, y.dtype)
        count = u_pos + u_neg
        # Equal weights ½ when both classes are usable; the usable one gets weight 1 otherwise; 0 if none.
        total = ops.where(use_pos, h_pos, 0.0) * u_pos + ops.where(use_neg, h_neg, 0.0) * u_neg
        return ops.where(count > 0, total / ops.maximum(count, 1.0), 0.0)

    def class_counts(self, y, labels, sample_mask=None):
        """(N_pos, N_neg): the valid samples of each class on memory ∪ batch (for logging)."""
        y, positive, valid = self._inputs(y, labels, sample_mask)
        _, all_pos, all_valid = self._all_samples(y, positive, valid)
        return ops.sum(all_valid * all_pos), ops.sum(all_valid * (1.0 - all_pos))

    def update_memory(self, y, labels, sample_mask=None):
        """Push the (detached) batch into the FIFO memory and drop the oldest batch. No-op if mem_size=0."""
        y, positive, valid = self._inputs(y, labels, sample_mask)
        if self.mem_size == 0:
            return
        y = ops.stop_gradient(y)
        pad = self.batch_size - ops.shape(y)[0]
        y = ops.pad(y, [[0, pad], [0, 0]])
        positive = ops.pad(positive, [[0, pad]])
        valid = ops.pad(valid, [[0, pad]])
        mem_dtype = self.memory.dtype
        self.memory.assign(
            ops.concatenate(
                [
                    self.memory[1:],
                    ops.cast(ops.reshape(y, (1, self.batch_size, self.dim)), mem_dtype),
                ],
                0,
            )
        )
        self.memory_positive.assign(
            ops.concatenate(
                [
                    self.memory_positive[1:],
                    ops.cast(ops.reshape(positive, (1, self.batch_size)), mem_dtype),
                ],
                0,
            )
        )
        self.memory_valid.assign(
            ops.concatenate(
                [
                    self.memory_valid[1:],
                    ops.cast(ops.reshape(valid, (1, self.batch_size)), mem_dtype),
                ],
                0,
            )
        )

    def reset_memory(self):
        """Empty the memory (e.g. at the start of a new training run)."""
        if self.mem_size == 0:
            return
        for v in (self.memory, self.memory_positive, self.memory_valid):
            v.assign(ops.zeros_like(v))

    def compute_output_shape(self, y_shape, labels_shape=None, sample_mask_shape=None):
        return ()

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dim": self.dim,
                "mem_size": self.mem_size,
                "batch_size": self.batch_size,
                "jitter": self.jitter,
                "form": self.form,
                "min_class_size": self.min_class_size,
            }
        )
        return config
