"""Per-spectrum quality flags."""

from __future__ import annotations

import enum

__all__ = ["RESOLUTION_TOLERANCE", "VELOCITY_TOLERANCE", "QualityFlag"]

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

    The flags are:

    ``NONE`` (0)
        No problem found.
    ``LOW_COVERAGE`` (1)
        Fewer than ``min_coverage`` of the model's grid pixels are valid after
        resampling (wavelength coverage, masks and NaNs all count). Also set together
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
        too noisy for its lines to be seen. (An empty fibre, divided by its own
        pseudo-continuum, is not flat; ``LOW_SNR``, ``PARAMETER_AT_EDGE`` and
        ``OUTSIDE_TRAINING_RANGE`` catch it.) The posterior then reflects the training
        prior, not the star.
    ``OUTSIDE_TRAINING_RANGE`` (256)
        Set by the estimator: a posterior median of a row that was inferred lies outside the
        model's training range of its parameter, or is not finite (``PARAMETER_AT_EDGE`` is
        set as well). The network extrapolates there; the value is not an estimate to trust
        (an empty fibre, for example, gets log g far above 5).
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
