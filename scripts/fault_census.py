"""Run a catalog of bad inputs through the estimator and count how each one is handled.

Every case is one way an input or an argument can be wrong, built from the bundled solar
example spectrum (the Sun, HARPS degraded to 4MOST HR, S/N 100) or from scratch. A case is
*handled* when the package

* rejects it with a documented exception (``ValueError``, ``TypeError``,
  ``astropy.units.UnitsError``, ``OSError`` from the command line) whose message names the
  problem, before any inference (``error``), or
* returns every row with one of the flags documented for that problem (and NaN where the row
  could not be inferred) (``flag``), or
* treats bad pixels as missing data, giving the same prepared spectrum as masking them would
  (``masked``), or
* gives a spectrum the same row whatever the other spectra, their order or the batch size
  (``check``: within 1e-3 posterior standard deviations).

Anything else counts as *not handled*: accepted without a telling flag, an undocumented
exception, or a message that does not say what is wrong. The last line gives the numbers::

    OMP_NUM_THREADS=1 python scripts/fault_census.py            # bundled default model
    OMP_NUM_THREADS=1 python scripts/fault_census.py --verbose  # also each case's outcome

The exit status is 0; with ``--strict`` it is 1 when a case is not handled.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty
from scipy.ndimage import binary_dilation, gaussian_filter1d
from specutils import Spectrum

from specutils_cinn import CINNParameterEstimator, cli
from specutils_cinn.flags import QualityFlag
from specutils_cinn.model import EMULATOR_FILENAME, CINNModel


class _Flags:
    """`QualityFlag` members by name; 0 for a flag that an older version lacks (so the census
    also runs against earlier versions of the package, for a before-and-after count)."""

    def __getattr__(self, name: str) -> int:
        return getattr(QualityFlag, name, 0)

    def __iter__(self):
        return iter(QualityFlag)


F = _Flags()
DOCUMENTED = (ValueError, TypeError, u.UnitsError, OSError)
#: Flags that explain a NaN row.
NAN_FLAGS = F.NO_OVERLAP | F.NO_VALID_DATA | F.OUTSIDE_TRAINING_RANGE


@dataclass
class Case:
    """One bad input: how to run it and what handling it needs."""

    name: str
    run: Callable[[], Any]
    #: "error": regex the message must match; "flag": flags of which each row needs one;
    #: "masked": a callable giving the masked equivalent to compare prepared spectra with;
    #: "check": ``run`` itself returns (handled, detail).
    kind: str
    expect: Any


@dataclass
class Outcome:
    handled: bool
    how: str  # "error", "flag", "masked" or "NOT HANDLED"
    detail: str


class Context:
    """The estimator, the solar example and helpers shared by the cases."""

    def __init__(self, model: str | None, n_samples: int) -> None:
        self.est = CINNParameterEstimator.from_pretrained(model, device="cpu")
        self.n_samples = n_samples
        ref = resources.files("specutils_cinn") / "data" / cli.EXAMPLE_SPECTRUM
        with resources.as_file(ref) as path:
            self.example = Path(path)
            self.sun = Spectrum.read(path, format="tabular-fits")
        self.flux = np.asarray(self.sun.flux.value, dtype=float)
        self.sigma = np.asarray(self.sun.uncertainty.array, dtype=float)
        self.mask = None if self.sun.mask is None else np.asarray(self.sun.mask, dtype=bool)
        self.wave = self.sun.spectral_axis
        self.unit = self.sun.flux.unit
        self.tmp = Path(tempfile.mkdtemp(prefix="fault-census-"))

    def spectrum(self, flux=None, sigma=None, *, unit=None, wave=None, mask="same",
                 unc_cls=StdDevUncertainty) -> Spectrum:
        flux = self.flux if flux is None else flux
        sigma = self.sigma if sigma is None else sigma
        mask = self.mask if isinstance(mask, str) else mask
        return Spectrum(flux=np.asarray(flux) * (unit or self.unit),
                        spectral_axis=self.wave if wave is None else wave,
                        uncertainty=None if sigma is False else unc_cls(sigma), mask=mask)

    def predict(self, spectra, **kw) -> Any:
        kw = {"n_samples": self.n_samples, "seed": 1, "progress": False, **kw}
        return self.est.predict(spectra, **kw)

    def prepare(self, spectra) -> Any:
        return self.est.prepare(spectra, medium="air")


def catalog(c: Context) -> list[Case]:
    rng = np.random.default_rng(15)
    n = c.flux.size
    # the example at S/N ~15 instead of ~100 (same uncertainties times 7, matching noise)
    low_flux = c.flux + np.nan_to_num(c.sigma) * np.sqrt(48.0) * rng.standard_normal(n)
    bad = rng.random(n) < 0.2
    garbage = np.where(bad, 0.0, c.flux)
    mask_bad = bad if c.mask is None else (bad | c.mask)
    smoothed = gaussian_filter1d(np.where(c.mask if c.mask is not None else False, 1.0, c.flux),
                                 3.7)  # R ~ 7000 instead of 20000
    wide_mask = None if c.mask is None else binary_dilation(c.mask, iterations=20)
    noise = rng.normal(size=n)
    level = float(np.nanmedian(c.flux))  # the example has NaN in its masked CCD gap
    wave_aa = c.wave.to_value(u.AA)

    def fits_without_wcs() -> Spectrum:
        path = c.tmp / "no_wcs.fits"
        hdu = fits.PrimaryHDU(c.flux.astype(np.float32))
        hdu.header["BUNIT"] = c.unit.to_string("fits")
        hdu.writeto(path, overwrite=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = Spectrum.read(path, format="wcs1d-fits")
        return c.predict(spec, snr=100.0)

    def corrupt_emulator() -> Any:
        src = c.est.model.source
        dst = c.tmp / "corrupt-model"
        shutil.copytree(src, dst, dirs_exist_ok=True)
        emu = dst / EMULATOR_FILENAME
        data = bytearray(emu.read_bytes())
        data[len(data) // 2] ^= 0xFF
        emu.write_bytes(bytes(data))
        return CINNParameterEstimator(CINNModel.load(dst), device="cpu")

    def cli_existing_output(command: str) -> Any:
        out = c.tmp / f"{command}.ecsv"
        out.write_text("earlier results\n")
        args = [command, "-o", str(out)]
        if command == "predict":
            args[1:1] = [str(c.example), "--format", "tabular-fits"]
        # the output must be checked before the model is loaded or anything is computed
        real = CINNParameterEstimator.from_pretrained

        def refuse(*args, **kwargs):
            raise RuntimeError("the model was loaded before the output path was checked")

        CINNParameterEstimator.from_pretrained = refuse
        try:
            rc = cli.main(args)
        finally:
            CINNParameterEstimator.from_pretrained = real
        if rc != 0 and out.read_text() == "earlier results\n":
            raise FileExistsError(f"exit status {rc}, file kept (--overwrite not given)")
        kept = out.read_text().startswith("earlier")
        return f"exit status {rc}, file {'kept' if kept else 'replaced'}"

    def no_work_then(kw: dict) -> Any:
        # arguments must be refused before anything is computed
        import specutils_cinn.estimator as est_module

        real = est_module.prepare_spectra

        def refuse(*args, **kwargs):
            raise RuntimeError("inference started before the arguments were checked")

        est_module.prepare_spectra = refuse
        try:
            return c.predict(c.sun, **kw)
        finally:
            est_module.prepare_spectra = real

    def batch_independence(how: str) -> tuple[bool, str]:
        # the Sun with 7 noisy copies: each row must not depend on the others
        spectra = [c.spectrum(c.flux + 0.5 * c.sigma * rng.normal(size=n)) for _ in range(8)]
        ref = c.predict(spectra)
        order = np.arange(8)
        if how == "shuffled":
            order = rng.permutation(8)
            other = c.predict([spectra[i] for i in order])
        elif how == "batch_size=3":
            other = c.predict(spectra, batch_size=3)
        else:  # each spectrum alone, and among hopeless spectra
            other = c.predict([spectra[2], c.spectrum(np.full(n, np.nan)), spectra[5]])
            order = np.array([2, -1, 5])
        keep = order >= 0
        worst = 0.0
        for p in c.est.parameters:
            diff = np.abs(other[p].value[keep] - ref[p].value[order[keep]])
            worst = max(worst, float(np.max(diff / ref[f"{p}_std"].value[order[keep]])))
        rows_ok = len(other) == len(order) and (how != "alone" or np.isnan(other["teff"][1]))
        return (worst < 1e-3 and rows_ok,
                f"largest change of a median: {worst:.1e} posterior std; {len(other)} rows")

    cases = [
        # --- bad pixels marked through the uncertainty: must count as missing data
        *[Case(f"bad pixels marked {name} = {value:g}",
               lambda cls=cls, good=good, value=value: c.spectrum(
                   garbage, np.where(bad, value, good), unc_cls=cls),
               "masked",
               lambda cls=cls, good=good: c.spectrum(garbage, good, mask=mask_bad, unc_cls=cls))
          for name, cls, good, value in [
              ("sigma", StdDevUncertainty, c.sigma, -1.0),
              ("sigma", StdDevUncertainty, c.sigma, 0.0),
              ("sigma", StdDevUncertainty, c.sigma, np.nan),
              ("variance", VarianceUncertainty, c.sigma**2, -1.0),
              ("ivar", InverseVariance, c.sigma**-2, 0.0),
              ("ivar", InverseVariance, c.sigma**-2, -1.0),
              ("ivar", InverseVariance, c.sigma**-2, np.inf)]],
        # --- spectra that cannot be used: NaN rows with a flag saying why
        Case("all-NaN flux", lambda: c.predict(c.spectrum(np.full(n, np.nan))), "flag",
             F.NO_VALID_DATA),
        Case("all-inf flux", lambda: c.predict(c.spectrum(np.full(n, np.inf))), "flag",
             F.NO_VALID_DATA),
        Case("all-zero flux", lambda: c.predict(c.spectrum(np.zeros(n))), "flag", F.NO_VALID_DATA),
        Case("negative flux", lambda: c.predict(c.spectrum(-c.flux)), "flag", F.NO_VALID_DATA),
        Case("every pixel masked", lambda: c.predict(c.spectrum(mask=np.ones(n, bool))), "flag",
             F.NO_VALID_DATA),
        Case("every uncertainty -1", lambda: c.predict(c.spectrum(sigma=np.full(n, -1.0))), "flag",
             F.NO_VALID_DATA),
        Case("2-pixel spectrum", lambda: c.predict(Spectrum(
            flux=[1.0, 1.0] * u.one, spectral_axis=[5500.0, 5500.1] * u.AA,
            uncertainty=StdDevUncertainty([0.01, 0.01]))), "flag", F.NO_VALID_DATA),
        Case("spectrum outside the model's range", lambda: c.predict(c.spectrum(
            wave=(wave_aa - 3000.0) * u.AA)), "flag", F.NO_OVERLAP),
        Case("radial velocity moves it out of range", lambda: c.predict(
            c.sun, radial_velocity=-2.0e5 * u.km / u.s), "flag", F.NO_OVERLAP | F.LOW_COVERAGE),
        Case("half the model's range covered", lambda: c.predict(c.spectrum(
            mask=(wave_aa > 5300.0) | (c.mask if c.mask is not None else False))), "flag",
             F.LOW_COVERAGE),
        # --- spectra that give an answer not to be trusted: a flag saying so
        Case("empty fiber (noise about zero)", lambda: c.predict(c.spectrum(
            0.01 * noise * level, np.full(n, 0.01 * level))), "flag",
             F.OUTSIDE_TRAINING_RANGE | F.LOW_SNR | F.NO_FEATURES | F.POOR_FIT | F.NO_VALID_DATA),
        Case("flat continuum with noise", lambda: c.predict(c.spectrum(
            level * (1 + 0.01 * noise), np.full(n, 0.01 * level))),
             "flag", F.NO_FEATURES | F.POOR_FIT | F.OUTSIDE_TRAINING_RANGE),
        Case("S/N 2 (uncertainties x50)", lambda: c.predict(c.spectrum(sigma=50 * c.sigma)),
             "flag", F.LOW_SNR),
        Case("S/N 10000 (uncertainties / 100)", lambda: c.predict(c.spectrum(sigma=c.sigma / 100)),
             "flag", F.HIGH_SNR),
        Case("uncertainties 10x too small (S/N 1000)", lambda: c.predict(c.spectrum(
            sigma=c.sigma / 10)), "flag", F.HIGH_SNR | F.POOR_FIT),
        Case("1e30 sentinel flux at 5 % of pixels, valid sigma", lambda: c.predict(c.spectrum(
            np.where(rng.random(n) < 0.05, 1e30, c.flux))), "flag",
             F.POOR_FIT | F.OUTSIDE_TRAINING_RANGE | F.NO_VALID_DATA),
        Case("cosmic rays: 0.5 % of pixels x100", lambda: c.predict(c.spectrum(
            np.where(rng.random(n) < 0.005, 100 * c.flux, c.flux))), "flag",
             F.POOR_FIT | F.OUTSIDE_TRAINING_RANGE),
        Case("vacuum wavelengths given as air", lambda: c.predict(c.spectrum(
            wave=(wave_aa * 1.000277) * u.AA)), "flag", F.POOR_FIT),
        Case("radial velocity of 100 km/s not corrected", lambda: c.predict(c.spectrum(
            wave=(wave_aa * (1 + 100 / 299792.458)) * u.AA)), "flag", F.POOR_FIT),
        Case("radial velocity of 100 km/s not corrected (S/N ~15)", lambda: c.predict(
            c.spectrum(low_flux, 7 * c.sigma, wave=(wave_aa * (1 + 100 / 299792.458)) * u.AA)),
             "flag", F.VELOCITY_OFFSET),
        Case("vacuum wavelengths given as air (S/N ~15)", lambda: c.predict(c.spectrum(
            low_flux, 7 * c.sigma, wave=(wave_aa * 1.000277) * u.AA)), "flag",
             F.VELOCITY_OFFSET),
        Case("resolving power 7000 instead of 20000 (S/N 100)", lambda: c.predict(c.spectrum(
            smoothed, mask=wide_mask)), "flag", F.POOR_FIT),
        Case("resolving power 7000 instead of 20000 (S/N 500)", lambda: c.predict(c.spectrum(
            smoothed, c.sigma / 5, mask=wide_mask)), "flag", F.POOR_FIT),
        # --- a row must be a function of its spectrum alone (model and seed fixed)
        Case("batch_size changes a row", lambda: batch_independence("batch_size=3"), "check",
             None),
        Case("shuffling the input changes a row", lambda: batch_independence("shuffled"),
             "check", None),
        Case("other spectra in the batch change a row", lambda: batch_independence("alone"),
             "check", None),
        # --- inputs that are not spectra of a usable kind: a documented exception
        Case("flux in kelvin", lambda: c.predict(c.spectrum(unit=u.K)), "error",
             r"flux unit 'K' is not a unit of flux"),
        Case("flux in magnitudes", lambda: c.predict(c.spectrum(unit=u.mag)), "error",
             r"flux unit 'mag' is not a unit of flux"),
        Case("flux in km/s", lambda: c.predict(c.spectrum(unit=u.km / u.s)), "error",
             r"flux unit 'km / s' is not a unit of flux"),
        Case("spectral axis in pixels", lambda: c.predict(c.spectrum(
            wave=np.arange(n) * u.pix)), "error", r"'pix'.*no wavelength solution"),
        Case("FITS file without wavelength solution", fits_without_wcs, "error",
             r"pixel numbers.*no wavelength solution"),
        Case("non-monotonic spectral axis", lambda: c.predict(c.spectrum(
            wave=np.concatenate([wave_aa[:100], wave_aa[101:102], wave_aa[100:101],
                                 wave_aa[102:]]) * u.AA)), "error",
             r"not strictly monotonic|strictly increasing or decreasing"),
        Case("no uncertainty and no snr", lambda: c.predict(c.spectrum(sigma=False)), "error",
             r"has no uncertainty"),
        Case("uncertainty in an incompatible unit", lambda: c.predict(c.spectrum(
            sigma=StdDevUncertainty(c.sigma * u.K).quantity, unc_cls=StdDevUncertainty)),
             "error", r"uncertainty unit|of uncertainty incompatible"),
        Case("mask of the wrong shape", lambda: c.predict(c.spectrum(mask=np.zeros(n - 1, bool))),
             "error", r"mask shape|shape"),
        Case("numpy array instead of a spectrum", lambda: c.predict(c.flux), "error",
             r"unsupported input type ndarray"),
        Case("empty list", lambda: c.predict([]), "error", r"no spectra given"),
        # --- bad arguments: refused before any work
        Case("seed 2**64", lambda: no_work_then({"seed": 2**64}), "error",
             r"seed must be an integer from 0 to 2\*\*63 - 1"),
        Case("negative seed", lambda: no_work_then({"seed": -1}), "error", r"seed must be"),
        Case("fit_chi2_threshold -1", lambda: no_work_then({"fit_chi2_threshold": -1.0}), "error",
             r"fit_chi2_threshold must be a positive finite number"),
        Case("batch_size 0", lambda: no_work_then({"batch_size": 0}), "error",
             r"batch_size must be a positive integer"),
        Case("n_samples 1", lambda: no_work_then({"n_samples": 1}), "error",
             r"n_samples must be an integer >= 2"),
        Case("quantile 1.5", lambda: no_work_then({"quantiles": (0.5, 1.5)}), "error",
             r"quantiles must be numbers in \(0, 1\)"),
        Case("device 'tpu'", lambda: no_work_then({"device": "tpu"}), "error", r"device"),
        Case("medium 'water'", lambda: c.predict(c.sun, medium="water"), "error",
             r"medium must be 'air' or 'vacuum'"),
        Case("snr -5", lambda: c.predict(c.spectrum(sigma=False), snr=-5.0), "error",
             r"snr must be finite and positive"),
        Case("radial velocity without unit", lambda: c.predict(c.sun, radial_velocity=30.0),
             "error", r"Quantity with velocity units"),
        Case("radial velocity faster than light", lambda: c.predict(
            c.sun, radial_velocity=4e5 * u.km / u.s), "error", r"slower than light"),
        Case("corrupt emulator file", corrupt_emulator, "error", r"SHA-256"),
        Case("CLI predict: output exists, no --overwrite", lambda: cli_existing_output("predict"),
             "error", r"file kept \(--overwrite not given\)"),
        Case("CLI demo -o: output exists, no --overwrite", lambda: cli_existing_output("demo"),
             "error", r"file kept \(--overwrite not given\)"),
    ]
    return cases


def _names(flags: int) -> str:
    return "|".join(f.name for f in F if f.value and int(flags) & f.value) or "0"


def _rows_flagged(table: Any, expected: int) -> tuple[bool, str]:
    flags = np.asarray(table["flags"])
    names = [_names(f) for f in flags]
    params = [c for c in table.colnames if f"{c}_std" in table.colnames]
    med = np.column_stack([np.asarray(table[p].value) for p in params])
    nan = np.isnan(med).any(axis=1)
    ok = bool(np.all(flags & expected)) and bool(np.all(flags[nan] & NAN_FLAGS))
    return ok, f"flags {', '.join(names)}" + (" (NaN row)" if nan.any() else "")


def evaluate(case: Case, c: Context) -> Outcome:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)
            result = case.run()
    except DOCUMENTED as exc:
        msg = f"{type(exc).__name__}: {exc}"
        if case.kind == "error" and re.search(case.expect, str(exc)):
            return Outcome(True, "error", msg)
        return Outcome(False, "NOT HANDLED", f"unexpected or unclear {msg}")
    except Exception as exc:  # an undocumented exception is a failure of its own
        return Outcome(False, "NOT HANDLED", f"undocumented {type(exc).__name__}: {exc}")
    if case.kind == "error":
        return Outcome(False, "NOT HANDLED", f"accepted: {str(result)[:80]!r}")
    if case.kind == "check":
        ok, detail = result
        return Outcome(ok, "check" if ok else "NOT HANDLED", detail)
    if case.kind == "masked":
        p, ref = c.prepare(result), c.prepare(case.expect())
        same = (np.array_equal(p.valid, ref.valid) and np.array_equal(p.flux, ref.flux)
                and np.array_equal(p.sigma, ref.sigma))
        detail = f"coverage {p.coverage[0]:.3f}, masked equivalent {ref.coverage[0]:.3f}"
        return Outcome(same, "masked" if same else "NOT HANDLED", detail)
    ok, detail = _rows_flagged(result, int(case.expect))
    if not ok:
        detail += f"; expected one of {_names(case.expect)}"
    return Outcome(ok, "flag" if ok else "NOT HANDLED", detail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model name or directory (default: bundled)")
    parser.add_argument("--n-samples", type=int, default=200)
    parser.add_argument("--verbose", action="store_true", help="print each case's details")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a case is not handled")
    args = parser.parse_args(argv)

    c = Context(args.model, args.n_samples)
    print(f"model {c.est.model.metadata.full_name}, {args.n_samples} draws per spectrum")
    cases = catalog(c)
    counts = {"error": 0, "flag": 0, "masked": 0, "check": 0, "NOT HANDLED": 0}
    width = max(len(k.name) for k in cases)
    try:
        for case in cases:
            out = evaluate(case, c)
            counts[out.how] += 1
            line = f"{case.name:<{width}}  {out.how:<11}"
            if args.verbose or not out.handled:
                line += f"  {out.detail[:160]}"
            print(line, flush=True)
    finally:
        shutil.rmtree(c.tmp, ignore_errors=True)
    handled = len(cases) - counts["NOT HANDLED"]
    print(f"\ninputs tried: {len(cases)}; handled: {handled} (documented exception "
          f"{counts['error']}, correct flag {counts['flag']}, treated as masked "
          f"{counts['masked']}, row independent of the batch {counts['check']}); "
          f"not handled: {counts['NOT HANDLED']}")
    return 1 if args.strict and counts["NOT HANDLED"] else 0


if __name__ == "__main__":
    sys.exit(main())
