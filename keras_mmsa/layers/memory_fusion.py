"""`MemoryFusion`: the Memory Fusion Network's recurrence (LSTM system, delta-memory attention, gated memory)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmsa")
class MemoryFusion(keras.layers.Layer):
    """The recurrence of the Memory Fusion Network over M aligned sequences, stepped in lockstep.

    Called on a list of M sequences `[B, T, D_m]` (one per view) and a bool mask `[B, T]` (True on the steps to
    run, a prefix of each row); returns `(hiddens, memory)`: the list of the M LSTMs' final hidden states
    `[B, H_m]` and the final multi-view memory `u` `[B, memory_dim]`. At step t:

    - System of LSTMs: LSTM m steps on `x_m[t]` alone, giving `(h_m, c_m)` (Keras' gate order i, f, c, o).
    - Delta-memory attention: `c = [c^{t-1}_1 .. c^{t-1}_M; c^t_1 .. c^t_M]` (the cell memories of the previous
      and current step: the paper's window of 2), `a = softmax(D_a(c))`, `ĉ = a ⊙ c`.
    - Multi-view gated memory: proposed update `û = tanh(D_u(ĉ))`, retain gate `γ1 = σ(D_γ1([ĉ; u]))`, update
      gate `γ2 = σ(D_γ2([ĉ; u]))`, `u ← γ1 ⊙ u + γ2 ⊙ û`.

    Each `D` is `Dense(units, relu) -> dropout -> Dense` (a fresh dropout mask at every step). On a masked step
    every state (h, c, u) keeps its value, so the outputs are those after each row's last valid step and
    whatever sits on the padding steps is ignored. All states start at zero.

    The recurrence is a `keras.ops` loop that XLA compiles with its gradient (TensorFlow: a `while_loop` with
    `maximum_iterations = T`, stopping after the longest row; other backends: `fori_loop` over all T steps);
    the LSTMs' input projections and the dropout masks are computed for all steps before the loop.

    Args:
        hidden_dims: LSTM units per view (list of M ints).
        memory_dim: size of the memory `u`.
        attention_units, attention_dropout: hidden width and dropout of `D_a` (MMSA: NN1Config).
        proposal_units, proposal_dropout: of `D_u`, the proposed update (MMSA: NN2Config).
        retain_units, retain_dropout: of `D_γ1`, the retain gate (MMSA: gamma1Config).
        update_units, update_dropout: of `D_γ2`, the update gate (MMSA: gamma2Config).
        **kwargs: base layer arguments.

    Example:
    >>> fusion = MemoryFusion([8, 4], memory_dim=6)
    >>> views = [keras.random.normal((2, 10, 5)), keras.random.normal((2, 10, 3))]
    >>> mask = keras.ops.arange(10)[None, :] < keras.ops.array([[3], [10]])
    >>> hiddens, memory = fusion(views, mask)
    >>> [tuple(h.shape) for h in hiddens], tuple(memory.shape)
    ([(2, 8), (2, 4)], (2, 6))

    Reference:
        Zadeh, Liang, Mazumder, Poria, Cambria, Morency. "Memory Fusion Network for Multi-view Sequential
        Learning". AAAI 2018, §3 (System of LSTMs, Delta-memory Attention Network, Multi-view Gated Memory).
    """

    def __init__(
        self,
        hidden_dims,
        memory_dim,
        attention_units=32,
        attention_dropout=0.0,
        proposal_units=64,
        proposal_dropout=0.0,
        retain_units=64,
        retain_dropout=0.0,
        update_units=64,
        update_dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dims = [int(h) for h in hidden_dims]
        self.memory_dim = memory_dim
        self.attention_units = attention_units
        self.attention_dropout = attention_dropout
        self.proposal_units = proposal_units
        self.proposal_dropout = proposal_dropout
        self.retain_units = retain_units
        self.retain_dropout = retain_dropout
        self.update_units = update_units
        self.update_dropout = update_dropout
        self.cells = [
            keras.layers.LSTMCell(h, dtype=self.dtype_policy, name=f"lstm_{i}")
            for i, h in enumerate(self.hidden_dims)
        ]
        window = 2 * sum(self.hidden_dims)
        # the networks D_a, D_u, D_γ1, D_γ2: their first layers, dropouts and second layers by name
        self.hidden_layers, self.dropouts, self.output_layers = {}, {}, {}
        for name, units, rate, out in (
            ("attention", attention_units, attention_dropout, window),
            ("proposal", proposal_units, proposal_dropout, memory_dim),
            ("retain", retain_units, retain_dropout, memory_dim),
            ("update", update_units, update_dropout, memory_dim),
        ):
            self.hidden_layers[name] = keras.layers.Dense(
                units, activation="relu", dtype=self.dtype_policy, name=f"{name}_1"
            )
            self.dropouts[name] = keras.layers.Dropout(rate, dtype=self.dtype_policy)
            self.output_layers[name] = keras.layers.Dense(
                out, dtype=self.dtype_policy, name=f"{name}_2"
            )

    def build(self, sequences_shape, mask_shape=None):
        if len(sequences_shape) != len(self.hidden_dims):
            raise ValueError(
                f"MemoryFusion has {len(self.hidden_dims)} LSTMs; got {len(sequences_shape)} sequences"
            )
        for cell, shape in zip(self.cells, sequences_shape):
            cell.build((None, shape[-1]))
        window = 2 * sum(self.hidden_dims)
        inputs = {"attention": window, "proposal": window}
        inputs["retain"] = inputs["update"] = window + self.memory_dim
        for name, first in self.hidden_layers.items():
            first.build((None, inputs[name]))
            self.output_layers[name].build((None, first.units))
        self.built = True

    def _network(self, name, inputs, dropout_masks):
        hidden = self.hidden_layers[name](inputs)
        if name in dropout_masks:
            hidden = hidden * dropout_masks[name]
        return self.output_layers[name](hidden)

    def call(self, sequences, mask, training=None):
        sequences = [ops.convert_to_tensor(s, dtype=self.compute_dtype) for s in sequences]
        batch, steps = ops.shape(sequences[0])[0], ops.shape(sequences[0])[1]
        dtype = sequences[0].dtype
        # time-major: the LSTMs' input projections, the step mask and the dropout masks of every step
        gates = [
            ops.transpose(ops.matmul(s, cell.kernel) + cell.bias, (1, 0, 2))
            for s, cell in zip(sequences, self.cells)
        ]
        valid = ops.transpose(ops.cast(mask, "bool"), (1, 0))[..., None]
        drop = {}  # scaled dropout masks (0 or 1 / (1 - rate)), drawn only where they drop something
        for name, dropout in self.dropouts.items():
            if dropout.rate > 0:
                units = self.hidden_layers[name].units
                drop[name] = dropout(ops.ones((steps, batch, units), dtype), training=training)
        recurrent = [ops.convert_to_tensor(cell.recurrent_kernel) for cell in self.cells]

        def step(t, state):
            hs, cs, memory = state
            new_h, new_c = [], []
            for z, kernel, h, c in zip(gates, recurrent, hs, cs):
                i, f, g, o = ops.split(ops.take(z, t, axis=0) + ops.matmul(h, kernel), 4, axis=-1)
                c_t = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
                new_c.append(c_t)
                new_h.append(ops.sigmoid(o) * ops.tanh(c_t))
            masks = {k: ops.take(v, t, axis=0) for k, v in drop.items()}
            window = ops.concatenate(list(cs) + new_c, axis=-1)
            attended = ops.softmax(self._network("attention", window, masks)) * window
            proposal = ops.tanh(self._network("proposal", attended, masks))
            both = ops.concatenate([attended, memory], axis=-1)
            retain = ops.sigmoid(self._network("retain", both, masks))
            update = ops.sigmoid(self._network("update", both, masks))
            new_memory = retain * memory + update * proposal
            keep = ops.take(valid, t, axis=0)  # [B, 1]: True on a valid step, False on padding

            def blend(new, old):
                return ops.where(keep, new, old)

            return (
                tuple(blend(n, o) for n, o in zip(new_h, hs)),
                tuple(blend(n, o) for n, o in zip(new_c, cs)),
                blend(new_memory, memory),
            )

        zeros = [ops.zeros((batch, h), dtype) for h in self.hidden_dims]
        init = (tuple(zeros), tuple(zeros), ops.zeros((batch, self.memory_dim), dtype))
        if keras.backend.backend() == "tensorflow":
            # `maximum_iterations` lets XLA size the loop's gradient accumulators (ops.scan and ops.fori_loop
            # give none, and their gradients do not compile); the loop stops after the longest row.
            last = ops.max(ops.sum(ops.cast(mask, "int32"), axis=1))
            _, (hs, _, memory) = ops.while_loop(
                lambda t, state: t < last,
                lambda t, state: (t + 1, step(t, state)),
                (ops.convert_to_tensor(0, "int32"), init),
                maximum_iterations=steps,
            )
        else:  # JAX: static bounds make fori_loop a (differentiable) scan
            hs, _, memory = ops.fori_loop(0, steps, step, init)
        return list(hs), memory

    def compute_output_shape(self, sequences_shape, mask_shape=None):
        batch = sequences_shape[0][0]
        return [(batch, h) for h in self.hidden_dims], (batch, self.memory_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dims": list(self.hidden_dims),
                "memory_dim": self.memory_dim,
                "attention_units": self.attention_units,
                "attention_dropout": self.attention_dropout,
                "proposal_units": self.proposal_units,
                "proposal_dropout": self.proposal_dropout,
                "retain_units": self.retain_units,
                "retain_dropout": self.retain_dropout,
                "update_units": self.update_units,
                "update_dropout": self.update_dropout,
            }
        )
        return config
