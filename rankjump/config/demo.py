"""The demo's embedded default configuration (``rankjump demo``, docs/theory.md).

A 10 x 10 rank-1 target (Gaussian factors, ||A*||_F = 5) observed on half its entries with fixed
N(0, 0.3^2) noise; depth 3, width 10, lam = 2e-3, single-entry SGD at several learning rates from
a GD-converged minimum of rank 3 (gradient norm below 1e-10, float64).
"""

from __future__ import annotations

from rankjump.config.toml import loads_config
from rankjump.config.whole import Config

__all__ = ["DEMO_CONFIG", "demo_config"]

DEMO_CONFIG = """\
[task]
kind = "matrix_completion"
d_out = 10
d_in = 10
rank = 1
observed = 0.5
target_norm = 5.0
noise = 0.3
seed = 0

[network]
depth = 3
width = 10
init = "gd_minimum"
init_scale = 2.5
seed = 0
gd_eta = 0.05
gd_tol = 1e-10
gd_max_steps = 2000000

[optimizer]
kind = "sgd"
batch_size = 1
lam = [0.002]
eta = [0.1, 0.15, 0.16, 0.17, 0.18, 0.19]

[run]
trajectories = 512
steps = 50000
record_every = 1000
seed = 0
chunk_size = 512
dtype = "float32"

[rank]
threshold = "auto"
"""


def demo_config(quick: bool = False) -> Config:
    """The embedded default; ``quick`` shrinks it to run in seconds."""
    cfg = loads_config(DEMO_CONFIG, source="demo")
    if quick:
        cfg = cfg.replace(
            optimizer={"eta": [0.15, 0.17, 0.19]},
            run={"trajectories": 128, "steps": 20000, "record_every": 1000, "chunk_size": 128},
        )
    return cfg
