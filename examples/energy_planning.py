"""Generation, storage and transmission capacity expansion, solved by NABLAPROX and HiGHS.

A one-year planning LP of the kind energy-system models (PyPSA, GenX, OSeMOSYS) build,
written in plain CVXPY: at each node of a transmission network choose how much gas,
solar, wind and battery capacity to build, and on each line how much transfer capacity
to add, so that the annualized investment plus the operating cost of a sample of
hourly snapshots (scaled up to a year) is least. The data are synthetic and
deterministic in a seed, with the poor scaling of real models left in on purpose:
investment costs in $/MW-year (1e4..1e5), fuel costs in $/MWh (tens), a value of
lost load in the thousands of $/MWh scaled by 8760/hours, capacities and demands from
about 1 MW to 1e4 MW, capacity factors down to 1e-3.

The same model can be written out in the matrix form of ``scipy.optimize.linprog``
(``c, A_ub, b_ub, A_eq, b_eq, lb, ub``; :func:`save_matrix_lp`), and any LP in that
form can be read back as a CVXPY problem (:func:`load_matrix_lp`), which is how a model
that exists only as matrices (exported from another modelling tool) is ported.

Run ``python examples/energy_planning.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cvxpy as cp
import numpy as np
import scipy.io
import scipy.sparse as sp

import cvxprox  # noqa: F401  (registers the NABLAPROX solver)

HOURS_PER_YEAR = 8760.0


@dataclass
class EnergySystem:
    """Synthetic data of a capacity-expansion model.

    Units: power in MW, energy in MWh, money in $. Investment costs are annualized
    ($/MW-year, or $/MWh-year for storage energy); operating costs are per MWh and
    are scaled from the ``hours`` snapshots to a year by ``8760 / hours``.

    Attributes
    ----------
    nodes, hours : int
        Number of network nodes ``N`` and of hourly snapshots ``T``.
    demand : ndarray, shape (N, T)
        Electric load, MW.
    cf_solar, cf_wind : ndarray, shape (N, T)
        Hourly capacity factors in [0, 1].
    gas_existing, solar_existing, wind_existing : ndarray, shape (N,)
        Installed capacity before expansion, MW.
    gas_capex, solar_capex, wind_capex : ndarray, shape (N,)
        Annualized cost of new capacity, $/MW-year.
    storage_power_capex : float
        Annualized cost of battery converter power, $/MW-year.
    storage_energy_capex : float
        Annualized cost of battery energy, $/MWh-year.
    eta_charge, eta_discharge : float
        Charge and discharge efficiencies; their product is the round-trip efficiency.
    self_discharge : float
        Fraction of the stored energy lost per hour.
    min_duration, max_duration : float
        Bounds on the energy-to-power ratio of new storage, hours.
    gas_fuel_cost : ndarray, shape (N,)
        Fuel plus variable O&M cost of gas generation, $/MWh.
    gas_emissions : float
        Emission intensity of gas generation, tCO2/MWh.
    carbon_price : float
        $/tCO2, added to the gas operating cost.
    co2_cap : float
        Annual system emission limit, tCO2/year (``inf`` for none).
    voll : float
        Value of lost load, the penalty on shed demand, $/MWh.
    lines : list of (int, int)
        The ``L`` transmission lines as (from node, to node); a positive flow runs
        from the first node to the second.
    line_existing : ndarray, shape (L,)
        Existing transfer capacity, MW.
    line_capex : ndarray, shape (L,)
        Annualized cost of new transfer capacity, $/MW-year.
    """

    nodes: int
    hours: int
    demand: np.ndarray
    cf_solar: np.ndarray
    cf_wind: np.ndarray
    gas_existing: np.ndarray
    solar_existing: np.ndarray
    wind_existing: np.ndarray
    gas_capex: np.ndarray
    solar_capex: np.ndarray
    wind_capex: np.ndarray
    storage_power_capex: float
    storage_energy_capex: float
    eta_charge: float
    eta_discharge: float
    self_discharge: float
    min_duration: float
    max_duration: float
    gas_fuel_cost: np.ndarray
    gas_emissions: float
    carbon_price: float
    co2_cap: float
    voll: float
    lines: list[tuple[int, int]]
    line_existing: np.ndarray
    line_capex: np.ndarray

    @property
    def weight(self) -> float:
        """Scale factor from the snapshot horizon to a year, ``8760 / hours``."""
        return HOURS_PER_YEAR / self.hours

    def incidence(self) -> sp.csr_matrix:
        """Node-line incidence matrix ``B``, shape (N, L): +1 at a line's from-node, -1 at
        its to-node, so ``B @ flow`` is each node's net export (MW)."""
        n_lines = len(self.lines)
        rows = [i for i, _ in self.lines] + [j for _, j in self.lines]
        cols = list(range(n_lines)) * 2
        vals = [1.0] * n_lines + [-1.0] * n_lines
        return sp.csr_matrix((vals, (rows, cols)), shape=(self.nodes, n_lines))


def _network(nodes: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """A ring (a single line for two nodes) plus about ``nodes / 4`` random chords."""
    if nodes == 2:
        return [(0, 1)]
    lines = [(i, (i + 1) % nodes) for i in range(nodes)]
    present = {frozenset(line) for line in lines}
    chords = 0
    while chords < nodes // 4:  # there are N (N - 3) / 2 >= N / 4 non-ring pairs
        i, j = (int(k) for k in rng.choice(nodes, size=2, replace=False))
        if frozenset((i, j)) not in present:
            present.add(frozenset((i, j)))
            lines.append((min(i, j), max(i, j)))
            chords += 1
    return lines


def _ar1(rng: np.random.Generator, shape: tuple[int, int], phi: float) -> np.ndarray:
    """Stationary AR(1) series with unit variance along the last axis."""
    eps = rng.standard_normal(shape)
    z = np.empty(shape)
    z[:, 0] = eps[:, 0]
    s = np.sqrt(1.0 - phi**2)
    for t in range(1, shape[1]):
        z[:, t] = phi * z[:, t - 1] + s * eps[:, t]
    return z


def generate_system(nodes: int, hours: int, seed: int = 0) -> EnergySystem:
    """Deterministic synthetic capacity-expansion data.

    The snapshots are the first ``hours`` hours of a year (hour 0 is 1 January, 00:00).

    * demand: ``peak_n * (0.55 + 0.3 day(h) + 0.15 evening(h)) * (1 + 0.12 winter(d))``
      times AR(1) noise of about 3 %; the peaks are log-uniform in [20, 5000] MW;
    * solar: ``quality_n * max(0, sin(pi (h - sunrise(d)) / daylength(d)))`` times a
      daily cloudiness in [0.3, 1] and a seasonal intensity;
    * wind: ``quality_n * 0.9 * logistic(1.5 z - 0.6)`` with ``z`` a mix of a system-wide
      and a local AR(1) process (0.97 hourly autocorrelation);
    * network: a ring plus ``nodes // 4`` random chords; line costs grow with length.

    Parameters
    ----------
    nodes : int
        Number of nodes ``N`` (at least 2).
    hours : int
        Number of hourly snapshots ``T`` (at least 1, at most 8760).
    seed : int
        Seed of the NumPy random generator; equal seeds give equal data.

    Returns
    -------
    EnergySystem
        Arrays of shape (N, T) for the hourly data, (N,) for the nodal data and (L,)
        for the line data.
    """
    if nodes < 2:
        raise ValueError(f"nodes must be at least 2, got {nodes}")
    if not 1 <= hours <= 8760:
        raise ValueError(f"hours must be in [1, 8760], got {hours}")
    rng = np.random.default_rng(seed)
    t = np.arange(hours)
    h = t % 24
    day = t / 24.0

    # Demand: daily shape with a midday plateau and an evening peak, winter-peaking season.
    peak = np.exp(rng.uniform(np.log(20.0), np.log(5000.0), nodes))
    daily = 0.5 - 0.5 * np.cos(2 * np.pi * (h - 4) / 24)
    evening = np.exp(-0.5 * ((h - 19) / 1.5) ** 2)
    season = 1.0 + 0.12 * np.cos(2 * np.pi * (day - 15) / 365)
    shape = (0.55 + 0.3 * daily + 0.15 * evening) * season / 1.12
    noise = 1.0 + 0.03 * _ar1(rng, (nodes, hours), 0.9)
    demand = peak[:, None] * shape[None, :] * noise

    # Solar: sun elevation proxy times cloudiness, longer and stronger days in summer.
    daylength = 12.0 + 3.0 * np.cos(2 * np.pi * (day - 172) / 365)
    sunrise = 12.0 - daylength / 2
    elevation = np.clip(np.sin(np.pi * (h + 0.5 - sunrise) / daylength), 0.0, None)
    elevation[(h + 0.5 < sunrise) | (h + 0.5 > sunrise + daylength)] = 0.0
    intensity = 0.85 + 0.15 * np.cos(2 * np.pi * (day - 172) / 365)
    n_days = int(np.ceil(hours / 24))
    clear = rng.uniform(0.3, 1.0, (nodes, n_days))[:, t // 24]
    solar_quality = rng.uniform(0.6, 0.95, nodes)
    cf_solar = solar_quality[:, None] * (elevation * intensity)[None, :] * clear
    cf_solar = np.clip(cf_solar, 0.0, 1.0)

    # Wind: correlated AR(1) weather through a logistic power curve.
    common = _ar1(rng, (1, hours), 0.97)
    local = _ar1(rng, (nodes, hours), 0.97)
    z = 0.6 * common + 0.8 * local
    wind_quality = rng.uniform(0.5, 1.1, nodes)
    cf_wind = np.clip(wind_quality[:, None] * 0.9 / (1.0 + np.exp(-(1.5 * z - 0.6))), 0.0, 1.0)

    # Existing fleet, MW (rounded to whole MW, as in a plant register).
    gas_existing = np.round(peak * rng.uniform(0.3, 0.9, nodes))
    solar_existing = np.round(peak * rng.uniform(0.0, 0.3, nodes))
    wind_existing = np.round(peak * rng.uniform(0.0, 0.3, nodes))

    # Network and its costs: ~$80/MW-km-year plus a fixed $1e4/MW-year for terminals.
    lines = _network(nodes, rng)
    ends = np.array(lines)
    length_km = rng.uniform(50.0, 800.0, len(lines))
    line_capex = 1.0e4 + 80.0 * length_km
    line_existing = np.round(
        np.maximum(10.0, rng.uniform(0.2, 0.6, len(lines)) * peak[ends].min(axis=1))
    )

    eta_rt = 0.85
    return EnergySystem(
        nodes=nodes,
        hours=hours,
        demand=demand,
        cf_solar=cf_solar,
        cf_wind=cf_wind,
        gas_existing=gas_existing,
        solar_existing=solar_existing,
        wind_existing=wind_existing,
        gas_capex=8.0e4 * rng.uniform(0.9, 1.1, nodes),
        solar_capex=5.5e4 * rng.uniform(0.9, 1.1, nodes),
        wind_capex=1.2e5 * rng.uniform(0.9, 1.1, nodes),
        storage_power_capex=2.5e4,
        storage_energy_capex=1.2e4,
        eta_charge=float(np.sqrt(eta_rt)),
        eta_discharge=float(np.sqrt(eta_rt)),
        self_discharge=5.0e-4,
        min_duration=1.0,
        max_duration=8.0,
        gas_fuel_cost=rng.uniform(40.0, 90.0, nodes),
        gas_emissions=0.37,
        carbon_price=50.0,
        co2_cap=float(0.37 * 0.4 * demand.sum() * HOURS_PER_YEAR / hours),
        voll=5000.0,
        lines=lines,
        line_existing=line_existing,
        line_capex=line_capex,
    )


def problem_size(nodes: int, hours: int) -> int:
    """Number of scalar variables of :func:`build_capacity_expansion`, without building it.

    ``7 N T + L T + 5 N + L`` with ``L = N + N // 4`` lines (``L = 1`` for two nodes):
    seven hourly quantities per node (gas, solar, wind, charge, discharge, state of
    charge, shed load), one flow per line and hour, five capacities per node and one
    per line.
    """
    n_lines = 1 if nodes == 2 else nodes + nodes // 4
    return 7 * nodes * hours + n_lines * hours + 5 * nodes + n_lines


def build_capacity_expansion(system: EnergySystem) -> tuple[cp.Problem, dict[str, cp.Variable]]:
    """The capacity-expansion LP of ``system`` as a CVXPY problem.

    With ``N`` nodes, ``T`` hours, ``L`` lines, incidence matrix ``B`` (N x L) and
    ``w = 8760 / T``, the problem is::

        minimize    sum_n (Cg_n G_n + Cs_n S_n + Cw_n W_n + Cp P_n + Ce E_n) + sum_l Cl_l X_l
                    + w sum_{n,t} ((f_n + tau e) g_nt + VOLL r_nt)
        subject to  g + s + u + dis - ch + r - B F = D                 (N x T, balance)
                    0 <= g_nt <= G0_n + G_n
                    0 <= s_nt <= cfs_nt (S0_n + S_n)
                    0 <= u_nt <= cfw_nt (W0_n + W_n)
                    -(X0_l + X_l) <= F_lt <= X0_l + X_l
                    0 <= ch_nt <= P_n,  0 <= dis_nt <= P_n,  0 <= soc_nt <= E_n
                    soc_nt = (1 - sigma) soc_n,t-1 + eta_c ch_nt - dis_nt / eta_d
                             (cyclic: soc_n,-1 is soc_n,T-1)
                    hmin P_n <= E_n <= hmax P_n
                    0 <= r_nt <= D_nt
                    w e sum_{n,t} g_nt <= CO2cap
                    G, S, W, P, E, X >= 0

    where capital letters with subscript ``n`` or ``l`` are new capacities (MW, MWh for
    ``E``), ``g, s, u`` gas, solar and wind output, ``F`` line flows, ``ch, dis, soc``
    storage charge, discharge and state of charge, ``r`` shed load. All hourly
    quantities are (N, T) matrix variables, the flows (L, T); the constraints are
    written on whole matrices, so building takes well under a second even at a
    million variables.

    Parameters
    ----------
    system : EnergySystem
        The data, e.g. from :func:`generate_system`.

    Returns
    -------
    problem : cvxpy.Problem
        The LP; ``problem.constraints[0]`` is the nodal balance (``-dual_value / w`` is
        the hourly nodal price in $/MWh, the marginal cost of demand).
    variables : dict of str to cvxpy.Variable
        ``gas_new, solar_new, wind_new, storage_power, storage_energy`` (N,),
        ``line_new`` (L,), ``gas, solar, wind, charge, discharge, soc, shed`` (N, T)
        and ``flow`` (L, T).
    """
    n, t_len, n_lines = system.nodes, system.hours, len(system.lines)
    w = system.weight
    v = {
        "gas_new": cp.Variable(n, nonneg=True, name="gas_new"),
        "solar_new": cp.Variable(n, nonneg=True, name="solar_new"),
        "wind_new": cp.Variable(n, nonneg=True, name="wind_new"),
        "storage_power": cp.Variable(n, nonneg=True, name="storage_power"),
        "storage_energy": cp.Variable(n, nonneg=True, name="storage_energy"),
        "line_new": cp.Variable(n_lines, nonneg=True, name="line_new"),
        "gas": cp.Variable((n, t_len), nonneg=True, name="gas"),
        "solar": cp.Variable((n, t_len), nonneg=True, name="solar"),
        "wind": cp.Variable((n, t_len), nonneg=True, name="wind"),
        "flow": cp.Variable((n_lines, t_len), name="flow"),
        "charge": cp.Variable((n, t_len), nonneg=True, name="charge"),
        "discharge": cp.Variable((n, t_len), nonneg=True, name="discharge"),
        "soc": cp.Variable((n, t_len), nonneg=True, name="soc"),
        "shed": cp.Variable((n, t_len), nonneg=True, name="shed"),
    }
    B = system.incidence()

    def column(x: cp.Expression) -> cp.Expression:
        return cp.reshape(x, (x.shape[0], 1), order="C")

    line_cap = column(system.line_existing + v["line_new"])
    soc = v["soc"]
    soc_prev = soc if t_len == 1 else cp.hstack([soc[:, -1:], soc[:, :-1]])
    gen = v["gas"] + v["solar"] + v["wind"]
    constraints = [
        gen + v["discharge"] - v["charge"] + v["shed"] - B @ v["flow"] == system.demand,
        v["gas"] <= column(system.gas_existing + v["gas_new"]),
        v["solar"] <= cp.multiply(system.cf_solar, column(system.solar_existing + v["solar_new"])),
        v["wind"] <= cp.multiply(system.cf_wind, column(system.wind_existing + v["wind_new"])),
        v["flow"] <= line_cap,
        v["flow"] >= -line_cap,
        v["charge"] <= column(v["storage_power"]),
        v["discharge"] <= column(v["storage_power"]),
        soc <= column(v["storage_energy"]),
        soc
        == (1.0 - system.self_discharge) * soc_prev
        + system.eta_charge * v["charge"]
        - v["discharge"] / system.eta_discharge,
        v["storage_energy"] >= system.min_duration * v["storage_power"],
        v["storage_energy"] <= system.max_duration * v["storage_power"],
        v["shed"] <= system.demand,
    ]
    if np.isfinite(system.co2_cap):
        constraints.append(w * system.gas_emissions * cp.sum(v["gas"]) <= system.co2_cap)

    investment = (
        system.gas_capex @ v["gas_new"]
        + system.solar_capex @ v["solar_new"]
        + system.wind_capex @ v["wind_new"]
        + system.storage_power_capex * cp.sum(v["storage_power"])
        + system.storage_energy_capex * cp.sum(v["storage_energy"])
        + system.line_capex @ v["line_new"]
    )
    gas_cost = system.gas_fuel_cost + system.carbon_price * system.gas_emissions
    operation = w * (cp.sum(gas_cost @ v["gas"]) + system.voll * cp.sum(v["shed"]))
    return cp.Problem(cp.Minimize(investment + operation), constraints), v


def balance_residual(system: EnergySystem, variables: dict[str, cp.Variable]) -> np.ndarray:
    """Nodal power-balance residual at the current variable values, shape (N, T), MW:
    ``gas + solar + wind + discharge - charge + shed - B flow - demand``."""
    val = {k: x.value for k, x in variables.items()}
    supply = val["gas"] + val["solar"] + val["wind"] + val["discharge"] - val["charge"]
    return supply + val["shed"] - system.incidence() @ val["flow"] - system.demand


def plan_summary(system: EnergySystem, variables: dict[str, cp.Variable]) -> dict[str, float]:
    """Capacity built (MW; MWh for storage energy), energy figures and the largest nodal
    balance violation of a solved model."""
    val = {k: x.value for k, x in variables.items()}
    w = system.weight
    return {
        "gas built (MW)": float(val["gas_new"].sum()),
        "solar built (MW)": float(val["solar_new"].sum()),
        "wind built (MW)": float(val["wind_new"].sum()),
        "storage power (MW)": float(val["storage_power"].sum()),
        "storage energy (MWh)": float(val["storage_energy"].sum()),
        "transmission built (MW)": float(val["line_new"].sum()),
        "gas share of demand (%)": 100.0 * float(val["gas"].sum() / system.demand.sum()),
        "shed energy (MWh/year)": w * float(val["shed"].sum()),
        "emissions (MtCO2/year)": 1e-6 * w * system.gas_emissions * float(val["gas"].sum()),
        "max balance residual (MW)": float(np.abs(balance_residual(system, variables)).max()),
    }


# --------------------------------------------------------------------------- matrix form

_FIELDS = ("c", "A_ub", "b_ub", "A_eq", "b_eq", "lb", "ub", "bounds", "c0")


def matrix_lp_data(problem: cp.Problem) -> dict[str, np.ndarray | sp.csr_matrix]:
    """An LP built in CVXPY in the matrix form of ``scipy.optimize.linprog``.

    ``minimize c'x + c0  subject to  A_ub x <= b_ub,  A_eq x == b_eq,  lb <= x <= ub``,
    where ``x`` stacks CVXPY's variables as its solver interfaces see them (from
    ``problem.get_problem_data(cp.SCIPY)``).

    Parameters
    ----------
    problem : cvxpy.Problem
        A linear program.

    Returns
    -------
    dict
        ``c`` (n,), ``A_ub`` (m_ub, n) and ``A_eq`` (m_eq, n) as CSR matrices, ``b_ub``
        (m_ub,), ``b_eq`` (m_eq,), ``lb`` and ``ub`` (n,) with infinite entries where
        there is no bound, and the objective constant ``c0`` (a float).
    """
    data, _, _ = problem.get_problem_data(cp.SCIPY)
    c, c0, _, _ = data["param_prob"].apply_parameters()
    n = c.size
    empty = sp.csr_matrix((0, n))
    lb, ub = data.get("lower_bounds"), data.get("upper_bounds")
    return {
        "c": np.asarray(c, dtype=float),
        "A_ub": sp.csr_matrix(data["G"]) if data["G"] is not None else empty,
        "b_ub": np.asarray(data["h"], dtype=float) if data["h"] is not None else np.zeros(0),
        "A_eq": sp.csr_matrix(data["A"]) if data["A"] is not None else empty,
        "b_eq": np.asarray(data["b"], dtype=float) if data["b"] is not None else np.zeros(0),
        "lb": np.full(n, -np.inf) if lb is None else np.asarray(lb, dtype=float),
        "ub": np.full(n, np.inf) if ub is None else np.asarray(ub, dtype=float),
        "c0": float(c0),
    }


def save_matrix_lp(lp: cp.Problem | Mapping, path: str | Path) -> Path:
    """Write an LP in matrix form to ``path`` (``.npz`` or ``.mat``).

    Parameters
    ----------
    lp : cvxpy.Problem or mapping
        A CVXPY LP (converted by :func:`matrix_lp_data`) or a mapping with the fields
        ``c, A_ub, b_ub, A_eq, b_eq, lb, ub`` and optionally ``c0``; matrices dense or
        SciPy sparse.
    path : str or Path
        ``.mat`` files hold sparse matrices as MATLAB sparse matrices; ``.npz`` files hold
        them as coordinate triplets ``A_ub_row, A_ub_col, A_ub_val, A_ub_shape`` (dense
        arrays are also accepted by :func:`load_matrix_lp` under the plain name).

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    data = matrix_lp_data(lp) if isinstance(lp, cp.Problem) else dict(lp)
    out: dict[str, np.ndarray | sp.spmatrix] = {}
    for key, value in data.items():
        if value is None:
            continue
        if sp.issparse(value) and path.suffix == ".npz":
            coo = sp.coo_matrix(value)
            out[f"{key}_row"], out[f"{key}_col"] = coo.row, coo.col
            out[f"{key}_val"], out[f"{key}_shape"] = coo.data, np.array(coo.shape)
        elif sp.issparse(value):
            out[key] = sp.csc_matrix(value)
        else:
            out[key] = np.asarray(value, dtype=float)
    if path.suffix == ".npz":
        np.savez_compressed(path, **out)
    elif path.suffix == ".mat":
        scipy.io.savemat(path, out, do_compression=True)
    else:
        raise ValueError(f"path: expected a .npz or .mat file, got {path.name!r}")
    return path


def _raw_fields(path: Path) -> dict[str, np.ndarray | sp.spmatrix]:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            raw = {k: f[k] for k in f.files}
        for key in ("A_ub", "A_eq"):
            parts = [f"{key}_{p}" for p in ("row", "col", "val", "shape")]
            present = [p for p in parts if p in raw]
            if present and key in raw:
                raise ValueError(f"{key}: given both dense and as triplets {present}")
            if present:
                missing = [p for p in parts if p not in raw]
                if missing:
                    raise ValueError(f"{key}: missing field {missing[0]!r} of its triplets")
                shape = tuple(int(s) for s in np.ravel(raw[parts[3]]))
                if len(shape) != 2:
                    raise ValueError(f"{parts[3]}: expected 2 numbers, got {shape}")
                rows, cols, vals = (np.ravel(raw[p]) for p in parts[:3])
                if not rows.size == cols.size == vals.size:
                    raise ValueError(
                        f"{key}: {parts[0]}, {parts[1]}, {parts[2]} have different lengths "
                        f"({rows.size}, {cols.size}, {vals.size})"
                    )
                try:
                    raw[key] = sp.csr_matrix((vals, (rows, cols)), shape=shape)
                except ValueError as err:
                    raise ValueError(f"{key}: bad triplets: {err}") from err
                for p in parts:
                    del raw[p]
        return raw
    if path.suffix == ".mat":
        raw = scipy.io.loadmat(path)
        return {k: val for k, val in raw.items() if not k.startswith("__")}
    raise ValueError(f"path: expected a .npz or .mat file, got {path.name!r}")


def _vector(raw: Mapping, key: str, size: int | None, allow_inf: bool = False) -> np.ndarray:
    try:
        x = np.asarray(raw[key].toarray() if sp.issparse(raw[key]) else raw[key], dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{key}: not a numeric array ({err})") from err
    if x.ndim == 2 and 1 in x.shape or x.ndim <= 1 or x.size == 0:
        x = x.ravel()
    else:
        raise ValueError(f"{key}: expected a vector, got shape {x.shape}")
    if size is not None and x.size == 1 and size != 1 and key in ("lb", "ub"):
        x = np.full(size, x[0])
    if size is not None and x.size != size:
        raise ValueError(f"{key}: expected {size} entries, got {x.size}")
    if np.isnan(x).any():
        raise ValueError(f"{key}: NaN at index {int(np.flatnonzero(np.isnan(x))[0])}")
    if not allow_inf and np.isinf(x).any():
        raise ValueError(f"{key}: infinite value at index {int(np.flatnonzero(np.isinf(x))[0])}")
    return x


def _matrix(raw: Mapping, key: str, n: int) -> sp.csr_matrix:
    value = raw[key]
    try:
        A = sp.csr_matrix(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{key}: not a numeric matrix ({err})") from err
    if A.shape[0] == 0 and np.ndim(value) == 2 and A.shape[1] == 0:
        A = sp.csr_matrix((0, n))  # an empty 0 x 0 matrix as MATLAB writes it
    if A.shape[1] != n:
        raise ValueError(f"{key}: expected {n} columns (the length of c), got shape {A.shape}")
    if not np.isfinite(A.data).all():
        bad = int(np.flatnonzero(~np.isfinite(A.data))[0])
        coo = A.tocoo()
        raise ValueError(
            f"{key}: non-finite entry {coo.data[bad]} at ({coo.row[bad]}, {coo.col[bad]})"
        )
    return A


def read_matrix_lp(path: str | Path) -> dict[str, np.ndarray | sp.csr_matrix | float]:
    """Read and check an LP in matrix form from a ``.npz`` or ``.mat`` file.

    The file holds ``c`` (n,) and any of ``A_ub`` (m_ub, n) with ``b_ub`` (m_ub,),
    ``A_eq`` (m_eq, n) with ``b_eq`` (m_eq,), ``lb`` and ``ub`` (n,) or ``bounds``
    (n, 2), and the objective constant ``c0``. As in ``scipy.optimize.linprog``,
    absent bounds mean ``0 <= x`` (``lb = 0``, ``ub = +inf``); write ``-inf`` / ``inf`` for
    no bound. Matrices may be dense or sparse (``.mat``), or coordinate triplets
    (``.npz``, see :func:`save_matrix_lp`). Vectors may be stored as rows or columns.

    Returns
    -------
    dict
        ``c, A_ub, b_ub, A_eq, b_eq, lb, ub, c0`` with CSR matrices (possibly with zero
        rows) and 1-D float vectors.

    Raises
    ------
    ValueError
        If a field is missing, has the wrong shape, holds NaN (or an infinite value
        outside the bounds), or ``lb > ub``; the message names the field.
    """
    raw = _raw_fields(Path(path))
    if "c" not in raw:
        raise ValueError("c: missing field (the objective vector is required)")
    c = _vector(raw, "c", None)
    n = c.size
    lp: dict[str, np.ndarray | sp.csr_matrix | float] = {"c": c}
    for a_key, b_key in (("A_ub", "b_ub"), ("A_eq", "b_eq")):
        if a_key not in raw and b_key not in raw:
            lp[a_key], lp[b_key] = sp.csr_matrix((0, n)), np.zeros(0)
            continue
        for key, other in ((a_key, b_key), (b_key, a_key)):
            if key not in raw:
                raise ValueError(f"{key}: missing field ({other} is given)")
        A = _matrix(raw, a_key, n)
        lp[a_key], lp[b_key] = A, _vector(raw, b_key, A.shape[0])
    if "bounds" in raw and ("lb" in raw or "ub" in raw):
        raise ValueError("bounds: give either bounds or lb/ub, not both")
    if "bounds" in raw:
        bounds = np.asarray(raw["bounds"], dtype=float)
        if bounds.shape == (2,):
            bounds = np.tile(bounds, (n, 1))
        if bounds.shape != (n, 2):
            raise ValueError(f"bounds: expected shape ({n}, 2) or (2,), got {bounds.shape}")
        raw = {**raw, "lb": bounds[:, 0], "ub": bounds[:, 1]}
    lb = _vector(raw, "lb", n, allow_inf=True) if "lb" in raw else np.zeros(n)
    ub = _vector(raw, "ub", n, allow_inf=True) if "ub" in raw else np.full(n, np.inf)
    if (lb == np.inf).any() or (ub == -np.inf).any() or (lb > ub).any():
        i = int(np.flatnonzero((lb == np.inf) | (ub == -np.inf) | (lb > ub))[0])
        raise ValueError(f"lb, ub: empty bound interval [{lb[i]}, {ub[i]}] at index {i}")
    lp["lb"], lp["ub"] = lb, ub
    lp["c0"] = float(_vector(raw, "c0", 1)[0]) if "c0" in raw else 0.0
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field (expected some of {', '.join(_FIELDS)})")
    return lp


def load_matrix_lp(path: str | Path) -> cp.Problem:
    """Read an LP in matrix form (see :func:`read_matrix_lp`) as a CVXPY problem.

    The problem is ``minimize c'x + c0  s.t.  A_ub x <= b_ub,  A_eq x == b_eq,
    lb <= x <= ub`` with a single vector variable ``x`` (n,), whose bounds are given
    as the variable's ``bounds`` attribute (CVXPY passes them to the solvers as variable
    bounds; infinite entries mean no bound). Empty constraint blocks are left out.

    Parameters
    ----------
    path : str or Path
        A ``.npz`` or ``.mat`` file.

    Returns
    -------
    cvxpy.Problem
        The LP; ``problem.variables()[0]`` is ``x``.
    """
    lp = read_matrix_lp(path)
    x = cp.Variable(lp["c"].size, bounds=[lp["lb"], lp["ub"]], name="x")
    constraints = []
    if lp["A_ub"].shape[0]:
        constraints.append(lp["A_ub"] @ x <= lp["b_ub"])
    if lp["A_eq"].shape[0]:
        constraints.append(lp["A_eq"] @ x == lp["b_eq"])
    return cp.Problem(cp.Minimize(lp["c"] @ x + lp["c0"]), constraints)


# --------------------------------------------------------------------------- script


def magnitude_ranges(problem: cp.Problem) -> dict[str, tuple[float, float]]:
    """Smallest and largest nonzero magnitude of ``A`` (all constraint rows), ``b`` and
    ``c`` in the matrix form CVXPY hands the solvers."""
    lp = matrix_lp_data(problem)
    A = sp.vstack([lp["A_ub"], lp["A_eq"]]).tocsr()
    b = np.concatenate([lp["b_ub"], lp["b_eq"]])

    def span(x: np.ndarray) -> tuple[float, float]:
        x = np.abs(x[x != 0])
        return (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)

    return {"A": span(A.data), "b": span(b), "c": span(lp["c"])}


def _solve(problem: cp.Problem, solver: str) -> tuple[float, float]:
    start = time.perf_counter()
    problem.solve(solver=solver)
    return time.perf_counter() - start, problem.solver_stats.solve_time or float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=4, help="network nodes (default 4)")
    parser.add_argument("--hours", type=int, default=168, help="hourly snapshots (default 168)")
    parser.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    parser.add_argument("--solver", default="NABLAPROX", help="solver (default NABLAPROX)")
    parser.add_argument("--peer", default="HIGHS", help="reference solver (default HIGHS)")
    parser.add_argument("--matrix", type=Path, help="solve this .npz/.mat LP instead")
    parser.add_argument("--write-matrix", type=Path, help="also write the model's matrix form")
    args = parser.parse_args(argv)

    if args.matrix is not None:
        problem = load_matrix_lp(args.matrix)
        system, variables = None, None
        print(f"LP from {args.matrix}: {problem.size_metrics.num_scalar_variables} variables")
    else:
        system = generate_system(args.nodes, args.hours, args.seed)
        problem, variables = build_capacity_expansion(system)
        print(
            f"Capacity expansion: {system.nodes} nodes, {len(system.lines)} lines, "
            f"{system.hours} hours, {problem.size_metrics.num_scalar_variables} variables"
        )
        if args.write_matrix is not None:
            print(f"matrix form written to {save_matrix_lp(problem, args.write_matrix)}")
    for name, (lo, hi) in magnitude_ranges(problem).items():
        print(f"  |{name}| nonzeros in [{lo:.2e}, {hi:.2e}]")

    solvers = [args.solver] + ([args.peer] if args.peer != args.solver else [])
    header = f"{'solver':<10} {'status':<19} {'objective':>16} {'wall (s)':>9} {'solver (s)':>10}"
    print(f"\n{header}")
    values, plans = {}, {}
    for solver in solvers:
        if solver not in cp.installed_solvers():
            print(f"{solver:<10} not installed")
            continue
        try:
            wall, solve_time = _solve(problem, solver)
        except cp.SolverError as err:
            print(f"{solver:<10} failed: {err}")
            continue
        if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            print(f"{solver:<10} {problem.status:<19} {'-':>16} {wall:9.3f}")
            continue
        values[solver] = problem.value
        if variables is not None:
            plans[solver] = plan_summary(system, variables)
        row = f"{solver:<10} {problem.status:<19} {problem.value:16.8e} {wall:9.3f}"
        print(f"{row} {solve_time:10.3f}")
    if len(values) == 2:
        a, b = values.values()
        print(f"relative difference: {abs(a - b) / max(1.0, abs(b)):.2e}")
    if plans:
        print(f"\n{'plan':<26}" + "".join(f"{s:>14}" for s in plans))
        for key in next(iter(plans.values())):
            print(f"{key:<26}" + "".join(f"{p[key]:14.6g}" for p in plans.values()))


if __name__ == "__main__":
    main()
