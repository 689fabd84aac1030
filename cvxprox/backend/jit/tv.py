"""The exact proximal operator of 1-D total variation, compiled.

For y in R^N and lam >= 0 the kernel computes

    x = argmin_x  1/2 ||x - y||^2 + lam sum_{k<N-1} |x_{k+1} - x_k|

with the direct method of Condat ("A direct algorithm for 1D total variation
denoising", IEEE Signal Processing Letters 20(11), 2013), derived here from the
optimality conditions. With D the forward difference, x is optimal if and only if
x = y - D'u for a u in R^(N-1) with u_k in lam d|.|((Dx)_k). Writing
u_{-1} = u_{N-1} = 0, (D'u)_k = u_{k-1} - u_k, so the conditions read

    u_k = u_{k-1} + x_k - y_k,   u_{-1} = 0,   u_{N-1} = 0,   |u_k| <= lam,
    u_k = +lam where x_{k+1} > x_k,   u_k = -lam where x_{k+1} < x_k.

x is piecewise constant. On a segment that starts at k0 with incoming u_{k0-1} = a
(0 at the left end, -lam after a jump down, +lam after a jump up) and has the value v,
u_k(v) = a + sum_{j=k0..k} (v - y_j) increases with v. The values v that keep
|u_j(v)| <= lam on k0..k form an interval [vmin, vmax]; the method walks forward and
keeps its ends together with umin = u_k(vmin), umax = u_k(vmax), and the last indices
k- and k+ where u(vmin) = -lam and u(vmax) = +lam. Adding the point k + 1:

* if umin + (vmin - y_{k+1}) > lam, no v of the segment keeps u_{k+1} <= lam: the segment
  ends at k- with the value vmin and the signal jumps down (u_{k-} = -lam); the next
  segment starts at k- + 1 with a = -lam;
* symmetrically, if umax + (vmax - y_{k+1}) < -lam, it ends at k+ with the value vmax,
  jumps up, and the next segment starts at k+ + 1 with a = +lam;
* otherwise the point joins the segment; if u_{k+1}(vmin) <= -lam, vmin rises by
  (-lam - u_{k+1}(vmin)) / (k + 2 - k0) so that it equals -lam (k- = k + 1), and
  symmetrically for vmax (k+ = k + 1). Ties move k- and k+ as well: on a flat stretch
  u(vmin) stays at -lam, and a k- left behind would make the next jump re-walk it.

The ties must hold in floating point too. A segment that starts after a jump down on a
run of equal entries y_j = c has vmin = c and u(vmin) = -lam at every point of the run;
computed as (y_{k0} - lam) - a and (umin + vmin) - y_{k+1}, vmin and the step differ
from c and 0 by an ulp, u(vmin) creeps above -lam, k- stays at k0, and every jump
re-walks the rest of the run: time quadratic in the run length. So the start values are
y_{k0} - (lam + a) and y_{k0} + (lam - a), where lam + a and lam - a are 0 or 2 lam
exactly, and the step is u + (v - y_{k+1}), which adds an exact 0 when v = y_{k+1}.
On a run that a segment starts, vmin <= c <= vmax holds at its first point and the
updates keep it (each moves vmin or vmax by at most its rounded distance to c divided
by the length >= 2), so u(vmin) <= -lam <= lam <= u(vmax) after every rounded step and
k- and k+ advance at every point of the run.

At the right end u_{N-1}(v) = 0 picks the value: v = vmin - umin / (N - k0) when
umin <= 0 <= umax; when umin > 0 (umax < 0) no value of [vmin, vmax] reaches 0, and the
segment ends at k- with vmin (at k+ with vmax) as in the first (second) case above.
Each segment start is after the previous one, so the method ends; points after a
segment's end are walked again, which keeps the cost O(N) on typical data (O(N^2) in
contrived worst cases). The kernel returns the number of points it walked, the measure
of that cost.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def tv1d_prox(y: np.ndarray, lam: float, out: np.ndarray) -> int:
    """Write argmin_x 1/2 ||x - y||^2 + lam sum_k |x_{k+1} - x_k| into ``out``.

    ``y`` and ``out`` are float64 arrays of the same length N, ``lam >= 0`` finite.
    ``out`` may be ``y`` itself: every entry written lies before every entry still to be
    read. When the constant mean(y) is optimal (every |u_k| = |sum_{j<=k} (mean - y_j)|
    is at most lam), it is returned as it is, without the round-off of the walk.
    Returns the number of points the walk tested (0 when it did not run): N plus the
    re-walks after jumps.
    """
    n = y.shape[0]
    if n == 0:
        return 0
    if not lam > 0.0 or n == 1:
        for i in range(n):
            out[i] = y[i]
        return 0
    total = 0.0
    for i in range(n):
        total += y[i]
    mean = total / n
    u = 0.0
    flat = True
    for i in range(n - 1):
        u += mean - y[i]
        if abs(u) > lam:
            flat = False
            break
    if flat:
        for i in range(n):
            out[i] = mean
        return 0
    k0 = 0
    a = 0.0
    walked = 0
    while True:
        vmin = y[k0] - (lam + a)
        vmax = y[k0] + (lam - a)
        umin = -lam
        umax = lam
        kminus = k0
        kplus = k0
        k = k0
        jumped = False
        while k < n - 1:
            walked += 1
            yk = y[k + 1]
            umin_next = umin + (vmin - yk)
            umax_next = umax + (vmax - yk)
            if umin_next > lam:
                # Jump down after k-.
                for i in range(k0, kminus + 1):
                    out[i] = vmin
                k0 = kminus + 1
                a = -lam
                jumped = True
                break
            if umax_next < -lam:
                # Jump up after k+.
                for i in range(k0, kplus + 1):
                    out[i] = vmax
                k0 = kplus + 1
                a = lam
                jumped = True
                break
            k += 1
            length = k - k0 + 1
            umin = umin_next
            umax = umax_next
            if umin <= -lam:
                vmin += (-lam - umin) / length
                umin = -lam
                kminus = k
            if umax >= lam:
                vmax -= (umax - lam) / length
                umax = lam
                kplus = k
        if jumped:
            continue
        # The right end: u_{N-1} = 0.
        if umin > 0.0:
            for i in range(k0, kminus + 1):
                out[i] = vmin
            k0 = kminus + 1
            a = -lam
            continue
        if umax < 0.0:
            for i in range(k0, kplus + 1):
                out[i] = vmax
            k0 = kplus + 1
            a = lam
            continue
        v = vmin - umin / (n - k0)
        for i in range(k0, n):
            out[i] = v
        return walked
