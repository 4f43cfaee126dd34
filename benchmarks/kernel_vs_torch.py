"""First figure: rankjump's SGD kernel against a naive one-trajectory PyTorch loop, same run.

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


def time_torch_naive(cfg: Config, steps: int) -> float:
    """Seconds for ``steps`` SGD steps of ONE trajectory: autograd + torch.optim.SGD."""
    import torch

    torch.set_num_threads(1)
    task = rj.make_task(cfg.task)
    n = cfg.network
    dims = [cfg.task.d_in] + [n.width] * (n.depth - 1) + [cfg.task.d_out]
    gen = torch.Generator().manual_seed(0)
    ws = [
        (torch.randn(dims[l + 1], dims[l], generator=gen) / dims[l] ** 0.5).requires_grad_()
        for l in range(n.depth)
    ]
    lam, eta = cfg.optimizer.lam[0], cfg.optimizer.eta[0]
    opt = torch.optim.SGD(ws, lr=eta, weight_decay=2 * lam)
    rows, cols = torch.as_tensor(task.rows).long(), torch.as_tensor(task.cols).long()
    y = torch.as_tensor(task.y, dtype=torch.float32)
    idx = torch.randint(0, len(y), (steps,), generator=gen)

    def run():
        for s in range(steps):
            k = idx[s]
            a = ws[0]
            for w in ws[1:]:
                a = w @ a
            loss = (a[rows[k], cols[k]] - y[k]) ** 2
            opt.zero_grad()
            loss.backward()
            opt.step()

    run()  # warm-up
    return min(_timed(run) for _ in range(3))


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
    torch_rate = args.torch_steps / time_torch_naive(cfg, args.torch_steps)
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
