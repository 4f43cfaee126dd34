"""The compiled kernel: chunks of lanes stepped between checkpoints and recorded at each.

- :mod:`~rankjump.kernel.types`: the static :class:`Structure`, the traced :class:`LaneParams`,
  the per-checkpoint :class:`Record`;
- :mod:`~rankjump.kernel.layout`: cache tiles, blocks of steps and XLA:CPU options;
- :mod:`~rankjump.kernel.records`: one lane's checkpoint record;
- :mod:`~rankjump.kernel.stepping`: one interval of a chunk (lanes last, in tiles, or vmapped);
- :mod:`~rankjump.kernel.chunk`: the compiled programs and their progress hook (:data:`PROGRESS`).

A :class:`Structure` is made from a configuration and the devices by
:func:`rankjump.simulation.plan.structure_for`: the kernel knows no configuration.
"""

from rankjump.kernel.chunk import (
    PROGRESS,
    Progress,
    compiled_advance,
    compiled_chunk,
    lane_mesh,
    run_lanes,
    set_listener,
    split_lane_key,
    trace_count,
)
from rankjump.kernel.layout import (
    CPU_OPTIONS,
    compiler_options,
    interval_structure,
    options_for,
    tile_for,
    tile_lanes,
)
from rankjump.kernel.types import LaneParams, Record, Structure, new_lane_params

__all__ = [
    "CPU_OPTIONS",
    "PROGRESS",
    "LaneParams",
    "Progress",
    "Record",
    "Structure",
    "compiled_advance",
    "compiled_chunk",
    "lane_mesh",
    "compiler_options",
    "interval_structure",
    "new_lane_params",
    "options_for",
    "run_lanes",
    "set_listener",
    "split_lane_key",
    "tile_for",
    "tile_lanes",
    "trace_count",
]
