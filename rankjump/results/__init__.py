"""The result file: its schema and provenance, atomic writes, and the one validated loader.

- :mod:`~rankjump.results.schema`: the variables of each kind of result, the provenance
  attributes, and the Dataset built from a run's records;
- :mod:`~rankjump.results.atomic`: writes to a temporary name renamed into place, with signals
  deferred over the rename;
- :mod:`~rankjump.results.io`: :func:`save_result`, :func:`load_result` (the loader every
  command reads through) and :class:`ResultError`.

It imports only :mod:`rankjump.config` and :mod:`rankjump.model`.
"""

from rankjump.results.atomic import atomic_path, deferred_signals
from rankjump.results.io import (
    ResultError,
    check_output_file,
    load_result,
    result_kind,
    save_result,
)
from rankjump.results.schema import (
    PER_LAM_ATTRS,
    REQUIRED_VARS,
    RESULT_KINDS,
    RESULT_SCHEMA,
    SAMPLE_STREAMS,
    build_dataset,
    checkpoint_steps,
    lane_variables,
    provenance,
    rankjump_version,
)

__all__ = [
    "PER_LAM_ATTRS",
    "REQUIRED_VARS",
    "RESULT_KINDS",
    "RESULT_SCHEMA",
    "SAMPLE_STREAMS",
    "ResultError",
    "atomic_path",
    "build_dataset",
    "check_output_file",
    "checkpoint_steps",
    "deferred_signals",
    "lane_variables",
    "load_result",
    "provenance",
    "rankjump_version",
    "result_kind",
    "save_result",
]
