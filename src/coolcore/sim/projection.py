"""The 3-D cluster model seen along a box axis: a projected emissivity map.

:func:`render_projection` integrates the emissivity of a
:class:`coolcore.sim.population.ClusterModel` along one axis of the simulation box
onto a square map (erg s^-1 cm^-2): the smooth, ellipsoidally stratified gas through
its 1-D projected profile (:func:`projected_profile`), minus the cavities' chords,
plus the clumps' analytic projections, times the 2-D sloshing and fluctuation
fields.  The numerical design is described in ``docs/simulator.md``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from coolcore.errors import UsageError
from coolcore.sim import physics as ph
from coolcore.sim.population import Cavity, Clump, ClusterModel, Sloshing

__all__ = [
    "AXES",
    "CLUMP_WINDOW",
    "PLANE_PERMUTATION",
    "SUBSAMPLE",
    "projected_profile",
    "render_projection",
    "sample_coordinates",
]

AXES: tuple[str, str, str] = ("x", "y", "z")
"""Projection axes of the simulation box."""

PLANE_PERMUTATION: dict[str, tuple[int, int, int]] = {
    "x": (1, 2, 0),
    "y": (2, 0, 1),
    "z": (0, 1, 2),
}
"""Box coordinates (image u, image v, line of sight) for each projection axis."""

SUBSAMPLE = 2
"""Each pixel is the mean of SUBSAMPLE x SUBSAMPLE point samples inside it."""

_LN_R_GRID = np.linspace(np.log(1e-3), np.log(1e5), 513)  # kpc, for S(R)
_T_GRID = np.linspace(0.0, 1.0, 401)  # fraction of asinh(z_max / R)
_Z_MAX_KPC = 1e5
CLUMP_WINDOW = 46.0  # clumps are drawn where m < 46, i.e. above 1e-5 of their peak
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)


# ---------------------------------------------------------------------- projection


def projected_profile(model: ClusterModel) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The smooth gas's line-of-sight integral for a spherical stratification.

    Returns ``(ln R, ln S)`` on a fixed log grid from 1e-3 to 1e5 kpc, where
    ``S(R) = 2 int_0^zmax eps(sqrt(R^2 + z^2)) dz`` in erg s^-1 cm^-2 (z_max = 100 Mpc),
    integrated by the trapezoid rule in ``t`` with ``z = R sinh t`` (400 intervals).
    """
    R = np.exp(_LN_R_GRID)[:, None]
    t = _T_GRID[None, :] * np.arcsinh(_Z_MAX_KPC / R)
    r = R * np.cosh(t)
    integrand = model.emissivity_1d(r) * r  # dz = R cosh t dt = r dt
    S = 2.0 * np.trapezoid(integrand, t, axis=1) * ph.KPC_CM
    return _LN_R_GRID, np.log(np.maximum(S, 1e-300))


def _projected_form(q: NDArray[np.float64], axis: str) -> tuple[NDArray[np.float64], float]:
    """2x2 projected quadratic form (Schur complement) and Q_ll along ``axis``."""
    p = PLANE_PERMUTATION[axis]
    qp = q[np.ix_(p, p)]
    q_ll = float(qp[2, 2])
    form = qp[:2, :2] - np.outer(qp[:2, 2], qp[:2, 2]) / q_ll
    return form, q_ll


def sample_coordinates(size: int, fov_kpc: float, subsample: int = SUBSAMPLE) -> NDArray:
    """Plane coordinates (kpc) of the point samples along one image axis.

    Pixel ``j`` is centred on ``(j - size // 2) * pixel_kpc``: the cluster centre lies
    at the centre of pixel ``(size // 2, size // 2)``.  Its samples sit at offsets
    ``((k + 0.5) / subsample - 0.5) * pixel_kpc``, ``k = 0 .. subsample - 1``.
    """
    pix = fov_kpc / size
    j = np.arange(size)[:, None]
    k = np.arange(subsample)[None, :]
    return (((j - size // 2) + (k + 0.5) / subsample - 0.5) * pix).ravel()


def _sloshing_field(s: Sloshing, axis: str, u: NDArray, v: NDArray) -> NDArray[np.float64]:
    los = np.zeros(3)
    los[PLANE_PERMUTATION[axis][2]] = 1.0
    amp = s.amplitude * (0.3 + 0.7 * abs(float(s.normal @ los)))
    R = np.hypot(u, v)
    phi = np.arctan2(v, u)
    psi = s.chirality * phi - 2.0 * np.pi * R / s.pitch_kpc - s.phase
    delta = 0.8
    saw = np.arctan2(delta * np.sin(psi), 1.0 - delta * np.cos(psi)) / np.arcsin(delta)
    env = (1.0 - np.exp(-((R / s.r_in_kpc) ** 2))) * np.exp(-((R / s.r_out_kpc) ** 2))
    return 1.0 + amp * env * saw


def _fluctuation_field(
    model: ClusterModel, axis: str, n: int, spacing_kpc: float
) -> NDArray[np.float64]:
    """Log-normal multiplicative field, rms ``fluct_rms``, Kolmogorov-like spectrum."""
    rng = np.random.default_rng([model.noise_seed, AXES.index(axis)])
    white = rng.standard_normal((n, n))
    kx = np.fft.fftfreq(n, spacing_kpc)
    ky = np.fft.rfftfreq(n, spacing_kpc)
    k2 = kx[:, None] ** 2 + ky[None, :] ** 2
    k_inj = 1.0 / model.fluct_scale_kpc
    k_cut = 1.0 / (4.0 * spacing_kpc)
    amp = (k2 + k_inj**2) ** (-11.0 / 12.0) * np.exp(-k2 / k_cut**2)
    g = np.fft.irfft2(np.fft.rfft2(white) * amp, s=(n, n))
    g = (g - g.mean()) / max(g.std(), 1e-300)
    sig = model.fluct_rms
    return np.exp(sig * g - 0.5 * sig**2)


def render_projection(
    model: ClusterModel,
    axis: str,
    size: int = 256,
    fov_kpc: float = 1000.0,
    *,
    disturbances: bool = True,
    profile: tuple[NDArray, NDArray] | None = None,
    subsample: int = SUBSAMPLE,
) -> NDArray[np.float64]:
    """Emissivity integrated along ``axis`` on a ``size`` x ``size`` map (erg s^-1 cm^-2).

    The smooth gas is ellipsoidally stratified, so its projection is elliptically
    stratified: ``S(m_p) / sqrt(Q_ll)`` with ``m_p^2 = p^T P p``, ``P`` the Schur
    complement of the line-of-sight element of ``Q`` and ``S`` the 1-D projected
    profile (:func:`projected_profile`, interpolated linearly in log-log).  Cavities
    subtract ``fill`` times their chord integrals (16-point Gauss-Legendre), and
    clumps add their analytic projections; these are point-sampled and each pixel is
    the mean of its ``subsample``^2 samples.  The 2-D multiplicative fields (sloshing
    spiral, fluctuations) are then evaluated at pixel centres and multiply the gas
    (not the clumps).  Row ``i``, column ``j`` holds the plane coordinates
    ``(u_j, v_i)`` of :func:`sample_coordinates`.

    With ``disturbances=False`` the cavities and the 2-D fields are left out: only the
    smooth gas and the clumps are drawn.
    """
    if axis not in AXES:
        raise UsageError(f"axis: {axis!r} is not one of {AXES}")
    ln_r, ln_s = projected_profile(model) if profile is None else profile
    c = sample_coordinates(size, fov_kpc, subsample)
    u = c[None, :]
    v = c[:, None]
    form, q_ll = _projected_form(model.shape_matrix, axis)
    m2 = form[0, 0] * u**2 + 2.0 * form[0, 1] * u * v + form[1, 1] * v**2
    ln_m = 0.5 * np.log(np.maximum(m2, np.exp(2.0 * ln_r[0])))
    gas = np.exp(np.interp(ln_m, ln_r, ln_s)) / np.sqrt(q_ll)
    if disturbances:
        for cav in model.cavities:
            _subtract_cavity(gas, model, cav, axis, c)
    clumps = np.zeros_like(gas)
    for cl in model.clumps:
        _add_clump(clumps, cl, axis, c)

    def to_pixels(a: NDArray[np.float64]) -> NDArray[np.float64]:
        return a.reshape(size, subsample, size, subsample).mean(axis=(1, 3))

    image = to_pixels(gas)
    if disturbances:
        cp = sample_coordinates(size, fov_kpc, 1)
        if model.sloshing is not None:
            image *= _sloshing_field(model.sloshing, axis, cp[None, :], cp[:, None])
        if model.fluct_rms > 0:
            image *= _fluctuation_field(model, axis, size, fov_kpc / size)
    return image + to_pixels(clumps)


def _window(c: NDArray, center: float, half_width: float) -> slice:
    """Index range of the sorted coordinates ``c`` within ``center +- half_width``."""
    lo = np.searchsorted(c, center - half_width, side="left")
    hi = np.searchsorted(c, center + half_width, side="right")
    return slice(int(lo), int(hi))


def _add_clump(out: NDArray[np.float64], cl: Clump, axis: str, c: NDArray) -> None:
    """Add a clump's analytic projection to ``out`` (rows v, columns u), in place.

    It is evaluated inside the ellipse ``m < CLUMP_WINDOW`` only, where it has fallen
    to ``CLUMP_WINDOW^-3`` (1e-5) of its peak.
    """
    perm = PLANE_PERMUTATION[axis]
    f, ql = _projected_form(cl.shape_matrix, axis)
    inv = np.linalg.inv(f)
    cu, cv = cl.center_kpc[perm[0]], cl.center_kpc[perm[1]]
    su = _window(c, cu, CLUMP_WINDOW * np.sqrt(inv[0, 0]))
    sv = _window(c, cv, CLUMP_WINDOW * np.sqrt(inv[1, 1]))
    du = c[su][None, :] - cu
    dv = c[sv][:, None] - cv
    x = 1.0 + f[0, 0] * du**2 + 2.0 * f[0, 1] * du * dv + f[1, 1] * dv**2
    peak = cl.amplitude * (np.pi / 2.0) / np.sqrt(ql) * ph.KPC_CM
    out[sv, su] += peak / (x * np.sqrt(x))


def _subtract_cavity(
    gas: NDArray[np.float64], model: ClusterModel, cav: Cavity, axis: str, c: NDArray
) -> None:
    """Remove ``fill`` of the emission along each chord through the bubble, in place.

    The chord integral of the smooth-gas emissivity uses 16-point Gauss-Legendre.
    """
    p = PLANE_PERMUTATION[axis]
    cu, cv, cl = cav.center_kpc[list(p)]
    su = _window(c, cu, cav.radius_kpc)
    sv = _window(c, cv, cav.radius_kpc)
    uu, vv = np.meshgrid(c[su], c[sv])
    rho2 = (uu - cu) ** 2 + (vv - cv) ** 2
    inside = rho2 < cav.radius_kpc**2
    if not inside.any():
        return
    half = np.sqrt(cav.radius_kpc**2 - rho2[inside])
    z = cl + half[:, None] * _GL_NODES[None, :]
    pts = np.empty(z.shape + (3,))
    pts[..., p[0]] = uu[inside][:, None]
    pts[..., p[1]] = vv[inside][:, None]
    pts[..., p[2]] = z
    m = np.sqrt(np.einsum("...i,ij,...j->...", pts, model.shape_matrix, pts))
    chord = (model.emissivity_1d(m) * _GL_WEIGHTS).sum(axis=1) * half
    block = gas[sv, su]
    block[inside] -= cav.fill * chord * ph.KPC_CM
    gas[sv, su] = block
