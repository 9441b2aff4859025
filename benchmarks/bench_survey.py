"""End-to-end survey throughput: 4MOST FITS files on disk to the written table, against a
realistic per-spectrum baseline, in one run.

All runs start from the same synthetic 4MOST L1 HRS files (three arm files per object, one
spectrum per object, written by ``scripts/make_4most_files.py``) and end with a table on disk:

- **survey**: ``specutils_cinn.survey.run_survey`` (what ``specutils-cinn predict`` runs):
  chunks of ``--chunk-size`` objects read (plain L1 files directly, ``io.read_arms_direct``;
  the next chunk in a background thread while one is inferred), joined, prepared together,
  inferred in batches (conditioning once per spectrum, shared by its draws), parts written
  and assembled.
- **survey, Spectrum.read**: the same with every file read by ``Spectrum.read`` (format
  identified per file) and the arms joined by ``group_arms``, one chunk after the other (the
  reading of the previous release), at the sizes of ``--old-files`` (default the smallest).
- **baseline**: the loop of published cINN codes: for each object, read its three files
  (``read_spectra``: ``Spectrum.read`` per file), resample and normalize that one spectrum
  (``prepare_spectra``), condition the network once, draw ``n_samples``, take quantiles and
  standard deviations, collect the row; write the table at the end. Timed on
  ``--n-baseline`` objects.

Each measurement runs in a fresh Python process (model load and imports excluded from the
timing, reported separately); its peak memory is that process's maximum resident set size
(``resource.getrusage``), its median memory the median of its resident set size sampled every
0.5 s while it runs (Linux; ``-`` elsewhere): the level a run holds, where the peak is its
highest moment and grows a little with the run's length. Sizes are numbers of input FILES
(three per object); the default 1002 and 9999 files are 334 and 3333 objects (spectra).
``--distinct K`` writes the files of K objects only and hard-links the others to them under
their own names (same bytes, read as separate inputs): for sizes such as 99,999 files, where
peak memory and bookkeeping, not the contents, are measured; sizes up to 3K files are all
distinct. ``--stages`` adds, for the smallest size and both readers, a breakdown of the
survey's time per spectrum by stage (read, join, prepare, inference, goodness of fit, flags,
assembly, writing), with reading in the calling thread so that the stages add up. The load
average of the machine is printed before and after: on a shared machine compare rows of one
run, not runs.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_survey.py [--files 1002 9999] [--n-baseline 200]
        [--old-files 1002] [--stages] [--n-samples 1000] [--chunk-size 256] [--distinct K]
        [--workdir /tmp/bench-survey] [--json out.json] [--rst docs/survey/bench_survey.rst]

``--rst`` writes the report for the documentation (docs/survey/bench_survey.rst, included
in docs/survey.rst, *Throughput*).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Resident memory sampled every 0.5 s during a run (Linux ``/proc``; none elsewhere): its
#: median is the level a run holds, the peak its highest moment (two chunks in flight).
RSS_SAMPLER = """
import statistics, threading
_rss, _stop = [], threading.Event()
def _sample():
    while not _stop.is_set():
        try:
            with open("/proc/self/status") as f:
                _rss.append(next(int(x.split()[1]) for x in f if x.startswith("VmRSS")) / 1024)
        except (OSError, StopIteration):
            return
        _stop.wait(0.5)
def _rss_median():
    _stop.set()
    return statistics.median(_rss) if _rss else None
"""

CHILD_SURVEY = """
import json, resource, sys, time
t0 = time.perf_counter()
from specutils_cinn.survey import cached_estimator, reading, run_survey
reading._DIRECT_READ, reading._READ_AHEAD = {direct!r}, {ahead!r}
est = cached_estimator(None, "cpu")
t1 = time.perf_counter()
threading.Thread(target=_sample, daemon=True).start()
s = run_survey({files!r}, {out!r}, group_arms=True, chunk_size={chunk}, n_samples={ns},
               seed=1, device="cpu", overwrite=True, progress=False, dask={dask!r})
t2 = time.perf_counter()
print(json.dumps({{"setup_s": t1 - t0, "run_s": t2 - t1, "rows": s.rows, "errors": s.errors,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_median_mb": _rss_median()}}))
"""

#: The survey's stages, timed by wrapping the functions that do them where they are called
#: (reading in the calling thread: the stages then add up to the run).
CHILD_STAGES = """
import collections, functools, json, time
from specutils_cinn.survey import chunk, reading, run as survey_run
from specutils_cinn.estimator import CINNParameterEstimator as E
import specutils_cinn.io as sio
import specutils_cinn.io._direct as direct
from specutils_cinn.survey import cached_estimator, run_survey
reading._DIRECT_READ, reading._READ_AHEAD = {direct!r}, 0
T = collections.defaultdict(float)
def wrap(owner, name, label):
    f = getattr(owner, name)
    @functools.wraps(f)
    def g(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            T[label] += time.perf_counter() - t
    setattr(owner, name, g)
wrap(reading, "_read_one", "read: Spectrum.read (identify, open, parse)")
wrap(sio, "group_arms", "read: group_arms (join the arms)")
wrap(direct, "read_phase3_direct", "read: direct (headers, arrays, meta)")
wrap(direct, "spectrum_of", "read: Spectrum of the joined arms")
wrap(chunk, "_read_chunk", "read: total")
wrap(E, "_prepare", "prepare (resample, normalize)")
wrap(E, "_fit_statistics", "goodness of fit (emulator)")
wrap(E, "_output_flags", "flags (incl. velocity check)")
wrap(chunk, "_predict", "predict: total")
wrap(chunk, "_assemble", "assemble chunk table")
wrap(survey_run, "_write_part", "write parts")
wrap(survey_run, "_assemble_output", "assemble output")
est = cached_estimator(None, "cpu")
t0 = time.perf_counter()
s = run_survey({files!r}, {out!r}, group_arms=True, chunk_size={chunk}, n_samples={ns},
               seed=1, device="cpu", overwrite=True, progress=False)
total = time.perf_counter() - t0
T["inference (draws, quantiles: predict minus the above)"] = (
    T["predict: total"] - T["prepare (resample, normalize)"]
    - T["goodness of fit (emulator)"] - T["flags (incl. velocity check)"])
T["run_survey: total"] = total
print(json.dumps({{"rows": s.rows, "ms_per_spectrum": {{k: 1000 * v / s.rows
                                                      for k, v in T.items()}}}}))
"""

CHILD_BASELINE = """
import json, resource, time
import numpy as np, torch
from astropy.table import QTable
t0 = time.perf_counter()
from specutils_cinn import CINNParameterEstimator
from specutils_cinn.flows.conditioning import encode_inputs
from specutils_cinn.inputs import prepare_spectra
from specutils_cinn.io import read_spectra
est = CINNParameterEstimator.from_pretrained(device="cpu")
md = est.model.metadata
net = est.model.network.eval()
mean = torch.as_tensor(md.label_mean, dtype=torch.float32)
scale = torch.as_tensor(md.label_std, dtype=torch.float32)
groups = {groups!r}
gen = torch.Generator().manual_seed(1)
t1 = time.perf_counter()
threading.Thread(target=_sample, daemon=True).start()
rows = []
with torch.inference_mode():
    for paths in groups:
        (spec,) = read_spectra(paths)               # one object: its three arm files
        p = prepare_spectra(spec, md.grid, normalize=True)
        x = encode_inputs(torch.from_numpy(p.flux), torch.from_numpy(p.sigma),
                          torch.from_numpy(p.valid))
        feats = net.condition(x)                    # once per spectrum
        draws = net.sample(feats, {ns}, generator=gen)[0] * scale + mean
        q = torch.quantile(draws, torch.tensor([0.16, 0.5, 0.84]), dim=0).numpy()
        rows.append(np.concatenate([q.ravel(), draws.std(dim=0).numpy(), p.snr]))
names = [f"{{p}}_{{k}}" for k in ("p16", "p50", "p84") for p in est.parameters]
names += [f"{{p}}_std" for p in est.parameters] + ["snr"]
QTable(rows=rows, names=names).write({out!r}, overwrite=True)
t2 = time.perf_counter()
print(json.dumps({{"setup_s": t1 - t0, "run_s": t2 - t1, "rows": len(rows), "errors": 0,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_median_mb": _rss_median()}}))
"""


#: The rows of the ``--stages`` table, in order (sub-stages indented under their total).
STAGE_ORDER = [
    "read: total",
    "read: Spectrum.read (identify, open, parse)",
    "read: group_arms (join the arms)",
    "read: direct (headers, arrays, meta)",
    "read: Spectrum of the joined arms",
    "predict: total",
    "prepare (resample, normalize)",
    "inference (draws, quantiles: predict minus the above)",
    "goodness of fit (emulator)",
    "flags (incl. velocity check)",
    "assemble chunk table",
    "write parts",
    "assemble output",
    "run_survey: total",
]


def hardware() -> dict:
    """The machine this ran on."""
    import torch

    from specutils_cinn.devices import cpu_name

    cpu = cpu_name()
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": None if mem is None else round(mem, 1),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": _load(),
    }


def _load() -> list[float] | None:
    """1, 5 and 15 minute load averages (other jobs on the machine), if known."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def make_files(workdir: Path, n_objects: int, distinct: int | None = None) -> Path:
    """Synthetic HRS files for ``n_objects`` objects (reused if already there); with
    ``distinct``, objects beyond the first ``distinct`` are hard links to them."""
    distinct = None if distinct is None or distinct >= n_objects else distinct
    folder = workdir / (f"hrs-{n_objects}" + (f"-distinct-{distinct}" if distinct else ""))
    manifest = folder / "manifest.ecsv"
    if not manifest.exists():
        t0 = time.perf_counter()
        extra = ["--distinct", str(distinct)] if distinct else []
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_4most_files.py"),
                        str(folder), "-n", str(n_objects), *extra], check=True)
        print(f"# wrote {3 * n_objects} files in {time.perf_counter() - t0:.0f} s", flush=True)
    return folder


def groups_of(folder: Path, n_objects: int) -> list[list[str]]:
    """The three arm files of the first ``n_objects`` objects (by file name)."""
    from specutils_cinn.survey import plan_inputs

    units = plan_inputs(sorted(str(p) for p in folder.glob("qmost_*.fits")), group_arms=True)
    return [list(un.paths) for un in units[:n_objects]]


def child(code: str, env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(results: list[dict], stages: dict, hw: dict, args: argparse.Namespace) -> list[str]:
    """The report's lines: one row per run, then the stages (if timed)."""
    base = results[0]
    b_rate = base["rows"] / base["run_s"]
    linked = "" if args.distinct is None else (
        f"; files of {args.distinct:,} objects written, the others hard links to them")
    lines = [f"HR model, {args.n_samples} draws, chunk size {args.chunk_size}{linked}",
             f"{'run':<24} {'files':>6} {'spectra':>7} {'seconds':>8} {'spectra/s':>10} "
             f"{'files/s':>8} {'x baseline':>10} {'median RSS MB':>14} {'peak RSS MB':>12}"]
    for r in results:
        rate = r["rows"] / r["run_s"]
        lines.append(f"{r['kind']:<24} {r['files']:>6} {r['objects']:>7} {r['run_s']:>8.1f} "
                     f"{rate:>10.1f} {3 * rate:>8.1f} {rate / b_rate:>10.2f} "
                     f"{_mb(r.get('rss_median_mb')):>14} {r['maxrss_mb']:>12.0f}")
    if stages:
        lines += ["", f"ms per spectrum by stage ({min(args.files)} files, reading in the "
                  "calling thread)",
                  f"{'stage':<56} " + " ".join(f"{k:>14}" for k in stages)]
        for key in STAGE_ORDER:
            lines.append(f"{key:<56} " + " ".join(
                f"{v[key]:>14.2f}" if key in v else f"{'-':>14}" for v in stages.values()))
    return lines


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def rst_report(lines: list[str], hw: dict) -> str:
    """The report as an RST comment (command, date, hardware, load) and a literal block."""
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = " ".join(["python"] + sys.argv)
    return "\n".join([
        f".. generated by {command}; do not edit.",
        f".. {date}; {hw['cpu']}, {hw['cores_usable']} usable cores, torch {hw['torch']} "
        f"({hw['torch_threads']} threads), OMP_NUM_THREADS={hw['omp_num_threads']}; "
        f"load average {hw['load_average']} before, {hw['load_average_after']} after",
        "", "::", "", *(f"    {x}".rstrip() for x in lines), ""])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, nargs="+", default=[1002, 9999],
                    help="input sizes in files (three per object)")
    ap.add_argument("--old-files", type=int, nargs="*", default=None,
                    help="sizes also run with Spectrum.read reading (default: the smallest)")
    ap.add_argument("--n-baseline", type=int, default=200, help="objects for the baseline")
    ap.add_argument("--stages", action="store_true",
                    help="time per spectrum by stage, smallest size, both readers")
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--dask", default=None,
                    help="also time the survey on Dask, e.g. 'local:2' (worker processes)")
    ap.add_argument("--distinct", type=int, default=None,
                    help="write only this many objects' files; hard-link the rest to them "
                         "(large sizes for memory; default: all distinct)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-survey"))
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--rst", type=Path, default=None,
                    help="also write the report as a reStructuredText literal block, headed by "
                         "the command, date, hardware and load (docs/survey/bench_survey.rst)")
    args = ap.parse_args(argv)
    old_sizes = [min(args.files)] if args.old_files is None else args.old_files
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    hw = hardware()
    print("# command: " + " ".join([os.path.basename(sys.executable)] + sys.argv), flush=True)
    print("# hardware: " + json.dumps(hw), flush=True)
    n_max = max(args.files + old_sizes) // 3
    folder = make_files(args.workdir, max(n_max, args.n_baseline), args.distinct)
    out_dir = args.workdir / "out"
    out_dir.mkdir(parents=True, exist_ok=True)

    def listing(n_files: int) -> str:
        objects = n_files // 3
        path = out_dir / f"files-{objects}.txt"
        path.write_text("\n".join(p for g in groups_of(folder, objects) for p in g) + "\n")
        return str(path)

    results = []
    base = child(RSS_SAMPLER + CHILD_BASELINE.format(
                     groups=groups_of(folder, args.n_baseline), ns=args.n_samples,
                     out=str(out_dir / "base.ecsv")), env)
    base.update(kind="baseline (loop)", objects=args.n_baseline, files=3 * args.n_baseline)
    results.append(base)
    print(f"# baseline: {json.dumps(base)}", flush=True)
    runs = [(n, True, None) for n in args.files] + [(n, False, None) for n in old_sizes]
    if args.dask:
        runs.append((max(args.files), True, args.dask))
    for n_files, direct, dask in runs:
        r = child(RSS_SAMPLER + CHILD_SURVEY.format(
                      files=listing(n_files), out=str(out_dir / "survey.fits"),
                      chunk=args.chunk_size, ns=args.n_samples, dask=dask,
                      direct=direct, ahead=1 if direct else 0), env)
        kind = "survey" if direct else "survey, Spectrum.read"
        r.update(kind=kind + (f", dask {dask}" if dask else ""), objects=n_files // 3,
                 files=3 * (n_files // 3))
        results.append(r)
        print(f"# {r['kind']}: {json.dumps(r)}", flush=True)
    stages = {}
    if args.stages:
        n_files = min(args.files)
        for direct in (False, True):
            got = child(CHILD_STAGES.format(files=listing(n_files), chunk=args.chunk_size,
                                            out=str(out_dir / "stages.fits"),
                                            ns=args.n_samples, direct=direct), env)
            stages["direct" if direct else "Spectrum.read"] = got["ms_per_spectrum"]
            print(f"# stages ({'direct' if direct else 'Spectrum.read'}): {json.dumps(got)}",
                  flush=True)
    hw["load_average_after"] = _load()
    lines = report(results, stages, hw, args)
    print("\n" + "\n".join(lines))
    if args.rst:
        args.rst.parent.mkdir(parents=True, exist_ok=True)
        args.rst.write_text(rst_report(lines, hw))
        print(f"wrote {args.rst}")
    if args.json:
        args.json.write_text(json.dumps({"hardware": hw, "n_samples": args.n_samples,
                                         "chunk_size": args.chunk_size, "results": results,
                                         "stages_ms_per_spectrum": stages}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
