"""keras_mmsa's benchmarks: outside the package (never installed), using keras_mmsa's public API only.

Each module is a script, run from the repository root: `python benchmarks/<name>.py --help`. The modules are
also importable as `benchmarks.<name>` from the repository root (the tests do that).
"""
