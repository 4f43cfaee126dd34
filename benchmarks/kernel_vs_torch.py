"""First figure: rankjump's SGD kernel against a naive one-trajectory PyTorch loop, same run.

The PyTorch loop is ``rankjump.peers.torch_naive`` (autograd, torch.optim.SGD with
weight_decay = 2 lam, one thread).

Headline configuration: d_out = d_in = width = 20, depth 4, batch 1, float32, 30% observed.
Prints trajectory-steps per second (minimum-of-repeats time after a warm-up; compile apart) and
the ratio. Usage: python benchmarks/kernel_vs_torch.py [--trajectories 2048] [--steps 2000]
"""

from __future__ import annotations

import argparse
import json
import time

import rankjump as rj
from rankjump.config import Config, loads_config
from rankjump.peers import torch_naive

HEADLINE = """
[task]
d_out = 20
d_in = 20
rank = 2
observed = 0.3
singular_values = [2.0, 1.0]
[network]
depth = 4
width = 20
init = "gaussian"
init_scale = 1.0
[optimizer]
lam = [0.001]
eta = [0.01]
[run]
trajectories = {traj}
steps = {steps}
record_every = {steps}
chunk_size = {chunk}
dtype = "float32"
"""


def time_rankjump(cfg: Config, repeats: int = 3) -> tuple[float, float]:
    """(compile + first run seconds, best run seconds) of the whole simulate() call."""
    t0 = time.perf_counter()
    rj.simulate(cfg, progress=False)
    first = time.perf_counter() - t0
    best = min(_timed(lambda: rj.simulate(cfg, progress=False)) for _ in range(repeats))
    return first, best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trajectories", type=int, default=2048)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--torch-steps", type=int, default=2000)
    args = p.parse_args()
    cfg = loads_config(HEADLINE.format(traj=args.trajectories, steps=args.steps, chunk=args.chunk))
    first, best = time_rankjump(cfg)
    rate = args.trajectories * args.steps / best
    torch_rate = torch_naive(cfg, args.torch_steps).trajectory_steps_per_s
    out = {
        "rankjump": rate,
        "torch_naive": torch_rate,
        "ratio_naive": rate / torch_rate,
        "compile_s": first - best,
        "trajectories": args.trajectories,
        "steps": args.steps,
    }
    print(f"rankjump kernel   {rate:12.4g} trajectory-steps/s  (compile {first - best:.1f} s)")
    print(f"torch naive loop  {torch_rate:12.4g} trajectory-steps/s")
    print(f"ratio             {rate / torch_rate:12.1f} x")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
