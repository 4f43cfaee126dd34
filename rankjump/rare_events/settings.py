"""What ``rankjump rare`` accepts of a configuration (:func:`check_rare`, before any compute), and
the ``[rare]`` section handed to the splitting engine (:func:`run_splitting`): the one place the
section's replicas, kill, runs and iteration cap reach :func:`rankjump.rare_events.splitting.ams`.
"""

from __future__ import annotations

from rankjump.config import Config, ConfigError
from rankjump.config.kinds import KINDS
from rankjump.rare_events.splitting import ams

__all__ = ["check_rare", "run_splitting"]


def check_rare(cfg: Config) -> None:
    """Refuse, before any compute, a configuration that ``rankjump rare`` cannot estimate: its
    start must be one shared network, without a schedule, judged by the "all_layers" rule, and
    its kind one that the method runs (:data:`rankjump.config.kinds.KINDS` says why not)."""
    net, opt = cfg.network, cfg.optimizer
    if not (net.init == "file" or (net.init == "gd_minimum" and net.gd_start == "shared")):
        raise ConfigError(
            'network.init: rare needs one shared start ("gd_minimum" with gd_start = '
            '"shared", or "file")'
        )
    if opt.n_phases > 1:
        raise ConfigError("optimizer.schedule_steps: rare runs without a schedule")
    if cfg.rank.rule != "all_layers":
        raise ConfigError('rank.rule: rare estimates entry into B_r under "all_layers" only')
    kind = KINDS[opt.kind]
    if kind.rare is not None:
        raise ConfigError(f"optimizer.kind = {opt.kind!r}: rankjump rare refuses it: {kind.rare}")
    if cfg.rare.method == "rate" and kind.rate is not None:
        raise ConfigError(
            f'optimizer.kind = {opt.kind!r}: rare.method = "rate" refuses it: {kind.rate}'
        )


def run_splitting(process, key, rare, steps: int, every: int, on_iteration=None, **options):
    """:func:`rankjump.rare_events.splitting.ams` with the ``[rare]`` section's replicas, kill,
    runs and iteration cap, over ``steps`` steps scored every ``every``: the one place the
    section is handed to the engine. ``options`` go to ``ams`` as they are (``runs`` in place of
    ``rare.runs``, ``starts``, ``floor``)."""
    settings = {
        "replicas": rare.replicas,
        "kill": rare.kill,
        "runs": rare.runs,
        "max_iterations": rare.max_iterations,
    }
    return ams(
        process,
        key,
        **{**settings, **options},
        steps=steps,
        every=every,
        on_iteration=on_iteration,
    )
