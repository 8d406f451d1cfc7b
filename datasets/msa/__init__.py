"""CMU-MOSI / CMU-MOSEI / CH-SIMS features as a TFDS dataset (`tfds new` layout)."""
