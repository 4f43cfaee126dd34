"""The table and JSON of a rare result (``rankjump rare`` prints the table, ``rankjump stats``
both)."""

from __future__ import annotations

import tomllib

import numpy as np

from rankjump.stats.diagnostics import MAX_TOP_SHARE, MIN_EFFECTIVE_RUNS, result_diagnostics
from rankjump.stats.intervals import markov_lower

__all__ = ["format_rare", "rare_to_dict"]


# Per-cell numbers of the rate method (rankjump.rare_events.rate_result.rate_variables) in its
# table and JSON.
RATE_COLUMNS = (("kick_p", "kick/window"), ("committor", "committor"))
# ... and of the flux method (rankjump.rare_events.flux_result.flux_variables).
FLUX_COLUMNS = (("kicks", "kicks"), ("committor", "committor"), ("p_plain", "plain MC p"))
DIAGNOSTICS = ("runs_effective", "top_share", "tail_index", "relvar_n")  # numbers in the JSON


def format_rare(ds) -> str:
    """The table of a rare result: per cell p, its interval, the lower end that holds whatever the
    runs' law (:func:`rankjump.stats.intervals.markov_lower`), the runs' effective number and the
    top run's share (:mod:`rankjump.stats.diagnostics`), finished and extinct runs, cost,
    eta / eta_edge (the start's edge of stability) and, by the rate method, the probability of a
    kick per window and the committor of the kicked states. A cell that fails the diagnostics
    shows "unreliable" in place of its interval: only the any-law lower end holds there."""
    level = ds.attrs["level"]
    interval = f"{level:.0%} t interval"
    ds = ds.assign(result_diagnostics(ds))
    edge = "eta_edge" in ds
    columns = FLUX_COLUMNS if ds.attrs.get("method") == "flux" else RATE_COLUMNS
    extra = [(v, h) for v, h in columns if v in ds]
    head = f"{'lam':>8} {'eta':>8} {'p':>10} {interval:>24} {'any-law lo':>10}"
    head += f" {'eff runs':>8} {'top run':>7}"
    head += f" {'runs done':>9} {'extinct':>7}"
    head += f" {'traj-steps':>11}" + (f" {'eta/edge':>8}" if edge else "")
    lines, unbounded = [head + "".join(f" {h:>11}" for _, h in extra)], False
    flagged, missing = 0, []
    for lam in ds["lam"].values:
        for eta in ds["eta"].values:
            c = ds.sel(lam=lam, eta=eta)
            hi = float(c["p_hi"])
            unbounded |= hi != hi and float(c["p"]) == 0.0
            ci = f"[{float(c['p_lo']):.3g}, {'none' if hi != hi else format(hi, '.3g')}]"
            if not bool(c["reliable"]) and float(c["p"]) > 0:
                ci, flagged = "unreliable", flagged + 1
            why = _no_estimate(c, ds)
            if why is not None:
                ci = "no estimate"
                missing.append(f"lam {lam:g}, eta {eta:g}: {why}")
            made = int(c["run_made"].sum()) if "run_made" in c else c.sizes["run"]
            done = f"{int(c['run_finished'].sum())}/{made}"
            extinct, cost = int(c["run_extinct"].sum()), int(c["run_cost"].sum())
            low = markov_lower(float(c["p"]), level)
            p, low = ("-", "-") if why is not None else (f"{float(c['p']):.3g}", f"{low:.3g}")
            line = f"{lam:>8g} {eta:>8g} {p:>10} {ci:>24} {low:>10}"
            eff, top = float(c["runs_effective"]), float(c["top_share"])
            line += f" {eff:>8.3g} {top:>7.0%}" if top == top else f" {'-':>8} {'-':>7}"
            line += f" {done:>9} {extinct:>7} {cost:>11.3g}"
            line += f" {eta / float(c['eta_edge']):>8.2f}" if edge else ""
            lines.append(line + "".join(f" {float(c[v]):>11.3g}" for v, _ in extra))
    lines.append(
        f"any-law lo: {(1 - level) / 2:g} p, a lower end that holds whatever the law of the runs'"
        " estimates (Markov's inequality); the t interval's needs their mean near normal"
    )
    lines.append(f"assumed ({ds.attrs.get('method', 'ams')}): {assumptions(ds)}")
    if flagged:
        lines.append(
            f"unreliable: fewer than {MIN_EFFECTIVE_RUNS:g} effective runs ((sum r)^2 / sum r^2)"
            f" or one run carrying more than {MAX_TOP_SHARE:.0%} of the sum: a few runs carry the"
            " mean, no two-sided interval holds and p itself reads low more often than high; "
            'only the any-law lower end stands (more runs: rare.runs, or rare.runs = "auto")'
        )
    if missing:
        lines.append(
            f"no estimate: {'; '.join(missing)} (an unfinished run has no estimate; raise"
            " rare.max_iterations)"
        )
    # Cells whose p is 0 or undefined for a reason the result records: no basin, or divergence
    # (at least a generation of replicas per run diverged: a few diverged paths explain nothing).
    import tomllib

    try:
        rare = tomllib.loads(ds.attrs.get("config", "")).get("rare", {})
    except (tomllib.TOMLDecodeError, TypeError):
        rare = {}
    generation, explained = rare.get("replicas", 1), 0
    for lam in ds["lam"].values:
        for eta in ds["eta"].values:
            c, at = ds.sel(lam=lam, eta=eta), f"lam {lam:g}, eta {eta:g}"
            p = float(c["p"])
            paths = int(c["run_diverged"].sum()) if "run_diverged" in c else 0
            if p != p and "basin_kept" in c and float(c["basin_kept"]) == 0:
                lost = int(c["basin_diverged"])
                lines.append(
                    f"p undefined at {at}: no basin replica was left after rare.burn_in ({lost} "
                    "diverged, the rest kicked), so no window could start; "
                    + (
                        "a smaller optimizer.eta"
                        if lost
                        else 'kicks are not rare here: rare.method = "ams"'
                    )
                )
            made = int(c["run_made"].sum()) if "run_made" in c else c.sizes["run"]
            zero = p == 0 and float(c["p_hi"]) != float(c["p_hi"])
            if zero and paths and paths >= generation * made:
                explained += 1
                lines.append(
                    f"p = 0 with no upper end at {at}: {paths} paths of its runs diverged "
                    "(||theta||^2 above run.diverge_norm2 or not finite: a diverged path never "
                    "reaches the target), which bounds nothing; a smaller optimizer.eta, or a "
                    "larger run.diverge_norm2 if the bound is too tight"
                )
    zeros = int(((ds["p"] == 0) & ds["p_hi"].isnull()).sum())
    if unbounded and zeros > explained and ds.attrs.get("method") == "rate":
        lines.append(
            "p = 0 with no upper end: no run found a kick that committed (runs whose kick "
            "splitting died out are counted under extinct), which bounds nothing "
            "(docs/theory.md, section 6)"
        )
    elif unbounded and zeros > explained and ds.attrs.get("method") == "flux":
        lines.append(
            "p = 0 with no upper end: no continuation of any kick entered the target set by "
            "run.steps (nor did a plain path), which bounds nothing; more rare.paths or runs"
        )
    elif unbounded and zeros > explained:
        lines.append(
            "p = 0 with no upper end: every run estimated 0 (died out: all replicas tied at a "
            "level), which bounds nothing; the score cannot separate replicas there "
            "(docs/theory.md, section 6)"
        )
    return "\n".join(lines)


def assumptions(ds) -> str:
    """What the result's p rests on beyond the simulator (its attrs["assumptions"]; for a file
    written before it was recorded, the method's:
    :data:`rankjump.rare_events.dataset.ASSUMPTIONS`)."""
    from rankjump.rare_events.dataset import ASSUMPTIONS

    return str(ds.attrs.get("assumptions") or ASSUMPTIONS[ds.attrs.get("method", "ams")])


def rare_to_dict(ds) -> dict:
    """A rare result as JSON-ready values (NaN as None): per cell p, intervals, the diagnostics of
    its runs, runs, eta_edge and the rate method's own numbers
    (:data:`rankjump.rare_events.rate_result.RATE_VARIABLES`). ``ci`` is the interval that holds:
    the t interval of a reliable cell, ``[lo_any_law, None]`` of an unreliable one (``t_ci`` is the
    t interval whatever the cell)."""

    from rankjump.rare_events.flux_result import FLUX_RUN_VARIABLES, FLUX_VARIABLES
    from rankjump.rare_events.rate_result import RATE_RUN_VARIABLES, RATE_VARIABLES

    cell_vars = ("eta_edge", *RATE_VARIABLES, *FLUX_VARIABLES)
    run_vars = (*RATE_RUN_VARIABLES, *FLUX_RUN_VARIABLES, "p_curve", "p_curve_stderr")

    def num(x):
        x = float(x)
        return None if x != x or x in (float("inf"), float("-inf")) else x

    ds, cells = ds.assign(result_diagnostics(ds)), []
    ranks = {name: _per_lam(ds, name) for name in _RANKS}
    for i, lam in enumerate(ds["lam"].values):
        for eta in ds["eta"].values:
            c = ds.sel(lam=lam, eta=eta)
            low = num(markov_lower(float(c["p"]), ds.attrs["level"]))
            t_ci = [num(c["p_lo"]), num(c["p_hi"])]
            cells.append(
                {
                    "lam": float(lam),
                    "eta": float(eta),
                    **{name: values[i] for name, values in ranks.items()},
                    "p": num(c["p"]),
                    "no_estimate": _no_estimate(c, ds),
                    "reliable": bool(c["reliable"]),
                    "ci": t_ci if bool(c["reliable"]) else [low, None],
                    "t_ci": t_ci,
                    "log_ci": [num(c["log_p_lo"]), num(c["log_p_hi"])],
                    "lo_any_law": low,
                    **{name: num(c[name]) for name in DIAGNOSTICS},
                    "run_estimates": [num(x) for x in c["run_estimate"].values],
                    "runs_finished": int(c["run_finished"].sum()),
                    "runs_unfinished": _unfinished(c),
                    **_runs_made(c),
                    "cost": int(c["run_cost"].sum()),
                    **{v: num(c[v]) for v in cell_vars if v in ds and c[v].ndim == 0},
                    **{v: [num(x) for x in c[v].values] for v in run_vars if v in ds},
                }
            )
    shared = {name: values[0] if len(set(values)) == 1 else None for name, values in ranks.items()}
    keys = ("method", "score")
    return {
        "kind": "rare",
        **{k: ds.attrs.get(k) for k in keys},
        "assumptions": assumptions(ds),
        **shared,
        "level": float(ds.attrs["level"]),
        "cells": cells,
    }


_RANKS = ("start_rank", "target_rank")


def _per_lam(ds, name: str) -> list[int | None]:
    """The attribute ``name`` (a rank) of each lam; None for all where the result has none."""
    values = [int(v) for v in np.atleast_1d(ds.attrs.get(name, []))]
    n = ds.sizes["lam"]
    return values * n if len(values) == 1 else values if len(values) == n else [None] * n


def _unfinished(c) -> int:
    """A cell's runs made that did not finish (stopped at ``rare.max_iterations``)."""
    made = c["run_made"].values.astype(bool) if "run_made" in c else True
    return int(np.sum(made & ~c["run_finished"].values.astype(bool)))


def _no_estimate(c, ds) -> str | None:
    """Why a cell has no p (its runs stopped unfinished), None where it has one."""
    p, unfinished = float(c["p"]), _unfinished(c)
    if p == p or not unfinished:
        return None
    if "basin_kept" in c and int(c["basin_kept"]) == 0:  # no basin to start from: said below
        return "every basin replica kicked or diverged, so p is undefined (see below)"
    made = int(c["run_made"].sum()) if "run_made" in c else c.sizes["run"]
    try:
        cap = tomllib.loads(ds.attrs.get("config", "")).get("rare", {}).get("max_iterations")
    except (tomllib.TOMLDecodeError, TypeError):
        cap = None
    at = "rare.max_iterations" + (f" = {cap}" if cap is not None else "")
    return (
        f"{unfinished} of {made} runs stopped at {at} before they finished (reached the target"
        " or died out), so p is not estimated"
    )


def _runs_made(c) -> dict:
    """A cell's runs made and why they stopped, where the file says (``rare.runs = "auto"``)."""
    from rankjump.rare_events.batches import STOPS

    out = {}
    if "run_made" in c:
        out["runs_made"] = int(c["run_made"].sum())
    if "runs_stop" in c:
        out["runs_stop"] = STOPS[int(c["runs_stop"])]
    return out
