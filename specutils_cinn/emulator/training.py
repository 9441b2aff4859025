"""Training a `SpectrumEmulator` on a grid of synthetic spectra."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import (
    TrainingCheckpoint,
    array_digest,
    read_checkpoint,
    run_fingerprint,
    write_checkpoint,
)
from ..devices import resolve_device, restore_torch_threads
from ..wavelength_grid import WavelengthGrid
from .gp import GP_KERNELS, fit_gaussian_process, principal_basis
from .network import EMULATOR_KINDS, SpectrumEmulator

__all__ = ["EmulatorConfig", "train_emulator", "validation_split"]


@dataclass
class EmulatorConfig:
    """Architecture and optimization settings of `train_emulator`.

    Attributes
    ----------
    kind : {"pca", "direct", "gp"}
        ``"pca"``: the MLP predicts coefficients of the training set's principal components
        (trained in coefficient space, which for an orthogonal basis is the pixel-space squared
        error up to a constant; small files). ``"direct"``: The Payne's layout, the last hidden
        layer feeds a learned basis over all pixels (trained in pixel space). ``"gp"``:
        Gaussian processes predict the coefficients of the principal components
        (`specutils_cinn.emulator.gp`); the network options (``hidden`` to ``patience``,
        ``finetune_steps``) do not apply, the ``gp_*`` options do.
    n_components : int
        Basis spectra (``"pca"``: at most the number of training stars).
    hidden : tuple of int
        Hidden layer widths.
    activation : str
        Hidden activation, see `SpectrumEmulator`.
    storage_dtype : {"float32", "float16"}
        dtype the basis is stored in after training (the mean flux stays float32).
    steps : int
        Maximum optimization steps.
    batch_size : int
        Spectra per step (at most the training set).
    learning_rate, min_learning_rate : float
        Adam learning rate after the linear warm-up, decaying with a cosine to the minimum.
    warmup_steps : int
        Linear warm-up steps.
    weight_decay : float
        AdamW decoupled weight decay of the MLP.
    validation_fraction : float
        Fraction of the training stars (grouped by star) used for early stopping.
    eval_every : int
        Steps between validation evaluations.
    patience : int
        Evaluations without improvement before stopping early.
    finetune_steps : int
        ``"pca"`` only: steps of pixel-space fine-tuning of the MLP and the basis together after
        the coefficient-space training (0: none).
    gp_groups : tuple of int
        ``"gp"`` only: the inner boundaries of the component groups that share length scales
        (``(16, 48)``: components 0-15, 16-47 and 48 to ``n_components - 1``; boundaries at or
        above ``n_components`` are dropped).
    gp_kernel : {"matern52", "rbf"}
        ``"gp"`` only: the correlation function.
    gp_steps : int
        ``"gp"`` only: Adam steps of the hyperparameter fit of each group.
    gp_learning_rate : float
        ``"gp"`` only: their learning rate (log length scales and log noise).
    gp_fit_stars : int
        ``"gp"`` only: at most this many training stars (a random subset) in the
        hyperparameter fit; the processes are then conditioned on all training stars.
    gp_windows : tuple of (float, float)
        ``"gp"`` only: wavelength windows (A, the grid's medium) left out of the
        ``n_components`` global components, each with ``gp_window_components`` components and
        length scales of its own (`specutils_cinn.emulator.gp.principal_basis`), e.g. around
        the Li lines, whose strength hangs on A(Li) alone.
    gp_window_components : int
        ``"gp"`` only: components per window.
    seed : int
        Seed of the split, the initial weights and the batches (``"gp"``: the fit subset).
    threads : int or None
        CPU threads for torch (None keeps torch's setting).
    """

    kind: str = "pca"
    n_components: int = 96
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "silu"
    storage_dtype: str = "float32"
    steps: int = 20000
    batch_size: int = 64
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-5
    warmup_steps: int = 200
    weight_decay: float = 0.0
    validation_fraction: float = 0.1
    eval_every: int = 200
    patience: int = 15
    finetune_steps: int = 0
    gp_groups: tuple[int, ...] = (16, 48)
    gp_kernel: str = "matern52"
    gp_steps: int = 400
    gp_learning_rate: float = 0.05
    gp_fit_stars: int = 1500
    gp_windows: tuple[tuple[float, float], ...] = ()
    gp_window_components: int = 8
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.gp_groups = tuple(int(g) for g in self.gp_groups)
        try:
            self.gp_windows = tuple((float(a), float(b)) for a, b in self.gp_windows)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"gp_windows must be (start, stop) pairs in A, got "
                             f"{self.gp_windows!r}") from exc
        if any(not b > a for a, b in self.gp_windows) or self.gp_window_components < 1:
            raise ValueError("every gp window needs stop > start, and gp_window_components "
                             "must be positive")
        if self.steps < 1 or self.batch_size < 1 or self.eval_every < 1 or self.patience < 1:
            raise ValueError("steps, batch_size, eval_every and patience must be positive")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError("validation_fraction must be in (0, 1)")
        if self.kind not in EMULATOR_KINDS:
            raise ValueError(f"kind must be one of {EMULATOR_KINDS}, got {self.kind!r}")
        if any(b <= a for a, b in zip((0, *self.gp_groups), self.gp_groups, strict=False)):
            raise ValueError(f"gp_groups must be positive and rising, got "
                             f"{list(self.gp_groups)}")
        if self.gp_kernel not in GP_KERNELS:
            raise ValueError(f"gp_kernel must be one of {GP_KERNELS}, got {self.gp_kernel!r}")
        if self.gp_steps < 0 or not self.gp_learning_rate > 0 or self.gp_fit_stars < 2:
            raise ValueError("gp_steps must be >= 0, gp_learning_rate > 0 and gp_fit_stars >= 2")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmulatorConfig:
        """Build from a dict (e.g. a TOML table), rejecting unknown keys.

        Raises
        ------
        ValueError
            If a key is unknown or a value invalid.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown emulator option(s) {sorted(unknown)}; known {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["gp_groups"] = list(self.gp_groups)
        d["gp_windows"] = [list(w) for w in self.gp_windows]
        return d


def validation_split(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Choose validation spectra by whole groups (stars), as `train_emulator` does.

    Parameters
    ----------
    groups : numpy.ndarray
        Group (star) of each spectrum, shape ``(n,)``.
    fraction : float
        Fraction of the groups held out (rounded, at least one).
    seed : int
        Seed of the random choice of groups.

    Returns
    -------
    numpy.ndarray
        Boolean, shape ``(n,)``: True for the validation spectra.

    Raises
    ------
    ValueError
        If fewer than two groups would remain to split.
    """
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(fraction * uniq.size)))
    if n_val >= uniq.size:
        raise ValueError("need at least two stars to split off a validation set")
    return np.isin(groups, rng.choice(uniq, n_val, replace=False))


def _lr_factor(step: int, cfg: EmulatorConfig, total: int) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    lo = cfg.min_learning_rate / cfg.learning_rate
    return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * t))


#: The training phases of `train_emulator`, in order (coefficients, then fine-tuning).
_PHASES = ("", "ft")


class _Checkpoints:
    """Where `_loop` writes its state and what a resumed run skips (`specutils_cinn.checkpoint`)."""

    def __init__(self, path: str | os.PathLike[str], fingerprint: str, every: int,
                 log: Callable[[str], None] | None) -> None:
        self.path, self.fingerprint, self.every = Path(path), fingerprint, every
        self.state = (read_checkpoint(self.path, fingerprint) if self.path.exists() else None)
        if self.state is not None and log:
            log(f"resuming from {self.path} ({self.state.extra['phase'] or 'coefficient'} phase, "
                f"step {self.state.step}{', done' if self.state.extra['done'] else ''})")

    def resume(self, tag: str) -> TrainingCheckpoint | None:
        """The state to continue phase ``tag`` from, or None to start it afresh."""
        st = self.state
        if st is None or _PHASES.index(st.extra["phase"]) < _PHASES.index(tag):
            return None
        return st

    def write(self, tag: str, step: int, done: bool, emu: SpectrumEmulator, best: float,
              best_state: dict | None, bad: int, opt: Any, sched: Any, gen: torch.Generator,
              hist: dict, seconds: float) -> None:
        self.state = None                      # later phases start afresh in this process
        write_checkpoint(self.path, TrainingCheckpoint(
            step=step, fingerprint=self.fingerprint, network=emu.state_dict(),
            best=best_state if best_state is not None else emu.state_dict(), best_loss=best,
            best_step=0, optimizer=opt.state_dict(), scheduler=sched.state_dict(),
            generator_state=gen.get_state(), global_state=torch.get_rng_state(), history=hist,
            seconds=seconds, extra={"phase": tag, "done": done, "bad": bad,
                                    "has_best": best_state is not None}))


def _loop(emu: SpectrumEmulator, params: list[torch.nn.Parameter], x: torch.Tensor,
          loss_fn: Callable[[torch.Tensor], torch.Tensor],
          val_fn: Callable[[], float], cfg: EmulatorConfig, steps: int, lr: float,
          gen: torch.Generator, hist: dict[str, list], log: Callable[[str], None] | None,
          tag: str, checkpoints: _Checkpoints | None = None, t0: float = 0.0) -> None:
    """Adam with warm-up and cosine decay; keeps the best validation state (early stopping)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg, steps))
    n = x.shape[0]
    bs = min(cfg.batch_size, n)
    best, best_state, bad, run = math.inf, None, 0, 0.0
    start = 0
    st = checkpoints.resume(tag) if checkpoints is not None else None
    if st is not None:
        hist.clear()
        hist.update(st.history)
        if st.extra["phase"] != tag or st.extra["done"]:
            # this phase finished before the interruption: its result is in the checkpoint
            # (or, for a later phase, will be restored when that phase resumes)
            emu.load_state_dict(st.network)
            return
        emu.load_state_dict(st.network)
        opt.load_state_dict(st.optimizer)
        sched.load_state_dict(st.scheduler)
        gen.set_state(st.generator_state)
        torch.set_rng_state(st.global_state)
        best, bad, start = st.best_loss, int(st.extra["bad"]), st.step
        best_state = ({k: v.to(emu.basis.device) for k, v in st.best.items()}
                      if st.extra["has_best"] else None)
    every = checkpoints.every if checkpoints is not None else cfg.eval_every
    for step in range(start, steps):
        idx = torch.randperm(n, generator=gen)[:bs].to(x.device)
        loss = loss_fn(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run += float(loss.detach())
        if (step + 1) % cfg.eval_every == 0 or step + 1 == steps:
            with torch.no_grad():
                val = val_fn()
            k = (step % cfg.eval_every) + 1
            hist["step"].append(f"{tag}{step + 1}")
            hist["train_mse"].append(run / k)
            hist["val_mse"].append(val)
            run = 0.0
            if log:
                log(f"{tag}step {step + 1:6d}  train {hist['train_mse'][-1]:.3e}  "
                    f"val {val:.3e}  lr {sched.get_last_lr()[0]:.1e}")
            if val < best:
                best, bad = val, 0
                best_state = {k: v.detach().clone() for k, v in emu.state_dict().items()}
                hist["best_step"] = f"{tag}{step + 1}"
            else:
                bad += 1
                if bad >= cfg.patience:
                    if log:
                        log(f"{tag}early stop after {step + 1} steps")
                    break
            if checkpoints is not None and (step + 1) % every == 0 and step + 1 < steps:
                checkpoints.write(tag, step + 1, False, emu, best, best_state, bad, opt, sched,
                                  gen, hist, time.perf_counter() - t0)
    if best_state is not None:
        emu.load_state_dict(best_state)
    if checkpoints is not None:
        checkpoints.write(tag, steps, True, emu, best, best_state, bad, opt, sched, gen, hist,
                          time.perf_counter() - t0)


@restore_torch_threads
def train_emulator(
    labels: np.ndarray,
    flux: np.ndarray,
    label_names: Sequence[str],
    grid: WavelengthGrid,
    config: EmulatorConfig | None = None,
    *,
    validation: float | np.ndarray | None = None,
    star_id: np.ndarray | None = None,
    holdout: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = print,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
) -> tuple[SpectrumEmulator, dict[str, Any]]:
    """Train a spectrum emulator with Adam and early stopping on a validation split by star.

    Parameters
    ----------
    labels : numpy.ndarray, shape ``[n, n_labels]``
        Physical labels of the training spectra.
    flux : numpy.ndarray, shape ``[n, grid.npix]``
        Continuum-normalized spectra on ``grid`` (after the instrumental LSF).
    label_names : sequence of str
        Names of the label columns.
    grid : `~specutils_cinn.wavelength_grid.WavelengthGrid`
        Pixel grid of ``flux``.
    config : EmulatorConfig, optional
        Settings (default `EmulatorConfig()`).
    validation : float or numpy.ndarray of bool, optional
        Fraction of the stars to validate on (default ``config.validation_fraction``), or a
        boolean mask of the validation rows.
    star_id : numpy.ndarray of int, optional
        Star of each row; the random validation split takes whole stars (default: every row is
        its own star).
    holdout : numpy.ndarray of bool, optional
        Rows of held-out test stars; they are dropped before anything else and never used.
    device : str or torch.device
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    log : callable or None
        Called with progress lines.
    checkpoint : path-like, optional
        A training checkpoint (`specutils_cinn.checkpoint`), written every
        ``checkpoint_every`` steps and at the end of each phase. If the file exists, training
        continues from it and ends with the emulator an uninterrupted run would give on the
        same device; a checkpoint of another run is refused with a
        `~specutils_cinn.checkpoint.CheckpointError`.
    checkpoint_every : int, optional
        Steps between checkpoints, a multiple of ``config.eval_every`` (default: every
        evaluation).

    Returns
    -------
    emulator : SpectrumEmulator
        Best-validation weights, in eval mode, on ``device``; label ranges are those of the
        training rows (without the held-out stars).
    history : dict
        Steps, train and validation MSE, ``best_step``, ``seconds``, ``n_train``,
        ``n_validation``, validation residual statistics and the config.

    Raises
    ------
    ValueError
        If shapes disagree or the data contain non-finite values.
    """
    cfg = config or EmulatorConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    lab = np.asarray(labels, dtype=np.float64)
    fl = np.asarray(flux, dtype=np.float32)
    if lab.ndim != 2 or lab.shape[1] != len(label_names) or fl.shape != (lab.shape[0], grid.npix):
        raise ValueError(f"labels {lab.shape} / flux {fl.shape} do not fit {len(label_names)} "
                         f"labels and {grid.npix} pixels")
    if not (np.all(np.isfinite(lab)) and np.all(np.isfinite(fl))):
        raise ValueError("labels and flux must be finite")
    groups = np.arange(lab.shape[0]) if star_id is None else np.asarray(star_id)
    keep = np.ones(lab.shape[0], bool) if holdout is None else ~np.asarray(holdout, bool)
    if isinstance(validation, np.ndarray):
        val_mask = np.asarray(validation, bool)[keep]
    lab, fl, groups = lab[keep], fl[keep], groups[keep]
    if not isinstance(validation, np.ndarray):
        frac = cfg.validation_fraction if validation is None else float(validation)
        val_mask = validation_split(groups, frac, cfg.seed)
    if val_mask.all() or not val_mask.any():
        raise ValueError("the validation split must leave rows on both sides")
    tr = ~val_mask
    ranges = np.column_stack([lab[tr].min(0), lab[tr].max(0)])
    ranges[:, 1] = np.maximum(ranges[:, 1], ranges[:, 0] + 1e-6)
    n_comp = cfg.n_components
    if cfg.kind in ("pca", "gp") and n_comp > int(tr.sum()):
        n_comp = int(tr.sum())
        if log:
            log(f"n_components reduced to the {n_comp} training spectra")
    if cfg.kind == "gp" and checkpoint is not None:
        raise ValueError("checkpoints are for the network kinds ('pca', 'direct'); a 'gp' "
                         "emulator fits in minutes and has no state to resume")
    torch.manual_seed(cfg.seed)
    net: dict[str, Any] = {"hidden": cfg.hidden, "activation": cfg.activation}
    if cfg.kind == "gp":
        f_tr = torch.from_numpy(fl[tr]).to(dev)
        gp_basis, gp_bounds, gp_windows = principal_basis(
            f_tr - f_tr.mean(0), grid.wavelength.value, n_comp, cfg.gp_groups, cfg.gp_windows,
            cfg.gp_window_components)
        del f_tr
        n_comp = gp_basis.shape[0]
        net = {"gp": {"n_train": int(tr.sum()), "kernel": cfg.gp_kernel, "groups": gp_bounds}}
    emu = SpectrumEmulator(label_names, ranges, grid, kind=cfg.kind, n_components=n_comp,
                           **net).to(dev)
    x_all = emu.scale_labels(torch.from_numpy(lab).to(dev))
    f_all = torch.from_numpy(fl).to(dev)
    xt, ft, xv, fv = x_all[tr], f_all[tr], x_all[val_mask], f_all[val_mask]
    mean = ft.mean(0)
    emu.flux_mean.copy_(mean)
    gen = torch.Generator().manual_seed(cfg.seed)
    hist: dict[str, Any] = {"step": [], "train_mse": [], "val_mse": []}
    ckpt = None
    if checkpoint is not None:
        every = checkpoint_every or cfg.eval_every
        if every < 1 or every % cfg.eval_every:
            raise ValueError(f"checkpoint_every must be a positive multiple of eval_every "
                             f"({cfg.eval_every}), got {checkpoint_every}")
        ckpt = _Checkpoints(checkpoint, _fingerprint(cfg, label_names, grid, lab, fl, groups,
                                                     val_mask), every, log)
        if ckpt.state is not None:
            t0 -= ckpt.state.seconds           # training time of the earlier parts
    mlp_params = list(emu.mlp.parameters())

    def pixel_val() -> float:
        return float(((emu.flux_from_scaled(xv) - fv) ** 2).mean())

    if cfg.kind == "pca":
        _, s, vt = torch.linalg.svd(ft - mean, full_matrices=False)
        s, vt = s[:n_comp], vt[:n_comp]
        sd = (s / math.sqrt(xt.shape[0])).clamp_min(1e-12)
        emu.basis.data.copy_(sd[:, None] * vt)
        zt = (ft - mean) @ vt.T / sd
        zv = (fv - mean) @ vt.T / sd
        w = sd**2 / grid.npix
        floor = float(((fv - mean - (zv * sd) @ vt) ** 2).mean())
        hist["validation_projection_mse"] = floor

        def coef_loss(idx: torch.Tensor) -> torch.Tensor:
            return ((emu.coefficients(xt[idx]) - zt[idx]) ** 2 * w).sum(1).mean()

        def coef_val() -> float:
            return float(((emu.coefficients(xv) - zv) ** 2 * w).sum(1).mean()) + floor

        _loop(emu, mlp_params, xt, coef_loss, coef_val, cfg, cfg.steps, cfg.learning_rate, gen,
              hist, log, "", ckpt, t0)
        if cfg.finetune_steps > 0:
            emu.basis.requires_grad_(True)

            def pix_loss(idx: torch.Tensor) -> torch.Tensor:
                return ((emu.flux_from_scaled(xt[idx]) - ft[idx]) ** 2).mean()

            _loop(emu, [*mlp_params, emu.basis], xt, pix_loss, pixel_val, cfg,
                  cfg.finetune_steps, 0.1 * cfg.learning_rate, gen, hist, log, "ft", ckpt, t0)
            emu.basis.requires_grad_(False)
    elif cfg.kind == "gp":
        xt64 = ((torch.from_numpy(lab[tr]).to(dev) - emu.label_low) /
                (emu.label_high - emu.label_low) - 0.5)
        vt = gp_basis
        emu.basis.data.copy_(vt)
        y = ((ft - mean) @ vt.T).to(torch.float64)
        gp, gp_hist = fit_gaussian_process(
            xt64, y, emu.gp.groups, kernel=cfg.gp_kernel, steps=cfg.gp_steps,
            learning_rate=cfg.gp_learning_rate, max_fit_rows=cfg.gp_fit_stars, generator=gen,
            log=log)
        emu.gp.load_state_dict(gp.state_dict())
        hist["gp"] = dict(gp_hist, windows=gp_windows)
        hist["validation_projection_mse"] = float(
            ((fv - mean - ((fv - mean) @ vt.T) @ vt) ** 2).mean())
        with torch.no_grad():
            hist["step"].append("gp")
            hist["train_mse"].append(float(((emu.flux_from_scaled(xt) - ft) ** 2).mean()))
            hist["val_mse"].append(pixel_val())
    else:
        emu.basis.data.mul_(1e-3)
        emu.basis.requires_grad_(True)

        def pix_loss(idx: torch.Tensor) -> torch.Tensor:
            return ((emu.flux_from_scaled(xt[idx]) - ft[idx]) ** 2).mean()

        _loop(emu, [*mlp_params, emu.basis], xt, pix_loss, pixel_val, cfg, cfg.steps,
              cfg.learning_rate, gen, hist, log, "", ckpt, t0)
        emu.basis.requires_grad_(False)

    if cfg.storage_dtype != "float32":
        emu = _restore_dtype(emu, cfg.storage_dtype)
    emu.eval()
    with torch.no_grad():
        res = (emu.flux_from_scaled(xv) - fv).abs().flatten().cpu().numpy()
    hist.update(
        seconds=time.perf_counter() - t0,
        device=str(dev),
        n_train=int(tr.sum()),
        n_validation=int(val_mask.sum()),
        validation_median_abs=float(np.median(res)),
        validation_p99_abs=float(np.percentile(res, 99)),
        config=cfg.to_dict(),
    )
    if log:
        log(f"done in {hist['seconds']:.0f} s: validation |residual| median "
            f"{hist['validation_median_abs']:.2e}, p99 {hist['validation_p99_abs']:.2e}")
    return emu, hist


def _fingerprint(cfg: EmulatorConfig, label_names: Sequence[str], grid: WavelengthGrid,
                 *arrays: np.ndarray) -> str:
    """`run_fingerprint` of an emulator run: settings (not threads), labels, grid and data."""
    settings = {k: v for k, v in cfg.to_dict().items() if k != "threads"}
    return run_fingerprint({"settings": settings, "labels": list(label_names),
                            "grid": grid.to_dict(), "data": array_digest(*arrays)})


def _restore_dtype(emu: SpectrumEmulator, storage_dtype: str) -> SpectrumEmulator:
    """Rebuild ``emu`` with its basis stored in ``storage_dtype``."""
    arch = dict(emu.architecture, storage_dtype=storage_dtype)
    new = SpectrumEmulator.from_architecture(arch).to(emu.device)
    state = emu.state_dict()
    state["basis"] = state["basis"].to(new.basis.dtype)
    new.load_state_dict(state)
    return new
