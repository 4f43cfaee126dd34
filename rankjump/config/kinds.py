"""The dynamics kinds by name, and what each consumer needs to know of them.

:data:`KINDS` is the one table of ``optimizer.kind`` values: the configuration's choices, the
names figures and tables print, which kinds sample observed entries (a batch, recorded samples in
a replay), and whether ``rankjump rare`` runs them (and by which methods) or refuses them, with
the reason. The step of each kind is built by :mod:`rankjump.dynamics.registry`, keyed by the same
names; tests check that every table names every kind.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ENTRYWISE_KINDS", "KINDS", "KindInfo", "kind_label"]


class KindInfo(NamedTuple):
    """What the rest of rankjump knows of one step kind.

    Attributes:
        label: its name in figures and tables ("SGD").
        entrywise: a step draws ``batch_size`` observed entries (with replacement): the batch
            size is bounded by the observed entries, and a replay records the sampled ones.
        rare: why ``rankjump rare`` refuses the kind, or None when both methods run it.
        rate: why the rate method (``rare.method = "rate"``) refuses it, or None; the
            fixed-horizon method (``"ams"``) runs every kind that ``rare`` accepts.
    """

    label: str
    entrywise: bool
    rare: str | None = None
    rate: str | None = None


_NOT_ENTRYWISE = (
    "its kicks are draws of single observed entries (the window score looks one or two such "
    'draws ahead), which this kind does not make; use rare.method = "ams"'
)

KINDS: dict[str, KindInfo] = {
    "sgd": KindInfo("SGD", entrywise=True),
    "gd": KindInfo(
        "GD",
        entrywise=False,
        rare=(
            "GD is deterministic: every replica follows the same path, so splitting has nothing "
            "to choose between (P is 0 or 1; `rankjump simulate` with one trajectory says which)"
        ),
    ),
    "label_noise": KindInfo("label-noise SGD", entrywise=True),
    "langevin": KindInfo("Langevin", entrywise=False, rate=_NOT_ENTRYWISE),
    "sgd_momentum": KindInfo("SGD with momentum", entrywise=True),
}

ENTRYWISE_KINDS = tuple(name for name, kind in KINDS.items() if kind.entrywise)


def kind_label(kind: str) -> str:
    """The name of ``kind`` in figures and tables; an unknown kind as it is written."""
    return KINDS[kind].label if kind in KINDS else str(kind)
