"""LSTM encoder over zero-padded sequences with their true lengths, with a packed recurrence for speed."""

import math

import keras
from keras import ops

# Row budgets of the packed recurrence, as fractions of the batch (see `packed_lstm`). The last must be 1.
PACKING_FRACTIONS = (3 / 8, 1 / 2, 1)


@keras.saving.register_keras_serializable(package="keras_mmsa")
class SequenceEncoder(keras.layers.Layer):
    """Encodes a zero-padded `[B, T, D]` sequence into one vector: LSTM final state -> dropout -> Dense.

    The LSTM sees exactly the first `lengths[b]` frames of example `b`, so the final state equals the one a
    packed-sequence LSTM computes on the unpadded sequence; the backward direction of a bidirectional encoder
    starts at frame `lengths[b] - 1`. This is the "sLSTM" of MMIM eq. 2 and the visual/acoustic sub-network of
    Self-MM / MMIM's reference code.

    How it is computed (the results are those of `keras.layers.LSTM` with a padding mask, to float rounding;
    `reference_call` runs that path on the same weights). Masked Keras LSTMs step every example through all `T`
    frames, padding included, and the cost of a step grows with the number of rows it carries. Here the
    sequences are packed end to end into a few rows of `T` frames (first-fit decreasing, `packed_lstm`) with the
    state reset where a sequence starts, so the recurrence steps ~`3B/8` rows instead of `B` on MOSI-like
    lengths (median length a quarter of `T`); the input projection is one matmul over all frames outside the
    loop, and the backward pass is an explicit reverse recurrence whose weight gradient is one matmul after
    the loop. Shapes stay static (a `switch` over a few row budgets), so it compiles with XLA.
    `benchmarks/training_throughput.py` measures it against the Keras LSTM.

    Args:
        hidden_dim: LSTM units (per direction).
        output_dim: size of the output vector.
        num_layers: stacked LSTM layers; `dropout` is applied between them and on the final state.
        bidirectional: concatenate the forward and backward final states.
        dropout: dropout rate on the final state (and between layers).
        kernel_initializer: initializer of the LSTM kernels and of the output projection.
        recurrent_initializer: initializer of the LSTM recurrent kernels.
        **kwargs: base layer arguments.

    Example:
    >>> enc = SequenceEncoder(hidden_dim=8, output_dim=4)
    >>> x = keras.random.normal((2, 10, 5))
    >>> enc(x, keras.ops.array([3, 10])).shape
    (2, 4)

    Reference:
        Han et al. 2021 (MMIM), eq. 2; Hochreiter & Schmidhuber 1997.
    """

    def __init__(
        self,
        hidden_dim,
        output_dim,
        num_layers=1,
        bidirectional=False,
        dropout=0.0,
        kernel_initializer="glorot_normal",
        recurrent_initializer="glorot_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        # The Keras LSTM layers hold the weights (same variables and paths as a plain Keras LSTM encoder, so
        # checkpoints carry over) and run `reference_call`; `call` uses their cells' weights directly.
        self.rnns = []
        for i in range(num_layers):
            last = i == num_layers - 1
            rnn = keras.layers.LSTM(
                hidden_dim,
                return_sequences=not last,
                kernel_initializer=self.kernel_initializer,
                recurrent_initializer=self.recurrent_initializer,
                dtype=self.dtype_policy,
                name=f"lstm_{i}",
            )
            if bidirectional:
                rnn = keras.layers.Bidirectional(rnn, dtype=self.dtype_policy, name=f"bilstm_{i}")
            self.rnns.append(rnn)
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.projection = keras.layers.Dense(
            output_dim,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="projection",
        )

    def build(self, sequence_shape, lengths_shape=None):
        shape = tuple(sequence_shape)
        for rnn in self.rnns:
            rnn.build(shape)
            width = self.hidden_dim * (2 if self.bidirectional else 1)
            shape = shape[:2] + (width,)
        self.projection.build((sequence_shape[0], shape[-1]))
        self.built = True

    def _cells(self, i):
        rnn = self.rnns[i]
        if self.bidirectional:
            return [rnn.forward_layer.cell, rnn.backward_layer.cell]
        return [rnn.cell]

    def call(self, sequence, lengths, training=None):
        sequence = ops.convert_to_tensor(sequence, dtype=self.compute_dtype)
        steps = ops.shape(sequence)[1]
        lengths = ops.clip(ops.cast(lengths, "int32"), 1, steps)
        h = sequence
        reverse = _reverse_index(lengths, steps) if self.bidirectional else None
        for i in range(self.num_layers):
            last = i == self.num_layers - 1
            outputs = []
            for direction, cell in enumerate(self._cells(i)):
                x = h if direction == 0 else ops.take_along_axis(h, reverse[..., None], axis=1)
                final, seq = packed_lstm(x, lengths, cell.kernel, cell.bias, cell.recurrent_kernel)
                if last:
                    outputs.append(final)
                else:
                    if direction == 1:
                        seq = ops.take_along_axis(seq, reverse[..., None], axis=1)
                    outputs.append(seq)
            h = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=-1)
            if not last:
                h = self.dropout_layer(h, training=training)
        h = self.dropout_layer(h, training=training)
        return self.projection(h)

    def reference_call(self, sequence, lengths, training=None):
        """The same encoder computed by the Keras LSTM layers with a padding mask (the unpacked recurrence).

        Same weights and results as `call` (to float rounding); kept as the reference the tests compare with
        and as the "before" of `benchmarks/training_throughput.py`.
        """
        steps = ops.shape(sequence)[1]
        lengths = ops.clip(ops.cast(lengths, "int32"), 1, steps)
        mask = ops.arange(steps)[None, :] < lengths[:, None]
        h = sequence
        for i, rnn in enumerate(self.rnns):
            h = rnn(h, mask=mask, training=training)
            if i < self.num_layers - 1:
                h = self.dropout_layer(h, training=training)
        h = self.dropout_layer(h, training=training)
        return self.projection(h)

    def compute_output_shape(self, sequence_shape, lengths_shape=None):
        return (sequence_shape[0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "output_dim": self.output_dim,
                "num_layers": self.num_layers,
                "bidirectional": self.bidirectional,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            }
        )
        return config


def _reverse_index(lengths, steps):
    """`[B, T]` frame indices that reverse each sequence within its length (padding stays in place)."""
    t = ops.arange(steps)[None, :]
    n = lengths[:, None]
    return ops.where(t < n, n - 1 - t, t)


def first_fit_decreasing(lengths, capacity):
    """Packs sequences into rows of `capacity` frames, longest first, each into the first row it fits.

    Args:
        lengths: int32 `[B]`, each in `[1, capacity]`.
        capacity: frames per row.

    Returns:
        `(row, offset, rows_used)`: int32 `[B]` row of each sequence, int32 `[B]` frame where it starts in its
        row, int32 scalar number of rows used. Any prefix of at least `rows_used` rows holds the packing.
    """
    lengths = ops.cast(lengths, "int32")
    batch = ops.shape(lengths)[0]
    slots = ops.arange(batch, dtype="int32")
    # Longest first (ties by index), ranked by pairwise comparison rather than a sort: on XLA CPU, a sort
    # anywhere in a compiled step made Keras' default dropout ~17x slower (measured with the tiny BERT).
    before = (lengths[None, :] > lengths[:, None]) | (
        (lengths[None, :] == lengths[:, None]) & (slots[None, :] < slots[:, None])
    )
    rank = ops.sum(ops.cast(before, "int32"), axis=1)
    order = ops.sum(
        ops.cast(ops.equal(rank[None, :], slots[:, None]), "int32") * slots[None, :], axis=1
    )

    def body(i, state):
        loads, row, offset = state
        b = order[i]
        n = ops.take(lengths, b)
        fits = loads + n <= capacity
        r = ops.cast(ops.min(ops.where(fits, slots, batch)), "int32")  # first row with room
        start = ops.take(loads, r)
        loads = loads + ops.cast(ops.equal(slots, r), "int32") * n
        pick = ops.cast(ops.equal(slots, b), "int32")
        return loads, row + pick * r, offset + pick * start

    zeros = ops.zeros((batch,), "int32")
    loads, row, offset = ops.fori_loop(0, batch, body, (zeros, zeros, zeros))
    return row, offset, ops.cast(ops.sum(ops.cast(loads > 0, "int32")), "int32")


def packed_lstm(x, lengths, kernel, bias, recurrent_kernel):
    """LSTM over right-padded sequences, packed into few rows; returns `(h_final, h_sequence)`.

    Args:
        x: `[B, T, D]` inputs (whatever sits on padding frames is ignored).
        lengths: int32 `[B]` in `[1, T]`.
        kernel, bias, recurrent_kernel: `[D, 4H]`, `[4H]`, `[H, 4H]`, gates ordered i, f, c, o (Keras' LSTM).

    Returns:
        `h_final` `[B, H]`: the state after frame `lengths[b] - 1`; `h_sequence` `[B, T, H]`: the output at every
        valid frame, zeros on padding.

    The sequences are packed by `first_fit_decreasing` into the smallest of `ceil(f * B)` rows (`f` in
    `PACKING_FRACTIONS`; the last budget, B rows, always suffices) that holds them, the state is reset where a
    sequence starts, and the recurrence runs `T` steps over those rows; the input projection is one matmul over
    the packed frames. Gradients (to x and the three weights) come from an explicit reverse recurrence over
    the same rows; the weight gradients are matmuls over all packed frames at once.
    """
    x = ops.convert_to_tensor(x)
    lengths = ops.cast(lengths, "int32")
    batch = ops.shape(x)[0]
    steps = ops.shape(x)[1]
    dtype = x.dtype
    row, offset, rows_used = first_fit_decreasing(lengths, steps)
    budgets = [_budget(batch, f) for f in PACKING_FRACTIONS]
    branch = ops.cast(
        ops.sum(ops.stack([ops.cast(rows_used > b, "int32") for b in budgets[:-1]])), "int32"
    )
    t = ops.arange(steps, dtype="int32")[None, :]
    valid = t < lengths[:, None]  # [B, T]

    def layout(rows):
        """Index maps between `[B, T]` frames and the time-major `[T, rows]` grid (flattened); 0 = none."""
        cell = (offset[:, None] + t) * rows + row[:, None]  # grid cell of each valid frame
        frame_to_cell = ops.where(valid, cell + 1, 0)
        source = ops.arange(1, batch * steps + 1, dtype="int32")
        # padding frames go to a spill slot past the grid
        target = ops.reshape(ops.where(valid, cell, steps * rows), (-1, 1))
        cell_to_frame = ops.scatter(
            target, ops.where(ops.reshape(valid, (-1,)), source, 0), (steps * rows + 1,)
        )[:-1]
        starts = ops.scatter(
            ops.reshape(offset * rows + row, (-1, 1)), ops.ones((batch,), dtype), (steps * rows,)
        )
        keep = ops.reshape(1.0 - starts, (steps, rows, 1))
        return frame_to_cell, cell_to_frame, keep

    def to_grid(v, cell_to_frame, rows):
        """`[B, T, C]` frames -> `[T, rows, C]` grid (empty cells are zero)."""
        flat = ops.reshape(v, (batch * steps, v.shape[-1]))
        flat = ops.concatenate([ops.zeros((1, v.shape[-1]), v.dtype), flat], axis=0)
        return ops.reshape(ops.take(flat, cell_to_frame, axis=0), (steps, rows, v.shape[-1]))

    def to_frames(g, frame_to_cell):
        """`[T, rows, C]` grid -> `[B, T, C]` frames (padding frames are zero)."""
        flat = ops.reshape(g, (-1, g.shape[-1]))
        flat = ops.concatenate([ops.zeros((1, g.shape[-1]), g.dtype), flat], axis=0)
        return ops.take(flat, frame_to_cell, axis=0)

    def pad_rows(g):
        """Grid tensors leave the `switch` padded to B rows, so every branch returns the same shapes."""
        return ops.pad(g, [(0, 0), (0, batch - ops.shape(g)[1]), (0, 0)])

    @ops.custom_gradient
    def run(x, kernel, bias, recurrent_kernel):
        # The loops are not differentiated (the gradient is `grad` below); stopping the gradient keeps
        # TensorFlow from building loop accumulators, which XLA could not size.
        x_in, w, b, u = (ops.stop_gradient(v) for v in (x, kernel, bias, recurrent_kernel))

        def forward(rows):
            def fn():
                frame_to_cell, cell_to_frame, keep = layout(rows)
                x_grid = to_grid(x_in, cell_to_frame, rows)
                hs, cs, acts = _forward_recurrence(ops.matmul(x_grid, w) + b, keep, u)
                saved = tuple(pad_rows(v) for v in (x_grid, hs, cs, acts))
                return (to_frames(hs, frame_to_cell),) + saved

            return fn

        h_seq, *saved = _switch(branch, [forward(r) for r in budgets])
        h_final = ops.take_along_axis(h_seq, (lengths - 1)[:, None, None], axis=1)[:, 0, :]

        def grad(*args, upstream=None):
            if upstream is None:
                upstream = args if len(args) > 1 else args[0]
            d_final, d_seq = upstream
            d_seq = ops.zeros_like(h_seq) if d_seq is None else d_seq
            last = ops.cast(ops.equal(t, (lengths - 1)[:, None]), dtype)[..., None]
            d_h = ops.where(valid[..., None], d_seq, 0.0) + last * d_final[:, None, :]

            def backward(rows):
                def fn():
                    frame_to_cell, cell_to_frame, keep = layout(rows)
                    x_grid, hs, cs, acts = (v[:, :rows] for v in saved)
                    h_prev, c_prev = _previous(hs, keep), _previous(cs, keep)
                    d_gates = _backward_recurrence(
                        to_grid(d_h, cell_to_frame, rows), acts, cs, c_prev, keep, u
                    )
                    d_x = to_frames(ops.matmul(d_gates, ops.transpose(w)), frame_to_cell)
                    d_w = ops.einsum("trd,trg->dg", x_grid, d_gates)
                    d_u = ops.einsum("trh,trg->hg", h_prev, d_gates)
                    d_b = ops.sum(d_gates, axis=(0, 1))
                    return d_x, d_w, d_b, d_u

                return fn

            return _switch(branch, [backward(r) for r in budgets])

        return (h_final, h_seq), grad

    # tensors, not the variables: the gradients reach the variables through these reads
    return run(x, ops.copy(kernel), ops.copy(bias), ops.copy(recurrent_kernel))


def _switch(index, branches):
    return branches[0]() if len(branches) == 1 else ops.switch(index, branches)


def _budget(batch, fraction):
    if fraction >= 1:
        return batch
    if keras.backend.backend() == "jax":
        # JAX shapes are static Python ints, and a row count must be one (it sizes arrays inside the branch)
        return int(math.ceil(batch * fraction))
    return ops.cast(ops.ceil(ops.cast(batch, "float32") * fraction), "int32")


def _previous(seq, keep):
    """The state entering each step: the previous step's, or zero where a sequence starts."""
    shifted = ops.concatenate([ops.zeros_like(seq[:1]), seq[:-1]], axis=0)
    return shifted * keep


def _split(gates, hidden):
    return (
        gates[..., :hidden],
        gates[..., hidden : 2 * hidden],
        gates[..., 2 * hidden : 3 * hidden],
        gates[..., 3 * hidden :],
    )


def _forward_recurrence(z, keep, kernel):
    """Time-major LSTM steps with resets: z `[T, R, 4H]`, keep `[T, R, 1]` (0 where a sequence starts).

    Returns the states h, c `[T, R, H]` and the activated gates `[T, R, 4H]` (for the backward pass).
    """
    hidden = kernel.shape[0]
    rows = ops.shape(z)[1]
    zeros = ops.zeros((rows, hidden), z.dtype)

    def step(carry, inputs):
        h, c = carry[0], carry[1]
        z_t, keep_t = inputs
        h = h * keep_t
        c = c * keep_t
        i, f, g, o = _split(z_t + ops.matmul(h, kernel), hidden)
        i, f, g, o = ops.sigmoid(i), ops.sigmoid(f), ops.tanh(g), ops.sigmoid(o)
        c = f * c + i * g
        h = o * ops.tanh(c)
        # ops.scan's per-step outputs mirror its carry, so the gates ride along in the carry
        out = (h, c, ops.concatenate([i, f, g, o], axis=-1))
        return out, out

    init = (zeros, zeros, ops.zeros((rows, 4 * hidden), z.dtype))
    _, (hs, cs, acts) = ops.scan(step, init, (z, keep))
    return hs, cs, acts


def _backward_recurrence(d_h, acts, cs, c_prev, keep, kernel):
    """Gradients of the gate pre-activations `[T, R, 4H]` given the upstream gradients `d_h` of every state.

    Everything that does not depend on the carried gradients (gate derivatives, tanh of the cell) is computed
    for all steps at once before the loop; a step carries (dh, dc) and does one matmul.
    """
    hidden = kernel.shape[0]
    rows = ops.shape(d_h)[1]
    i, f, g, o = _split(acts, hidden)
    tanh_c = ops.tanh(cs)
    dc_from_dh = o * (1.0 - tanh_c * tanh_c)
    # d gates = [dc * p_i, dc * p_f, dc * p_g, dh * p_o]
    p_ifg = ops.concatenate([g * i * (1.0 - i), c_prev * f * (1.0 - f), i * (1.0 - g * g)], axis=-1)
    p_o = tanh_c * o * (1.0 - o)
    f_keep = f * keep  # the cell gradient into the previous step, cut where a sequence starts

    def following(v):  # step t reads the quantities of step t + 1
        return ops.concatenate([v[1:], ops.zeros_like(v[:1])], axis=0)

    kernel_t = ops.transpose(kernel)
    zeros = ops.zeros((rows, hidden), d_h.dtype)

    def step(carry, inputs):
        dh_next, dc_next = carry
        d_out, dc_dh, p_ifg_next, p_o_next, keep_next, f_keep_next = inputs
        d_gates_next = ops.concatenate(
            [ops.tile(dc_next, (1, 3)) * p_ifg_next, dh_next * p_o_next], axis=-1
        )
        dh = d_out + ops.matmul(d_gates_next, kernel_t) * keep_next
        dc = dc_next * f_keep_next + dh * dc_dh
        return (dh, dc), (dh, dc)

    inputs = (d_h, dc_from_dh, following(p_ifg), following(p_o), following(keep), following(f_keep))
    _, (dh, dc) = ops.scan(step, (zeros, zeros), inputs, reverse=True)
    return ops.concatenate([ops.tile(dc, (1, 1, 3)) * p_ifg, dh * p_o], axis=-1)
