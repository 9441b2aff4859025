"""A quick estimate of how strong each atomic line is in a given star (no radiative transfer).

Used to choose which lines matter before running Turbospectrum: the candidates of the solar
log gf calibration (:mod:`specutils_cinn.synthesis.loggf`) and per-star pruning of lines too
weak to change a spectrum.

The index is the logarithm of the line-center opacity of a line relative to hydrogen, up to a
constant that depends on the star but not on the line, evaluated at one representative layer
(temperature ``T = temperature_factor * Teff``, electron pressure from log g and [M/H])::

    S = log gf + A(X) + log f_ion(T, Pe) - log U_ion(T) - 5040 chi_low / T + log lambda

``A(X)`` is the element's abundance (log eps), ``f_ion`` the fraction of the element in the
line's ionization stage from the Saha equation, ``U_ion`` its partition function and ``chi_low``
the excitation energy of the lower level (eV). Partition functions and ionization energies come
from Turbospectrum's own ``DATA/IRWIN_atoms_v07.3.dat`` (``log U = sum_i a_i (ln T)^i``), so the
index uses the same atomic data as the synthesis. Molecules get no index (NaN).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.utils.decorators import deprecated

__all__ = ["IrwinAtoms", "line_strength_index"]

#: log10 of (2 pi m_e k / h^2)^(3/2) k in cgs, the constant of Gray's Saha equation
#: ``log(N1 Pe / N0) = log(2 U1 / U0) + 2.5 log T - 5040 chi / T - 0.1762``.
_SAHA_CONST = -0.1762


class IrwinAtoms:
    """Partition functions and ionization energies of atoms from Turbospectrum's Irwin table.

    Parameters
    ----------
    path : path-like
        ``IRWIN_atoms_v07.3.dat`` in Turbospectrum's ``DATA`` folder.

    Attributes
    ----------
    ionization_energy : dict of (int, int) to float
        Energy (eV) to reach ionization stage ``stage`` (0 = neutral) of element ``z``, keyed
        by ``(z, stage)``. The British spelling ``ionisation_energy`` is a deprecated alias
        of it for this release.
    coeff : dict of (int, int) to numpy.ndarray
        Coefficients ``a_i`` of ``log U = sum_i a_i (ln T)^i``, keyed by ``(z, stage)``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.coeff: dict[tuple[int, int], np.ndarray] = {}
        self.ionization_energy: dict[tuple[int, int], float] = {}
        for raw in Path(path).read_text().splitlines():
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            head, _, rest = raw.partition("'")
            _, _, tail = rest.partition("'")
            code = float(head.split()[1])
            fields = tail.replace("D", "E").replace("d", "e").split()
            z, stage = int(code), int(round((code - int(code)) * 100))  # stage 0 = neutral
            self.ionization_energy[(z, stage)] = float(fields[0])  # energy to reach this stage
            self.coeff[(z, stage)] = np.array([float(v) for v in fields[2:2 + int(fields[1])]])

    @property
    @deprecated("0.1", alternative="ionization_energy", obj_type="attribute")
    def ionisation_energy(self) -> dict[tuple[int, int], float]:
        """The same as ``ionization_energy`` (British spelling; goes away in the next release)."""
        return self.ionization_energy

    @ionisation_energy.setter
    @deprecated("0.1", alternative="ionization_energy", obj_type="attribute")
    def ionisation_energy(self, value: dict[tuple[int, int], float]) -> None:
        self.ionization_energy = value

    def log_partition(self, z: int, stage: int, temperature: float) -> float:
        """log10 of the partition function of element ``z`` in ``stage`` (0 = neutral)."""
        a = self.coeff.get((z, stage))
        if a is None:
            return 0.0
        lt = np.log(temperature)
        return float(np.sum(a * lt ** np.arange(a.size)))

    def stage_fractions(self, z: int, temperature: float, log_pe: float) -> np.ndarray:
        """Fractions of element ``z`` in stages 0, 1, 2 (neutral, singly, doubly ionized)."""
        logs = [0.0]
        for stage in (1, 2):
            chi = self.ionization_energy.get((z, stage))
            if chi is None or chi <= 0:
                logs.append(-np.inf)
                continue
            lu0 = self.log_partition(z, stage - 1, temperature)
            lu1 = self.log_partition(z, stage, temperature)
            ratio = (np.log10(2.0) + lu1 - lu0 + 2.5 * np.log10(temperature)
                     - 5040.0 * chi / temperature + _SAHA_CONST - log_pe)
            logs.append(logs[-1] + ratio)
        n = 10.0 ** (np.array(logs) - np.max(logs))
        return n / n.sum()


def line_strength_index(lines: np.ndarray, *, teff: float, logg: float, m_h: float,
                        abundances: dict[int, float], atoms: IrwinAtoms,
                        temperature_factor: float = 0.9) -> np.ndarray:
    """Line-strength index ``S`` (see the module docstring) of each line in one star.

    Parameters
    ----------
    lines : numpy.ndarray
        Records with the fields of :data:`~specutils_cinn.synthesis.linelists.TS_DTYPE`
        (``wavelength``, ``element``, ``ion`` with 1 = neutral, ``chi``, ``loggf``).
    teff, logg, m_h : float
        The star: effective temperature (K), log g (cgs) and metallicity of the atmosphere.
    abundances : dict of int to float
        Absolute abundance log eps of each element (Z) in the star.
    atoms : IrwinAtoms
        Partition functions and ionization energies.
    temperature_factor : float
        Layer temperature in units of Teff.

    Returns
    -------
    numpy.ndarray
        ``S`` per line (float64); NaN for molecules, elements without an abundance, or
        ionization stages above 3.
    """
    t = temperature_factor * float(teff)
    log_pe = 1.0 + 0.5 * (float(logg) - 4.44) + 0.5 * float(m_h)
    out = np.full(lines.size, np.nan)
    elem, ion = lines["element"], lines["ion"]
    for z in np.unique(elem[(elem > 0) & (elem < 100)]):
        if int(z) not in abundances:
            continue
        frac = atoms.stage_fractions(int(z), t, log_pe)
        for stage in (0, 1, 2):
            sel = (elem == z) & (ion == stage + 1)
            if not sel.any() or frac[stage] <= 0:
                continue
            out[sel] = (lines["loggf"][sel] + abundances[int(z)] + np.log10(frac[stage])
                        - atoms.log_partition(int(z), stage, t)
                        - 5040.0 * lines["chi"][sel] / t + np.log10(lines["wavelength"][sel]))
    return out
