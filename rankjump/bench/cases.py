"""The configurations ``rankjump bench`` measures, and the timed calls of rankjump it makes:
the whole ``simulate`` call (:func:`simulate_seconds`) and the compiled stepping alone
(:func:`kernel_seconds`). The command itself, its table and its side-by-side lines are
:mod:`rankjump.bench.report`.
"""

from __future__ import annotations

from dataclasses import dataclass

from rankjump.bench.timing import best_time, seconds
from rankjump.config import Config, loads_config
from rankjump.runtime.precision import with_float64

__all__ = [
    "BenchCase",
    "bench_config",
    "cases",
    "kernel_seconds",
    "simulate_seconds",
]

_BASE = """
[task]
d_out = {d}
d_in = {d}
rank = 2
observed = 0.3
singular_values = [2.0, 1.0]
[network]
depth = {depth}
width = {d}
init_scale = 1.0
[optimizer]
kind = "{kind}"
batch_size = {batch}
lam = [0.001]
eta = [{eta}]
[run]
trajectories = {traj}
steps = {steps}
record_every = {steps}
chunk_size = 512
dtype = "float32"
"""


@dataclass(frozen=True)
class BenchCase:
    """One configuration: name, sizes, and the steps each contender runs."""

    name: str
    d: int
    depth: int
    batch: int
    kind: str = "sgd"


def cases(quick: bool) -> list[BenchCase]:
    """The headline first, then the other configurations of the benchmark."""
    headline = BenchCase("headline", 20, 4, 1)
    if quick:
        return [headline, BenchCase("d=50", 50, 4, 1), BenchCase("gd", 20, 4, 1, "gd")]
    return (
        [headline]
        + [BenchCase(f"d={d}", d, 4, 1) for d in (10, 50, 100)]
        + [BenchCase(f"depth={L}", 20, L, 1) for L in (3, 6)]
        + [BenchCase(f"batch={b}", 20, 4, b) for b in (8, 64)]
        + [BenchCase("gd", 20, 4, 1, "gd")]
    )


def bench_config(case: BenchCase, trajectories: int, steps: int) -> Config:
    """The configuration of one case (eta small enough that nothing diverges)."""
    eta = 0.01 / case.depth
    return loads_config(
        _BASE.format(
            d=case.d,
            depth=case.depth,
            kind=case.kind,
            batch=case.batch,
            eta=eta,
            traj=trajectories,
            steps=steps,
        )
    )


@with_float64
def simulate_seconds(cfg: Config, repeats: int) -> tuple[float, float]:
    """(best seconds, compile seconds) of the whole ``simulate`` call.

    The first call compiles; the best of ``repeats`` calls after it is the run time, and the
    first call's excess over it the compile time.
    """
    from rankjump.simulation.runs import simulate

    def call():
        simulate(cfg, progress=False)

    first = seconds(call)
    best = min(seconds(call) for _ in range(repeats))
    return best, first - best


@with_float64
def kernel_seconds(cfg: Config, repeats: int) -> float:
    """Best seconds of the compiled stepping alone for all trajectories (chunk after chunk, no
    checkpoint), from drawn Gaussian starts: the work the PyTorch peers do. The warm-up run
    compiles."""
    import jax
    import jax.numpy as jnp

    from rankjump.dynamics import TaskArrays, hyper_for, new_state
    from rankjump.kernel import compiled_advance, lane_mesh
    from rankjump.model.network import init_gaussian
    from rankjump.model.tasks import make_task
    from rankjump.simulation.plan import structure_for

    run, opt = cfg.run, cfg.optimizer
    dtype = jnp.dtype(run.dtype)
    s = structure_for(cfg)
    n = min(run.chunk_size * len(jax.devices()), run.trajectories)  # as simulate's calls
    task = make_task(cfg.task)
    arrays = TaskArrays.of(task, dtype)
    keys = jax.random.split(jax.random.PRNGKey(run.seed), n)
    scale = cfg.network.init_scale
    weights = jax.vmap(lambda k: init_gaussian(k, s.shapes, scale, dtype))(keys)
    state = new_state(weights=weights)
    hyper = hyper_for(cfg, opt.lam[0], opt.eta[0], lanes=(n,))
    program = compiled_advance(s, lane_mesh(n))  # every device steps its share

    def all_chunks():
        for _ in range(-(-run.trajectories // n)):
            out = program(state, keys, hyper, arrays)
        jax.block_until_ready(out)

    return best_time(lambda: None, all_chunks, repeats)  # its warm-up run compiles
