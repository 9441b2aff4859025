"""Per-spectrum quality flags, and helpers that turn flag values into names."""

from __future__ import annotations

import enum
import textwrap
from typing import Any

import numpy as np

__all__ = ["RESOLUTION_TOLERANCE", "VELOCITY_TOLERANCE", "QualityFlag", "flag_names"]

#: Smallest residual velocity (km/s) after the shift to the rest frame that sets
#: ``VELOCITY_OFFSET`` (it must also exceed 3 standard deviations).
VELOCITY_TOLERANCE = 10.0

#: Largest relative difference between a spectrum's resolving power and the model's before
#: ``RESOLUTION_MISMATCH`` is set.
RESOLUTION_TOLERANCE = 0.2


class QualityFlag(enum.IntFlag):
    """Bit flags describing problems with one spectrum (one row of the results).

    Flags combine with ``|`` and are stored as plain integers in results tables; test
    one with ``flags & QualityFlag.LOW_COVERAGE``. Rows are never dropped: a spectrum
    that cannot be used at all still gets a row, with its flags set.

    `describe` explains a value in words and `flag_names` turns a column of values into
    names (``"PARAMETER_AT_EDGE|POOR_FIT"``).

    The flags are:

    ``NONE`` (0)
        No problem found.
    ``LOW_COVERAGE`` (1)
        Fewer than ``min_coverage`` of the model's grid pixels are valid after
        resampling, overall or in any one segment of the model's grid, such as a 4MOST HR
        arm (wavelength coverage, masks and NaNs all count; the pixels of the model's
        own pixel mask are left out of the count and of the total). Also set together
        with ``NO_OVERLAP`` and ``NO_VALID_DATA``, which imply a coverage of zero.
    ``NO_OVERLAP`` (2)
        After the shift to the rest frame, no input pixel lies inside any segment of
        the model's wavelength grid.
    ``NO_VALID_DATA`` (4)
        The input spectrum overlaps the model's grid but leaves no valid grid pixel:
        every input pixel within reach of the grid is NaN, infinite, masked, or has a
        non-positive or non-finite uncertainty; or the continuum fit failed on every
        grid segment (flux zero or negative); or the input is too short to cover a
        grid pixel. The row holds NaN.
    ``NOISE_ESTIMATED`` (8)
        The spectrum had no uncertainty and its noise was estimated from the flux with
        the DER_SNR algorithm (``snr="estimate"``). If the estimate failed (too few
        pixels, or noise-free data) the row has no valid pixel and also gets
        ``NO_VALID_DATA``.
    ``PARAMETER_AT_EDGE`` (16)
        Set by the estimator: a parameter's posterior median lies within 2 % of the
        model's training range from its edge, or beyond (then ``OUTSIDE_TRAINING_RANGE`` is
        set too).
    ``LOW_SNR`` (32)
        Set by the estimator: the spectrum's S/N is below the range the model was
        trained on.
    ``POOR_FIT`` (64)
        Set by the estimator for models that ship a spectrum emulator: the reduced
        chi-square ``fit_chi2`` of the input against the spectrum emulated at the posterior
        median exceeds the threshold (the model's ``chi2_threshold`` unless overridden).
        The posterior is then not trustworthy: the input is not a spectrum of the kind the
        model was trained on (other resolution, pure noise, a star outside the grid's
        physics or parameter range, bad data), or it is a real star whose spectrum differs
        from the LTE synthetic ones by more than the emulator's error floor plus the noise
        (common for real stars at high S/N; see ``fit_chi2`` in :ref:`output-table`).
    ``NO_FEATURES`` (128)
        Set by the estimator for models that ship a spectrum emulator: the spectrum emulated
        at the posterior median fits the input no better than a featureless continuum
        (``feature_sigma`` below 5). The input shows no detectable stellar absorption
        features: pure noise about a flat continuum, or a star too hot, too metal-poor or
        too noisy for its lines to be seen. (An empty fiber, divided by its own
        pseudo-continuum, is not flat; ``LOW_SNR``, ``PARAMETER_AT_EDGE`` and
        ``OUTSIDE_TRAINING_RANGE`` catch it.) The posterior then reflects the training
        prior, not the star.
    ``OUTSIDE_TRAINING_RANGE`` (256)
        Set by the estimator: a posterior median of a row that was inferred lies outside the
        model's training range of its parameter, or is not finite (``PARAMETER_AT_EDGE`` is
        set as well). The network extrapolates there; the value is not an estimate to trust
        (an empty fiber, for example, gets log g far above 5).
    ``HIGH_SNR`` (512)
        Set by the estimator: the spectrum's S/N is above the range the model was trained on
        (``metadata.snr_range``). The network never saw such small uncertainties; check the
        uncertainties (too small by a constant factor?) and compare ``fit_chi2``.
    ``RESOLUTION_MISMATCH`` (1024)
        Set by the estimator: the spectrum's ``meta["resolving_power"]`` (a number, or one per
        segment as `~specutils_cinn.instruments.degrade_spectrum` and the 4MOST readers
        write it) differs from the model's resolving power by more than
        ``RESOLUTION_TOLERANCE`` (20 %). Line depths and widths then differ from the training
        spectra in a way the network cannot know; degrade the spectrum to the model's setup
        first. Spectra without the entry are not checked.
    ``VELOCITY_OFFSET`` (2048)
        Set by the estimator for models with a spectrum emulator: after the shift to the
        rest frame, the spectrum still matches the emulated solar template best at a velocity
        more than ``VELOCITY_TOLERANCE`` (10 km/s) and 3 standard deviations from zero
        (`~specutils_cinn.rv.velocity_of_prepared`, searched over +-300 km/s). The radial
        velocity given (or not given) is wrong, or the wavelengths are in the other medium
        (vacuum read as air is +83 km/s): the parameters are not to be trusted. Estimate the
        velocity with ``specutils-cinn predict --radial-velocity estimate``.
    """

    NONE = 0
    LOW_COVERAGE = 1
    NO_OVERLAP = 2
    NO_VALID_DATA = 4
    NOISE_ESTIMATED = 8
    PARAMETER_AT_EDGE = 16
    LOW_SNR = 32
    POOR_FIT = 64
    NO_FEATURES = 128
    OUTSIDE_TRAINING_RANGE = 256
    HIGH_SNR = 512
    RESOLUTION_MISMATCH = 1024
    VELOCITY_OFFSET = 2048

    @classmethod
    def names(cls, value: int) -> list[str]:
        """Names of the flags set in ``value``, in bit order.

        Parameters
        ----------
        value : int
            A flag value, e.g. one entry of a results table's ``flags`` column.

        Returns
        -------
        list of str
            E.g. ``["PARAMETER_AT_EDGE", "POOR_FIT"]`` for 80; empty for 0. A bit this version
            does not define (written by a newer version) is named ``"BIT<n>"``, e.g.
            ``"BIT4096"``.

        Raises
        ------
        ValueError
            If ``value`` is negative or not an integer.
        """
        v = _check_value(value)
        by_bit = {int(member): name for name, member in cls.__members__.items()}
        out = []
        bit = 1
        while bit <= v:
            if v & bit:
                out.append(by_bit.get(bit, f"BIT{bit}"))
            bit <<= 1
        return out

    @classmethod
    def describe(cls, value: int, width: int | None = 79) -> str:
        """Explain a flag value in words, one line per flag set.

        Parameters
        ----------
        value : int
            A flag value, e.g. ``table["flags"][i]``.
        width : int or None, optional
            Wrap each explanation at this many characters (continuation lines indented);
            None leaves every explanation on one line.

        Returns
        -------
        str
            ``"NAME (bit): meaning"`` for each flag set, in bit order; ``"NONE (0): no
            problem found"`` for 0.

        Raises
        ------
        ValueError
            If ``value`` is negative or not an integer.

        Examples
        --------
        >>> from specutils_cinn import QualityFlag
        >>> print(QualityFlag.describe(80, width=None))  # doctest: +NORMALIZE_WHITESPACE
        PARAMETER_AT_EDGE (16): a posterior median lies within 2 % of the model's training
        range from its edge, or beyond
        POOR_FIT (64): the spectrum emulated at the posterior median does not reproduce the
        input (fit_chi2 above meta['FITTHR'])
        """
        v = _check_value(value)
        names = cls.names(v) or ["NONE"]
        lines = []
        for name in names:
            bit = int(cls[name]) if name in cls.__members__ else int(name.removeprefix("BIT"))
            text = f"{name} ({bit}): {_SHORT.get(name, 'not defined in this version')}"
            if width is not None:
                text = textwrap.fill(text, width=width, subsequent_indent="    ")
            lines.append(text)
        return "\n".join(lines)


#: One-line meaning of each flag (the class docstring has the full explanation).
_SHORT = {
    "NONE": "no problem found",
    "LOW_COVERAGE": "too few of the model's pixels have valid data, overall or in one segment",
    "NO_OVERLAP": "the spectrum does not overlap the model's wavelength range; no estimate",
    "NO_VALID_DATA": "no usable pixel in the model's range; no estimate",
    "NOISE_ESTIMATED": "no uncertainty given; the noise was estimated from the flux (DER_SNR)",
    "PARAMETER_AT_EDGE": "a posterior median lies within 2 % of the model's training range "
    "from its edge, or beyond",
    "LOW_SNR": "the S/N is below the range the model was trained on",
    "POOR_FIT": "the spectrum emulated at the posterior median does not reproduce the input "
    "(fit_chi2 above meta['FITTHR'])",
    "NO_FEATURES": "no detectable stellar features; the posterior reflects the training prior",
    "OUTSIDE_TRAINING_RANGE": "a posterior median lies outside the model's training range (or "
    "is not finite): an extrapolation, not an estimate",
    "HIGH_SNR": "the S/N is above the range the model was trained on; check the uncertainties",
    "RESOLUTION_MISMATCH": "the spectrum's resolving power differs from the model's by more "
    "than RESOLUTION_TOLERANCE",
    "VELOCITY_OFFSET": "the rest-frame spectrum is shifted against the model by more than "
    "VELOCITY_TOLERANCE: an uncorrected radial velocity, or vacuum wavelengths read as air",
}


def _check_value(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"a flag value must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"a flag value must be a non-negative integer, got {value!r}")
    return int(value)


def flag_names(flags: Any, sep: str = "|") -> str | np.ndarray:
    """Names of the flags set, for one value or a whole ``flags`` column.

    Parameters
    ----------
    flags : int or array-like of int
        A flag value or values, e.g. ``table["flags"]``; masked entries give ``""``.
    sep : str, optional
        Separator between names.

    Returns
    -------
    str or numpy.ndarray of str
        For a scalar, e.g. ``"PARAMETER_AT_EDGE|POOR_FIT"`` (``""`` for 0); for an array, an
        array of such strings of the same shape (add it to a table as a column, or select
        rows with ``np.char.find(names, "POOR_FIT") >= 0``; testing a bit,
        ``table["flags"] & QualityFlag.POOR_FIT``, is faster).

    Raises
    ------
    ValueError
        If a value is negative or not an integer.

    Examples
    --------
    >>> from specutils_cinn.flags import flag_names
    >>> flag_names(80)
    'PARAMETER_AT_EDGE|POOR_FIT'
    >>> flag_names([0, 8, 96]).tolist()
    ['', 'NOISE_ESTIMATED', 'LOW_SNR|POOR_FIT']
    """
    if np.ndim(flags) == 0:
        return "" if np.ma.is_masked(flags) else sep.join(QualityFlag.names(_scalar(flags)))
    arr = np.ma.asanyarray(flags)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype="<U1")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"flag values must be integers, got dtype {arr.dtype}")
    mask = np.ma.getmaskarray(arr)
    data = np.ma.getdata(arr)
    cache: dict[int, str] = {}
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        if mask[idx]:
            out[idx] = ""
            continue
        v = int(data[idx])
        if v not in cache:
            cache[v] = sep.join(QualityFlag.names(v))
        out[idx] = cache[v]
    return out.astype(str)


def _scalar(value: Any) -> int:
    if isinstance(value, np.ndarray):
        value = value.item()
    return _check_value(value)
