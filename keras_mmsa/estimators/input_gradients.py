"""Gradients of a function with respect to its input, for penalties on a critic's input gradient.

Taking a gradient is the one thing `keras.ops` cannot express, so this small helper dispatches on the Keras
backend (TensorFlow: `tf.GradientTape`; JAX: `jax.value_and_grad`; PyTorch: `torch.autograd.grad`). Everything
else in the estimators is backend-neutral `keras.ops`.
"""

import keras


def input_gradients(fn, x):
    """`(fn(x), ∇_x Σ fn(x))`: a function's value and the gradient of its sum with respect to its input.

    For a function applied row by row (a critic T_θ that scores each sample on its own: no batch
    normalisation, no cross-sample attention), row i of the gradient is ∇T(x_i), the per-sample input
    gradient that a gradient penalty needs. The gradient is differentiable: under an outer
    `tf.GradientTape` (or `jax.grad`, or torch autograd) a penalty built from it has gradients with respect to
    the function's weights (double back-propagation), and it works inside `tf.function(jit_compile=True)`.

    Args:
        fn: callable tensor → tensor (e.g. a layer).
        x: tensor, the input.

    Returns:
        `(outputs, gradients)`, `gradients` with the shape of `x`.

    Example:
    >>> out, grads = input_gradients(lambda v: ops.sum(v**2, axis=-1), ops.ones((2, 3)))  # grads = 2·x
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = fn(x)
            total = tf.reduce_sum(tf.cast(outputs, tf.float32))
        return outputs, tape.gradient(total, x)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def summed(v):
            outputs = fn(v)
            return jnp.sum(outputs.astype(jnp.float32)), outputs

        (_, outputs), grads = jax.value_and_grad(summed, has_aux=True)(jnp.asarray(x))
        return outputs, grads
    if backend == "torch":
        import torch

        x = keras.ops.convert_to_tensor(x)
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            outputs = fn(x)
            (grads,) = torch.autograd.grad(outputs.float().sum(), x, create_graph=True)
        return outputs, grads
    raise NotImplementedError(
        f"input_gradients supports the tensorflow, jax and torch backends; got {backend!r}."
    )
