"""Reports of a suite's run: ``<suite>.md``, ``<suite>.csv``, ``<suite>_profile.png``.

The Markdown report has a header (date, machine, package versions, settings), a summary
per solver (attempted, successes, success rate, shifted geometric mean of the time with
shift 10 s, failures charged the time limit, as in Mittelmann's benchmarks, and its
ratio to the best solver), the median NABLAPROX / SCS time ratio, where the suite asks
for it a per-case time ratio of one solver against the fastest of a set of peers with its
geometric mean (and target), NABLAPROX's iteration counts next to those of the anchor of
the method it ran (PDHG: PDLP, ADMM: SCS) with the median ratio, and a per-case table.
The PNG is a Dolan-Moré performance profile: per solver, the fraction of cases solved
within a factor tau of the fastest solver's time, against log2(tau).
"""

from __future__ import annotations

import csv
import math
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cvxpy as cp
import matplotlib
import numpy as np

from compare.harness import PeerRatio, Record, RunConfig, Suite
from compare.solvers import NABLAPROX, SOLVERS, version

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

#: Shift of the shifted geometric mean of times (seconds).
SGM_SHIFT = 10.0


@dataclass(frozen=True)
class RunInfo:
    """What the report says about the run besides its records."""

    suite: Suite
    config: RunConfig
    solvers: Sequence[str]
    unavailable: Mapping[str, str]


# --------------------------------------------------------------------------- numbers


def fmt(value: float | None, spec: str = ".2e") -> str:
    """Format a number for a table; None and NaN become ``-``."""
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def shifted_geometric_mean(values: Iterable[float], shift: float = SGM_SHIFT) -> float:
    """``exp(mean(log(v + shift))) - shift`` (NaN for no values)."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return math.nan
    return float(np.exp(np.mean(np.log(v + shift))) - shift)


def charged_times(records: Iterable[Record], timeout: float) -> list[float]:
    """Each record's time, or the time limit for a failure."""
    return [r.time if r.success else timeout for r in records]


def median_ratio(records: Sequence[Record], numerator: str, denominator: str) -> tuple[float, int]:
    """Median of ``time(numerator) / time(denominator)`` over the cases both solved,
    and the number of those cases (NaN, 0 when none)."""
    solved = {(r.case, r.solver): r.time for r in records if r.success}
    ratios = [
        solved[(case, numerator)] / solved[(case, denominator)]
        for case in dict.fromkeys(r.case for r in records)
        if (case, numerator) in solved and (case, denominator) in solved
    ]
    return (float(np.median(ratios)), len(ratios)) if ratios else (math.nan, 0)


@dataclass(frozen=True)
class BestPeerRatio:
    """One case of :func:`best_peer_ratios`: the solver's time, the fastest peer that
    solved the case and its time, their ratio (NaN when either side did not solve it)."""

    case: str
    time: float
    peer: str
    peer_time: float
    ratio: float
    note: str


def best_peer_ratios(
    records: Sequence[Record], solver: str, peers: Sequence[str]
) -> list[BestPeerRatio]:
    """Per case (in record order) where ``solver`` was run: ``time(solver)`` over the
    smallest ``time(peer)`` among the ``peers`` that solved the case. Times are the
    records' total times (compile + solve); only successful solves count."""
    rows = []
    for case in dict.fromkeys(r.case for r in records if r.solver == solver):
        mine = next(r for r in records if r.case == case and r.solver == solver)
        solved = [r for r in records if r.case == case and r.solver in peers and r.success]
        best = min(solved, key=lambda r: r.time, default=None)
        peer, peer_time = (best.solver, best.time) if best is not None else ("-", math.nan)
        if not mine.success:
            note = f"{solver} failed ({mine.status})"
        elif best is None:
            note = "no peer solved it"
        else:
            note = ""
        ratio = mine.time / peer_time if not note and peer_time > 0 else math.nan
        rows.append(
            BestPeerRatio(
                case, mine.time if mine.success else math.nan, peer, peer_time, ratio, note
            )
        )
    return rows


def geometric_mean(values: Iterable[float]) -> float:
    """Geometric mean of the finite positive ``values`` (NaN if there are none)."""
    v = np.asarray([x for x in values if math.isfinite(x) and x > 0], dtype=float)
    return float(np.exp(np.mean(np.log(v)))) if v.size else math.nan


def performance_ratios(records: Sequence[Record], solvers: Sequence[str]) -> dict[str, np.ndarray]:
    """Per solver, per case: time over the fastest successful time (inf if not solved)."""
    cases = list(dict.fromkeys(r.case for r in records))
    solved = {(r.case, r.solver): r.time for r in records if r.success}
    ratios = {solver: np.full(len(cases), np.inf) for solver in solvers}
    for i, case in enumerate(cases):
        times = {s: solved[(case, s)] for s in solvers if (case, s) in solved}
        if times:
            best = min(times.values())
            for solver, seconds in times.items():
                ratios[solver][i] = seconds / best
    return ratios


# ------------------------------------------------------------------------- markdown


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells is escaped)."""

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join(
        [line(headers), "|" + "|".join("---" for _ in headers) + "|"] + [line(row) for row in rows]
    )


def header_lines(info: RunInfo) -> list[str]:
    """Bullet lines: date, machine, versions, settings, success test, suite notes."""
    config, suite = info.config, info.suite
    versions = ", ".join([f"cvxpy {cp.__version__}"] + [version(s) for s in info.solvers])
    lines = [
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- Packages: {versions}",
        f"- Solvers: {', '.join(info.solvers)}"
        + "".join(f"; {name} unavailable ({why})" for name, why in info.unavailable.items()),
        (
            "- Accuracy asked: each solver's default tolerances"
            if config.eps_abs is None
            else f"- Accuracy asked: eps_abs = {config.eps_abs:g}, "
            f"eps_rel = {config.eps_rel:g}, as "
            + "; ".join(f"{s}: {SOLVERS[s].accuracy_note}" for s in info.solvers)
        ),
        f"- Time limit: {config.timeout:g} s (solver option; the child is killed after "
        f"{config.hard_limit:g} s); memory limit {config.memory_gb:g} GB (address space; "
        f"none on a GPU); NABLAPROX device: {config.device}."
        + "".join(f" NABLAPROX {k}={v!r}." for k, v in config.nablaprox_options),
        "- Each solve runs in a fresh process, after a warm-up solve of a tiny problem of "
        f"the same class; best of {config.repeats} solve(s) of freshly built copies while "
        "one takes under 1 s. Time = CVXPY compile + solve (wall time of `prob.solve`); "
        f"shifted geometric mean with shift {SGM_SHIFT:g} s over the cases a solver "
        "attempted, failures charged the time limit.",
        f"- Success: status optimal (optimal_inaccurate counts if it passes too), "
        f"|obj - ref| / max(1, |ref|) <= {config.tolerance:g} and worst constraint "
        f"violation (relative to the constraint's own data) <= {config.tolerance:g}, within "
        "the time limit.",
    ]
    if suite.reference_solver is not None:
        lines.append(f"- Reference: {suite.reference_solver.description} (cached).")
    return lines + [f"- {note}" for note in suite.notes]


def summary_table(records: Sequence[Record], solvers: Sequence[str], timeout: float) -> str:
    """Per solver: attempted, successes (per group too), success rate, time SGM, ratio."""
    groups = [g for g in dict.fromkeys(r.group for r in records) if g]
    by_solver = {s: [r for r in records if r.solver == s] for s in solvers}
    means = {s: shifted_geometric_mean(charged_times(rs, timeout)) for s, rs in by_solver.items()}
    best = min((m for m in means.values() if math.isfinite(m)), default=math.nan)
    rows = []
    for solver, mine in by_solver.items():
        successes = sum(r.success for r in mine)
        rate = 100.0 * successes / len(mine) if mine else math.nan
        per_group = [
            f"{sum(r.success for r in mine if r.group == g)}/{sum(r.group == g for r in mine)}"
            for g in groups
        ]
        ratio = means[solver] / best if best > 0 else math.nan
        rows.append(
            [solver, len(mine), successes, *per_group, fmt(rate, ".1f")]
            + [fmt(means[solver], ".3g"), fmt(ratio, ".2f")]
        )
    headers = ["Solver", "attempted", "successes", *[f"{g} solved" for g in groups]]
    headers += ["success rate (%)", "time sgm (s)", "sgm / best"]
    return markdown_table(headers, rows)


def ladder_lines(records: Sequence[Record], solvers: Sequence[str]) -> list[str]:
    """Per solver, the first size (in case order) where it failed, if any."""
    lines = []
    for solver in solvers:
        mine = [r for r in records if r.solver == solver]
        failure = next((r for r in mine if not r.success), None)
        if failure is None:
            lines.append(f"- {solver}: usable at every size attempted.")
            continue
        solved = [r.case for r in mine[: mine.index(failure)]]
        below = f"; solved every smaller size (up to {solved[-1]})" if solved else ""
        why = "; ".join(n for n in (failure.status, failure.note) if n)
        lines.append(
            f"- {solver}: stopped being usable at {failure.case} ({failure.variables:,} "
            f"variables: {why}){below}."
        )
    return lines


def case_table(records: Sequence[Record]) -> str:
    """One row per solve: status (✓ for a success), error, violation, time, iterations."""
    headers = ["Case", "class", "vars / cons", "reference", "solver", "status", "rel err"]
    headers += ["violation", "time (s)", "iterations", "memory (MB)", "note"]
    constraints = {r.case: r.constraints for r in records if math.isfinite(r.constraints)}
    rows = [
        [
            r.case,
            r.problem_class,
            f"{r.variables} / {fmt(constraints.get(r.case), '.0f')}",
            fmt(r.reference, ".8g"),
            r.solver,
            ("✓ " if r.success else "") + r.status,
            fmt(r.rel_error),
            fmt(r.violation),
            fmt(r.time, ".3f"),
            fmt(r.iterations, ".0f"),
            fmt(r.memory_mb, ".0f"),
            r.note,
        ]
        for r in records
    ]
    return markdown_table(headers, rows)


def peer_ratio_lines(
    records: Sequence[Record], spec: PeerRatio, solvers: Sequence[str]
) -> list[str]:
    """The section on ``spec``: a per-case table of ``solver / min(peers)`` time ratios,
    their geometric mean, and whether it meets the target (which needs every case solved
    by the solver and compared with a peer). Empty if the solver or every peer was not
    run."""
    peers = [p for p in spec.peers if p in solvers]
    if spec.solver not in solvers or not peers:
        return []
    best = "min(" + ", ".join(peers) + ")" if len(peers) > 1 else peers[0]
    name = f"{spec.solver} / {best}"
    rows = best_peer_ratios(records, spec.solver, peers)
    table = markdown_table(
        ["Case", f"{spec.solver} time (s)", "fastest peer", "peer time (s)", "ratio", "note"],
        [
            [
                r.case,
                fmt(r.time, ".3f"),
                r.peer,
                fmt(r.peer_time, ".3f"),
                fmt(r.ratio, ".3f"),
                r.note,
            ]
            for r in rows
        ],
    )
    compared = [r.ratio for r in rows if math.isfinite(r.ratio)]
    mean = geometric_mean(compared)
    line = (
        f"Geometric mean of {name} over the {len(compared)} of {len(rows)} cases compared: "
        f"**{fmt(mean, '.3f')}**"
    )
    if spec.target is not None:
        if len(compared) < len(rows):
            verdict = "not met: not every case compared"
        else:
            verdict = "met" if mean <= spec.target else "not met"
        line += f" (target <= {spec.target:g}: {verdict})"
    return [
        f"## Time ratio {name}",
        "",
        f"Per case, {spec.solver}'s time over the fastest successful time among "
        f"{', '.join(peers)} (time = CVXPY compile + solve, as in the summary).",
        "",
        table,
        "",
        line + ".",
        "",
    ]


#: The peer whose iteration count each NABLAPROX method is compared with: PDHG with
#: OR-Tools' PDLP (the same method family), ADMM with SCS.
ITERATION_ANCHORS = {"pdhg": "PDLP", "admm": "SCS"}


@dataclass(frozen=True)
class AnchorRatio:
    """One case of :func:`anchor_ratios`: NABLAPROX's method and iterations, its anchor's
    iterations, and their ratio when both solved the case (``strict``: by the suite's
    check; ``own``: NABLAPROX by the suite's check, the anchor by its own ``optimal``;
    NaN otherwise)."""

    case: str
    algorithm: str
    iterations: float
    anchor: str
    anchor_iterations: float
    strict: float
    own: float


def anchor_ratios(records: Sequence[Record]) -> list[AnchorRatio]:
    """Per case NABLAPROX solved with a method that has an anchor (``ITERATION_ANCHORS``)
    and the anchor was run on: NABLAPROX's iterations over the anchor's."""
    by_case = {(r.case, r.solver): r for r in records}
    rows = []
    for r in records:
        anchor = ITERATION_ANCHORS.get(r.algorithm)
        if r.solver != NABLAPROX or anchor is None or (r.case, anchor) not in by_case:
            continue
        peer = by_case[(r.case, anchor)]
        ratio = r.iterations / peer.iterations if peer.iterations > 0 else math.nan
        strict = ratio if r.success and peer.success else math.nan
        own = ratio if r.success and peer.status == cp.OPTIMAL else math.nan
        rows.append(
            AnchorRatio(r.case, r.algorithm, r.iterations, anchor, peer.iterations, strict, own)
        )
    return rows


def anchor_lines(records: Sequence[Record]) -> list[str]:
    """The section on iteration counts next to the anchors (empty when none applies):
    per anchor the median ratios over the cases both solved, and a per-case table."""
    rows = anchor_ratios(records)
    if not rows:
        return []
    table = markdown_table(
        ["Case", "NABLAPROX method", "iterations", "anchor", "anchor iterations", "ratio"],
        [
            [
                r.case,
                r.algorithm,
                fmt(r.iterations, ".0f"),
                r.anchor,
                fmt(r.anchor_iterations, ".0f"),
                fmt(r.own, ".2f") + ("" if math.isfinite(r.strict) else " *"),
            ]
            for r in rows
        ],
    )
    lines = [
        "## Iterations next to the anchors",
        "",
        "Iteration counts are free of timing noise. NABLAPROX's PDHG is compared with "
        "OR-Tools' PDLP, its ADMM with SCS, at the same accuracy asked. A ratio is shown "
        "where NABLAPROX passed the suite's check and the anchor reported `optimal`; * marks "
        "the cases where the anchor's point fails the suite's check (its own termination "
        "test is looser than the per-row one).",
        "",
    ]
    for algorithm, anchor in ITERATION_ANCHORS.items():
        for kind, what in (
            ("strict", "both pass the suite's check"),
            ("own", "the anchor's own `optimal`"),
        ):
            ratios = [getattr(r, kind) for r in rows if r.anchor == anchor]
            ratios = [v for v in ratios if math.isfinite(v)]
            if ratios:
                lines.append(
                    f"- Median iteration ratio NABLAPROX {algorithm} / {anchor}, {what}: "
                    f"**{np.median(ratios):.2f}** (over {len(ratios)} cases)."
                )
    return [*lines, "", table, ""]


def render_markdown(records: Sequence[Record], info: RunInfo) -> str:
    """The whole Markdown report."""
    lines = [f"# {info.suite.title}", "", *header_lines(info), "", "## Summary", ""]
    lines += [summary_table(records, info.solvers, info.config.timeout), ""]
    if NABLAPROX in info.solvers and "SCS" in info.solvers:
        ratio, count = median_ratio(records, NABLAPROX, "SCS")
        lines += [
            f"Median time ratio NABLAPROX / SCS: {fmt(ratio, '.2f')} (over the {count} "
            "cases both solved).",
            "",
        ]
    if info.suite.peer_ratio is not None:
        lines += peer_ratio_lines(records, info.suite.peer_ratio, info.solvers)
    lines += anchor_lines(records)
    if info.suite.ladder:
        lines += ["## Where each solver stops", "", *ladder_lines(records, info.solvers), ""]
    lines += ["## Cases", "", case_table(records), ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ files


def read_csv(path: Path) -> list[Record]:
    """The records of a CSV that :func:`write_csv` wrote (columns missing from an older
    file take their defaults)."""
    kinds = {f.name: f.type for f in fields(Record)}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    records = []
    for row in rows:
        values: dict[str, Any] = {}
        for name, text in row.items():
            kind = kinds.get(name)
            if kind == "int":
                values[name] = int(float(text))
            elif kind == "float":
                values[name] = float(text) if text not in ("", None) else math.nan
            elif kind == "bool":
                values[name] = text == "True"
            elif kind is not None:
                values[name] = text
        records.append(Record(**values))
    return records


def write_csv(path: Path, records: Sequence[Record]) -> None:
    """Write the records as CSV (one row per solve), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=Record.columns())
        writer.writeheader()
        writer.writerows(asdict(r) for r in records)


def plot_profile(path: Path, records: Sequence[Record], solvers: Sequence[str], title: str) -> None:
    """Write the Dolan-Moré performance profile of the records as a PNG."""
    ratios = performance_ratios(records, solvers)
    finite = np.concatenate([r[np.isfinite(r)] for r in ratios.values()] + [np.ones(1)])
    right = max(1.0, 1.05 * float(np.log2(finite.max())))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for solver, r in ratios.items():
        taus = np.log2(np.sort(r[np.isfinite(r)]))
        fractions = np.arange(taus.size + 1) / max(r.size, 1)  # 0, 1/n, ..., k/n
        ax.step(
            np.r_[0.0, taus, right], np.r_[fractions, fractions[-1]], where="post", label=solver
        )
    ax.set_xlim(0.0, right)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("log2(tau): time within a factor tau of the fastest solver")
    ax.set_ylabel("fraction of cases solved")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(records: Sequence[Record], info: RunInfo) -> list[Path]:
    """Write ``<suite>.md``, ``<suite>.csv`` and ``<suite>_profile.png``; their paths."""
    out, stem = info.config.out, info.suite.stem
    paths = [out / f"{stem}.md", out / f"{stem}.csv", out / f"{stem}_profile.png"]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    paths[0].write_text(render_markdown(records, info))
    write_csv(paths[1], records)
    plot_profile(paths[2], records, info.solvers, f"{info.suite.title}: performance profile")
    return paths
