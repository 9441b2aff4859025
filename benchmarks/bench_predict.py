"""Throughput of CINNParameterEstimator.predict against a naive baseline, in one run.

``predict`` prepares all spectra at once (vectorized resampling and normalization), computes the
conditioning features once per spectrum, reuses the conditioning term of every coupling subnet
for all draws, and computes quantiles on the device.

The naive baseline is the usual per-object loop: one spectrum at a time, its input prepared on
its own, the conditioning network evaluated once per posterior draw (the spectrum repeated
``n_samples`` times, as ``cinn(z, c=cond_net(x.repeat(n_samples)))`` does), the plain reverse
pass, and quantiles with numpy on the host. It is timed on fewer spectra (it is slow) and
reported per spectrum.

For a model that ships a spectrum emulator, ``predict`` also runs the goodness-of-fit check
(``fit_chi2``: one emulator pass, rotation and a continuum-matched chi-square per spectrum). Its
cost is measured against the same model with the emulator removed, in the same run. For a model
with a posterior calibration, its cost is measured against ``predict(..., calibrated=False)``.

``--bfloat16`` also times the model with ``set_sampling_precision("bfloat16")`` (the flow's
hidden layers in bfloat16; every other column is float32 on any hardware), in the same run.
``--compile`` also times the same model with ``compile_sampling()`` (the flow's reverse pass
compiled with ``torch.compile``), in the same run; the compilation itself (the first call) is
reported separately.

``--rst PATH`` also writes the rows of every model as a reStructuredText table, headed by a
comment with the command, the date, the hardware and the load average (the table of
``docs/models.rst``, *Throughput*, is ``docs/models/bench_predict.rst``).

Usage::

    python benchmarks/bench_predict.py [--model 4most-hr [4most-lr ...]] [--device cpu|cuda|auto]
        [--n-spectra 256] [--n-naive 8] [--rst docs/models/bench_predict.rst]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.devices import resolve_device
from specutils_cinn.flows.conditioning import encode_inputs
from specutils_cinn.inputs import prepare_spectra
from specutils_cinn.model import CINNModel
from specutils_cinn.validation.rst import simple_table


def make_spectra(est: CINNParameterEstimator, n: int, seed: int = 0) -> Spectrum:
    """n noisy spectra (S/N ~ 50 per pixel) on the model grid as one 2-D Spectrum."""
    rng = np.random.default_rng(seed)
    wave = est.model.metadata.grid.wavelength
    lines = 1 - 0.3 * np.exp(-0.5 * ((wave.value[None, :] % 7.0 - 3.5) / 0.15) ** 2)
    flux = np.repeat(lines, n, axis=0) + 0.02 * rng.standard_normal((n, wave.size))
    return Spectrum(flux=flux * u.one, spectral_axis=wave,
                    uncertainty=StdDevUncertainty(np.full(flux.shape, 0.02)))


def naive_predict(est: CINNParameterEstimator, spectrum: Spectrum, rows: int, n_samples: int,
                  device: torch.device, quantiles=(0.16, 0.5, 0.84)) -> np.ndarray:
    """Per-spectrum loop, conditioning recomputed for every draw (see module docstring)."""
    net = est.model.network.to(device)
    md = est.model.metadata
    flux = spectrum.flux.value
    out = []
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.inference_mode():
        for i in range(rows):
            one = Spectrum(flux=flux[i] * u.one, spectral_axis=spectrum.spectral_axis,
                           uncertainty=StdDevUncertainty(spectrum.uncertainty.array[i]))
            p = prepare_spectra(one, md.grid, normalize=True)
            x = encode_inputs(torch.from_numpy(p.flux), torch.from_numpy(p.sigma),
                              torch.from_numpy(p.valid)).to(device)
            xs = x.expand(n_samples, -1, -1)
            z = torch.randn(n_samples, md.n_params, generator=gen, device=device)
            draws = net.flow.reverse(z, net.condition(xs))
            draws = md.destandardize(draws).cpu().numpy()
            out.append(np.quantile(draws, quantiles, axis=0))
    return np.array(out)


def without_fit_check(est: CINNParameterEstimator) -> CINNParameterEstimator:
    """The same network and metadata without the spectrum emulator (no ``fit_chi2``)."""
    md = dataclasses.replace(est.model.metadata, emulator=None)
    return CINNParameterEstimator(CINNModel(md, est.model.network), device=est.device)


def _time(fn, repeat: int = 1) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def _load() -> str:
    """1, 5 and 15 minute load averages (other jobs on the machine), if known."""
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except (OSError, AttributeError):
        return "unknown"


def bench_model(name: str | None, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Time one model at every ``--samples``; print and return one row per draw count."""
    # float32 sampling for every column but "bfloat16 sampling", on any hardware
    est = CINNParameterEstimator.from_pretrained(name, device=device)
    est.set_sampling_precision("float32")
    spectra = make_spectra(est, args.n_spectra)
    md = est.model.metadata
    print(f"model {md.full_name}, {md.grid.npix} px, {md.n_params} parameters")
    bare = without_fit_check(est) if md.emulator is not None else None
    compiled, compile_s = None, None
    if args.compile:
        # a fresh compiler cache: the first call then costs what it costs on a new machine
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_predict_")
        torch._dynamo.reset()
        compiled = CINNParameterEstimator.from_pretrained(name, device=device).compile_sampling()
        t0 = time.perf_counter()
        compiled.predict(spectra[:8], n_samples=max(args.samples), seed=0, progress=False)
        compile_s = time.perf_counter() - t0
        print(f"compiled sampling: first call (compilation) {compile_s:.1f} s")
    bf16 = None
    if args.bfloat16:
        bf16 = CINNParameterEstimator.from_pretrained(name, device=device)
        bf16.set_sampling_precision("bfloat16")
    print(f"{'n_samples':>9} {'predict spectra/s':>18} {'naive spectra/s':>16} {'speed-up':>9}"
          f" {'no fit check spectra/s':>23} {'fit check cost':>15} {'calibration cost':>17}")
    rows = []
    for s in args.samples:
        est.predict(spectra[:8], n_samples=s, seed=0, progress=False)  # warm-up
        t_fast = _time(lambda s=s: est.predict(spectra, n_samples=s, seed=0, progress=False), 2)
        t_naive = _time(lambda s=s: naive_predict(est, spectra, args.n_naive, s, device))
        row = {"model": name or md.name, "version": md.version, "draws": s,
               "predict": args.n_spectra / t_fast, "naive": args.n_naive / t_naive,
               "bare": None, "calibration": None}
        line = (f"{s:>9d} {row['predict']:>18.1f} {row['naive']:>16.2f} "
                f"{row['predict'] / row['naive']:>8.1f}x")
        if bare is not None:
            bare.predict(spectra[:8], n_samples=s, seed=0, progress=False)
            t_bare = _time(
                lambda s=s: bare.predict(spectra, n_samples=s, seed=0, progress=False), 2)
            row["bare"] = args.n_spectra / t_bare
            row["fit_check"] = 100 * (t_fast / t_bare - 1)
            line += f" {row['bare']:>23.1f} {row['fit_check']:>14.0f}%"
        else:
            line += f" {'-':>23} {'-':>15}"
        if compiled is not None:
            compiled.predict(spectra[:8], n_samples=s, seed=0, progress=False)
            t_comp = _time(
                lambda s=s: compiled.predict(spectra, n_samples=s, seed=0, progress=False), 2)
            row["compiled"] = args.n_spectra / t_comp
            row["compile_s"] = compile_s
            line += f"  compiled {row['compiled']:.1f}/s ({t_fast / t_comp:.2f}x)"
        if bf16 is not None:
            bf16.predict(spectra[:8], n_samples=s, seed=0, progress=False)
            t_bf = _time(lambda s=s: bf16.predict(spectra, n_samples=s, seed=0, progress=False), 2)
            row["bfloat16"] = args.n_spectra / t_bf
            line += f"  bfloat16 {row['bfloat16']:.1f}/s ({t_fast / t_bf:.2f}x)"
        if md.posterior_calibration is not None:
            t_raw = _time(lambda s=s: est.predict(spectra, n_samples=s, seed=0, progress=False,
                                                   calibrated=False), 2)
            row["calibration"] = 100 * (t_fast / t_raw - 1)
            line += f" {row['calibration']:>16.0f}%"
        print(line)
        rows.append(row)
    return rows


def rst_table(rows: list[dict], header: str, caption: str = "") -> str:
    """The rows as a reStructuredText simple table (spectra per second), after ``header`` (a
    comment) and followed by ``caption`` (a visible paragraph naming the run)."""
    head = ["model", "draws", "``predict``", "naive loop", "without fit check",
            "fit-check cost", "calibration cost"]
    body = [[r["model"], str(r["draws"]), f"{r['predict']:.1f}",
             f"{r['naive']:.2f} ({r['predict'] / r['naive']:.1f}x)",
             "-" if r["bare"] is None else f"{r['bare']:.1f}",
             "-" if r["bare"] is None else f"{r['fit_check']:.0f} %",
             "-" if r["calibration"] is None else f"{r['calibration']:.0f} %"] for r in rows]
    if any("bfloat16" in r for r in rows):
        head.append("bfloat16 sampling")
        for r, b in zip(rows, body, strict=True):
            b.append(f"{r['bfloat16']:.1f} ({r['bfloat16'] / r['predict']:.2f}x)"
                     if "bfloat16" in r else "-")
    if any("compiled" in r for r in rows):
        head.append("compiled sampling")
        for r, b in zip(rows, body, strict=True):
            b.append(f"{r['compiled']:.1f} ({r['compiled'] / r['predict']:.2f}x; compiled in "
                     f"{r['compile_s']:.0f} s)" if "compiled" in r else "-")
    tail = ["", caption, ""] if caption else [""]
    return "\n".join([header, "", simple_table(head, body), *tail])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=[None],
                    help="model names (default: the default model)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n-spectra", type=int, default=256)
    ap.add_argument("--n-naive", type=int, default=8)
    ap.add_argument("--samples", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--compile", action="store_true",
                    help="also time the model with compile_sampling() (torch.compile)")
    ap.add_argument("--bfloat16", action="store_true",
                    help="also time the model with set_sampling_precision('bfloat16') (the other "
                    "columns are float32 on any hardware)")
    ap.add_argument("--rst", type=Path, default=None,
                    help="also write the table as reStructuredText to this file")
    args = ap.parse_args()
    device = resolve_device(args.device)
    hw = (torch.cuda.get_device_name(device) if device.type == "cuda"
          else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"{torch.get_num_threads()} torch threads")
    print(f"device {device.type} ({hw}); torch {torch.__version__}")
    load_before = _load()
    rows = [r for name in args.model for r in bench_model(name, args, device)]
    if args.rst:
        date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        versions = ", ".join(sorted({f"{r['model']} v{r['version']}" for r in rows}))
        header = (f".. generated by python benchmarks/bench_predict.py "
                  f"{' '.join(sys.argv[1:])}; do not edit.")
        caption = (f"Measured {date}: {versions}; {args.n_spectra} spectra "
                   f"({args.n_naive} for the naive loop); device {device.type} ({hw}); torch "
                   f"{torch.__version__}; load average (1, 5, 15 min) {load_before} before the "
                   f"run, {_load()} after.")
        args.rst.parent.mkdir(parents=True, exist_ok=True)
        args.rst.write_text(rst_table(rows, header, caption))
        print(f"wrote {args.rst}")

if __name__ == "__main__":
    main()
