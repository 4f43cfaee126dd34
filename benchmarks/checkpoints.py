"""What a checkpoint costs, part by part: the record with its parts taken away.

    python benchmarks/checkpoints.py [--quick] [--json FILE]

``rankjump bench`` times the headline's ``simulate`` (d = width = 20, depth 4, 4,096
trajectories, 5,000 steps) with ``record_every = 100`` against the same call with one
checkpoint. This script makes the same comparison three times, side by side in one process, with
the checkpoint record of :mod:`rankjump.kernel.records` replaced in the compiled program by a
stand-in of the same shapes that costs next to nothing:

- ``full``: the record as it is;
- ``no spectra``: the singular values and rank counts (:func:`spectral_record`: the
  bidiagonalization of the layers and A_theta, the counts and the bisection) replaced, the rest
  kept (A_theta, data loss, parameter norm, imbalance, divergence check, the layout changes);
- ``no record``: the whole record replaced (what is left is the checkpoint interval itself: the
  stepping loop ending and starting again, and the records kept and returned).

Each variant's ratio is what ``record_every = 100`` would reach if the parts taken away cost
nothing: ``no spectra`` bounds what any faster singular value computation can give, ``no record``
what any faster record can. The stand-ins' figures are not records (zeros); only the times count.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp

import rankjump.kernel.chunk as chunk
import rankjump.kernel.records as records
from rankjump.bench.cases import BenchCase, bench_config
from rankjump.bench.side_by_side import checkpoint_ratio

HEADLINE = BenchCase("headline", 20, 4, 1)
VARIANTS = ("full", "no spectra", "no record")


_SPECTRAL, _RECORD = records.spectral_record, records.record  # the real ones


def _like(shapes, per_lane, lanes_last: bool):
    """Arrays of the shapes and dtypes ``shapes`` (a pytree) holding one value per lane."""

    def fill(leaf):
        if lanes_last:
            return jnp.broadcast_to(per_lane, leaf.shape).astype(leaf.dtype)
        x = per_lane.reshape(per_lane.shape + (1,) * (len(leaf.shape) - 1))
        return jnp.broadcast_to(x, leaf.shape).astype(leaf.dtype)

    return jax.tree_util.tree_map(fill, shapes)


def free_spectra(weights, end, thr_layer, thr_end, s):
    """A stand-in for :func:`rankjump.kernel.records.spectral_record`: its shapes and dtypes,
    next to no work (one sum of A_theta, so the product is still made)."""
    shapes = jax.eval_shape(functools.partial(_SPECTRAL, s=s), weights, end, thr_layer, thr_end)
    return _like(shapes, jnp.sum(end, axis=(0, 1)), lanes_last=True)


def free_record(state, alive, p, lam, task, s):
    """A stand-in for :func:`rankjump.kernel.records.record`: its shapes and dtypes, next to no
    work (one entry of the first layer, so the record depends on the state)."""
    _, shapes = jax.eval_shape(functools.partial(_RECORD, s=s), state, alive, p, lam, task)
    rec = _like(shapes, state.weights[0][:, 0, 0], lanes_last=False)
    return state, rec._replace(alive=alive)


@contextlib.contextmanager
def variant(name: str):
    """The compiled programs made inside use the record of ``name`` (one of :data:`VARIANTS`)."""
    saved = records.spectral_record, chunk.record
    if name == "no spectra":
        records.spectral_record = free_spectra
    elif name == "no record":
        chunk.record = free_record
    elif name != "full":
        raise ValueError(f"variant {name!r}: must be one of {' | '.join(VARIANTS)}")
    chunk.compiled_chunk.cache_clear()
    try:
        yield
    finally:
        records.spectral_record, chunk.record = saved
        chunk.compiled_chunk.cache_clear()


def measure(trajectories: int, steps: int, repeats: int, every: int = 100) -> dict:
    """Each variant's :func:`rankjump.bench.side_by_side.checkpoint_ratio`, and its extra time
    per trajectory-checkpoint (wall clock, all devices together)."""
    cfg = bench_config(HEADLINE, trajectories, steps)
    out = {"trajectories": trajectories, "steps": steps, "record_every": every}
    for name in VARIANTS:
        with variant(name):
            c = checkpoint_ratio(cfg, repeats, every)
        extra = c["fine_s"] - c["one_checkpoint_s"]
        c["extra_us"] = 1e6 * extra / (trajectories * (steps // every - 1))
        out[name] = c
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    traj, steps, repeats = (1024, 1000, 2) if args.quick else (4096, 5000, 3)
    out = measure(traj, steps, repeats)
    print(
        f"headline, {traj} trajectories x {steps} steps: record_every = {out['record_every']} "
        "against one checkpoint"
    )
    for name in VARIANTS:
        c = out[name]
        print(
            f"  {name:<10}: {c['ratio']:.2f}x ({c['fine_s']:.2f} s against "
            f"{c['one_checkpoint_s']:.2f} s), {c['extra_us']:.1f} us a trajectory-checkpoint"
        )
    full, spectra, rest = (out[n]["extra_us"] for n in VARIANTS)
    print(
        f"  a checkpoint: spectra {full - spectra:.1f} us, the rest of the record "
        f"{spectra - rest:.1f} us, the interval itself {rest:.1f} us"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
