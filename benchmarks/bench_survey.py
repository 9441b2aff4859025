"""End-to-end survey throughput: 4MOST FITS files on disk to the written table, against a
realistic per-spectrum baseline, in one run.

Both sides start from the same synthetic 4MOST L1 HRS files (three arm files per object,
written by ``scripts/make_4most_files.py``) and end with a table on disk:

- **survey**: ``specutils_cinn.survey.run_survey`` (what ``specutils-cinn predict`` runs):
  chunks of ``--chunk-size`` objects read, joined, prepared together, inferred in batches
  (conditioning once per spectrum, shared by its draws), parts written and assembled.
- **baseline**: the loop of published cINN codes: for each object, read its three files
  (``read_spectra``), resample and normalise that one spectrum (``prepare_spectra``),
  condition the network once, draw ``n_samples``, take quantiles and standard deviations,
  collect the row; write the table at the end. Timed on ``--n-baseline`` objects.

Each measurement runs in a fresh Python process (model load and imports excluded from the
timing, reported separately); its peak memory is that process's maximum resident set size
(``resource.getrusage``). Sizes are numbers of input FILES (three per object); the default
1002 and 9999 files are 334 and 3333 objects.

A run (HR model v1.2.0, 1000 draws, chunk size 256; AMD EPYC, 2 cores shared with other
jobs, ``OMP_NUM_THREADS=1``, torch 2.13.0 CPU, one thread; the ``--dask local:2`` row was not
completed)::

    run          files  objects  seconds  objects/s  files/s  x baseline  peak RSS MB
    baseline       600      200     15.3       13.1     39.2        1.00          401
    survey        1002      334     31.3       10.7     32.0        0.82         1376
    survey        9999     3333    332.1       10.0     30.1        0.77         1405

Reading dominates both (about 65 ms per three-file object); the survey's inference also runs
the goodness-of-fit check and the posterior calibration, which the baseline leaves out.

Usage::

    python benchmarks/bench_survey.py [--files 1002 9999] [--n-baseline 200]
        [--n-samples 1000] [--chunk-size 256] [--workdir /tmp/bench-survey] [--json out.json]
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

CHILD_SURVEY = """
import json, resource, sys, time
t0 = time.perf_counter()
from specutils_cinn.survey import cached_estimator, run_survey
est = cached_estimator(None, "cpu")
t1 = time.perf_counter()
s = run_survey({files!r}, {out!r}, group_arms=True, chunk_size={chunk}, n_samples={ns},
               seed=1, device="cpu", overwrite=True, progress=False, dask={dask!r})
t2 = time.perf_counter()
print(json.dumps({{"setup_s": t1 - t0, "run_s": t2 - t1, "rows": s.rows, "errors": s.errors,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
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
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def hardware() -> dict:
    """The machine this ran on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
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
    }


def make_files(workdir: Path, n_objects: int) -> Path:
    """Synthetic HRS files for ``n_objects`` objects (reused if already there)."""
    folder = workdir / f"hrs-{n_objects}"
    manifest = folder / "manifest.ecsv"
    if not manifest.exists():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_4most_files.py"),
                        str(folder), "-n", str(n_objects)], check=True)
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, nargs="+", default=[1002, 9999],
                    help="input sizes in files (three per object)")
    ap.add_argument("--n-baseline", type=int, default=200, help="objects for the baseline")
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--dask", default=None,
                    help="also time the survey on Dask, e.g. 'local:2' (worker processes)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-survey"))
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    hw = hardware()
    print("# hardware: " + json.dumps(hw), flush=True)
    n_max = max(args.files) // 3
    folder = make_files(args.workdir, max(n_max, args.n_baseline))
    out_dir = args.workdir / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    base = child(CHILD_BASELINE.format(groups=groups_of(folder, args.n_baseline),
                                       ns=args.n_samples, out=str(out_dir / "base.ecsv")), env)
    base.update(kind="baseline", objects=args.n_baseline, files=3 * args.n_baseline)
    results.append(base)
    print(f"# baseline: {json.dumps(base)}", flush=True)
    runs = [(n, None) for n in args.files] + ([(max(args.files), args.dask)] if args.dask
                                             else [])
    for n_files, dask in runs:
        objects = n_files // 3
        listing = out_dir / f"files-{objects}.txt"
        listing.write_text("\n".join(p for g in groups_of(folder, objects) for p in g) + "\n")
        r = child(CHILD_SURVEY.format(files=str(listing), out=str(out_dir / "survey.fits"),
                                      chunk=args.chunk_size, ns=args.n_samples, dask=dask), env)
        r.update(kind="survey" + (f" dask {dask}" if dask else ""), objects=objects,
                 files=3 * objects)
        results.append(r)
        print(f"# survey: {json.dumps(r)}", flush=True)
    b_rate = base["rows"] / base["run_s"]
    print(f"\nHR model, {args.n_samples} draws, chunk size {args.chunk_size}; "
          f"{hw['cpu']}, {hw['cores_usable']} usable cores, torch {hw['torch']} "
          f"({hw['torch_threads']} threads)")
    print(f"{'run':<22} {'files':>6} {'objects':>7} {'seconds':>8} {'objects/s':>10} "
          f"{'files/s':>8} {'x baseline':>10} {'peak RSS MB':>12}")
    for r in results:
        rate = r["rows"] / r["run_s"]
        print(f"{r['kind']:<22} {r['files']:>6} {r['objects']:>7} {r['run_s']:>8.1f} "
              f"{rate:>10.1f} {3 * rate:>8.1f} {rate / b_rate:>10.2f} {r['maxrss_mb']:>12.0f}")
    if args.json:
        args.json.write_text(json.dumps({"hardware": hw, "n_samples": args.n_samples,
                                         "chunk_size": args.chunk_size,
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
