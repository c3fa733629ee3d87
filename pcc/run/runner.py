"""The runner: ``train(spec)`` runs epochs over shuffled batches, logs metrics, evaluates, checkpoints, resumes.

A run folder (``runs/<name>-<YYYYmmdd-HHMMSS>/`` or ``out``) holds ``spec.yaml`` (the resolved spec),
``env.json`` (versions and devices), ``metrics.jsonl`` / ``metrics.csv`` (see :mod:`pcc.run.metrics`),
``checkpoints/`` (see :mod:`pcc.run.checkpoint`) and ``summary.json``. In a multi-process run (after
:func:`pcc.parallel.initialize`) every process trains the same spec into the same ``out`` folder: process 0
writes it as above, orbax writes the checkpoints from process 0, and process i > 0 writes its metrics and
summary to ``process-<i>/`` in it.

Determinism: the batch order of epoch ``e`` depends only on (spec.seed, e), and a checkpoint records the
position (epoch, batch index within it, step), so a resumed run replays exactly the batches and states an
uninterrupted run would have seen, and writes the same metrics rows.

Cadence: a train row every ``run.log_every`` steps and at the last step (the only host syncs inside an
epoch, besides evaluation and alignment); an alignment row every ``run.alignment_every`` steps when set
(the PC-vs-BP gradient alignment of that step's update, measured on its batch from the state before the
step, :func:`pcc.theory.diagnose.alignment`); an evaluation every ``eval.every_steps`` steps, after every
``eval.every_epochs`` epochs and at the end; a checkpoint every ``run.checkpoint_every_epochs`` epochs, at
the end and on Ctrl-C. The best checkpoint is the best among the evaluated checkpoints.

Faults: the first Ctrl-C stops at the next batch boundary, writes a checkpoint there and returns a summary
with status ``interrupted``; a non-finite loss or energy (seen at the logging cadence or in an evaluation)
raises :class:`~pcc.errors.DivergenceError` with status ``diverged``, and a diverged state is never
written over the last good checkpoint.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from time import perf_counter
from typing import Any, Callable, Iterator, Literal, Sequence

import jax
import numpy as np
import yaml

from pcc.compiler import Compiled
from pcc.compiler import compile as compile_spec
from pcc.data import Dataset, batches, load_dataset, num_batches, prefetch
from pcc.errors import CheckpointError, DataError, DivergenceError, PccError
from pcc.run.checkpoint import Checkpoints, Position, all_finite, to_arrays
from pcc.run.metrics import (
    MetricsLog,
    Row,
    alignment_row,
    columns,
    eval_row,
    finite,
    read_rows,
    train_row,
)
from pcc.run.progress import Bar, StopFlag, graceful_interrupt
from pcc.spec.models import Spec

Status = Literal["completed", "interrupted", "diverged"]
Callback = Callable[[Row], Any]
SPEC_FILE, ENV_FILE, SUMMARY_FILE = "spec.yaml", "env.json", "summary.json"


@dataclass(frozen=True)
class Summary:
    """The outcome of a run (also written to ``summary.json``). Test values are None before any evaluation;
    accuracies are None for regression data."""

    name: str
    run_dir: str
    status: Status
    steps: int
    epochs: float  # train steps / steps per epoch
    final_train_loss: float | None
    final_test_loss: float | None
    final_test_accuracy: float | None
    best_test_loss: float | None
    best_test_accuracy: float | None
    best_step: int | None  # step of the best evaluation (by the spec's eval metric)
    wall_time: float  # seconds of training, over all sessions of the run
    compile_time: float  # seconds to compile and run the first step, this session
    checkpoint: str | None  # the latest checkpoint folder
    best_checkpoint: str | None  # the best-scoring checkpoint folder

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------ shared setup


@dataclass(frozen=True)
class _Setup:
    spec: Spec
    data: Dataset
    steps_per_epoch: int
    model: Compiled
    compile_time: float


def _setup(spec: Spec) -> _Setup:
    """Load the dataset and compile the spec for its shapes."""
    data = load_dataset(spec.data, spec.seed)
    nb = num_batches(len(data.x_train), spec.data.batch_size)
    if nb == 0:
        raise DataError(f"data.batch_size = {spec.data.batch_size} is larger than the training split "
                        f"({len(data.x_train)} samples of {data.name}): lower data.batch_size")
    start = perf_counter()
    model = compile_spec(spec, shapes=(data.input_dim, data.output_dim), steps_per_epoch=nb)
    return _Setup(spec, data, nb, model, perf_counter() - start)


def _test_batches(spec: Spec, data: Dataset) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    size = spec.data.eval_batch_size or min(1024, len(data.x_test))
    return batches(data.x_test, data.y_test, size, seed=spec.seed, epoch=0, shuffle=False, drop_last=False)


def _main_metric(spec: Spec, data: Dataset) -> str:
    return spec.eval.metric or ("accuracy" if data.is_classification else "mse")


def _score(metric: str, loss: float, accuracy: float | None) -> float:
    """Higher is better: the accuracy, or minus the loss (regression, or ``eval.metric: mse``)."""
    return accuracy if metric == "accuracy" and accuracy is not None else -loss


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def environment() -> dict[str, Any]:
    """Versions of pcc and its numerical stack, the Python, the platform and the devices."""
    import pcc

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "pcc": pcc.__version__,
        **{name: version(name) for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint")},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }


# --------------------------------------------------------------------------------------- run folders


def _new_run_dir(spec: Spec, out: str | Path | None) -> Path:
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise PccError(f"{path} is not empty: choose another --out, or continue that run with "
                           f"`pcc train --resume {path}`")
    else:
        stem = Path(spec.run.out_dir) / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, n = stem, 1
        while path.exists():
            n += 1
            path = stem.with_name(f"{stem.name}-{n}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run_spec_file(run_dir: Path) -> Path:
    path = run_dir / SPEC_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run folder (no {SPEC_FILE}); give a folder written by `pcc train`")
    return path


def load_run_spec(run_dir: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """The resolved spec a run folder was written with (``--set`` overrides applied on top)."""
    from pcc.spec.loader import load_spec

    return load_spec(_run_spec_file(Path(run_dir)), overrides=overrides)


def _open_checkpoints(run_dir: Path, keep: int | None) -> Checkpoints:
    """The checkpoints of an existing run folder; CheckpointError when it has none."""
    _run_spec_file(run_dir)
    ckpts = Checkpoints(run_dir, keep) if (run_dir / "checkpoints").is_dir() else None
    if ckpts is None or ckpts.latest() is None:
        raise CheckpointError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'} (the run stopped before its "
                              "first checkpoint): start it again with `pcc train SPEC`")
    return ckpts


def _all_agree(ok: bool) -> np.ndarray:
    """Every process's ``ok`` in a multi-process run (a collective: each process waits for all)."""
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray([ok], np.int32))).ravel().astype(bool)


def _same_on_every_process(what: str, value: str) -> None:
    """Raise on every process of a multi-process run when ``value`` differs from process 0's."""
    from jax.experimental import multihost_utils

    digest = np.frombuffer(hashlib.sha256(value.encode()).digest(), np.uint8)
    agree = _all_agree(np.array_equal(np.asarray(multihost_utils.broadcast_one_to_all(digest)), digest))
    if not agree.all():  # every process raises, so none is left waiting in a collective
        differ = ", ".join(str(i) for i in np.flatnonzero(~agree))
        raise PccError(f"the {what} of process {differ} differs from process 0's: start every process with the "
                       "same SPEC, --set overrides and --out (or --resume) folder")


def _shared_run_dir(spec: Spec, out: str | Path) -> Path:
    """A multi-process run's new folder: process 0 checks and creates it while the others wait."""
    error = None
    if jax.process_index() == 0:
        try:
            _new_run_dir(spec, out)
        except PccError as e:
            error = e
    if not _all_agree(error is None).all():
        raise error or PccError(f"process 0 could not start the run folder {out} (see its error)")
    return Path(out)


# --------------------------------------------------------------------------------------------- train


def train(
    spec: Spec,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool | None = None,
    callbacks: Sequence[Callback] = (),
) -> Summary:
    """Train ``spec`` into a new run folder (``out``, or ``runs/<name>-<timestamp>``), or continue the run in
    folder ``resume`` from its latest checkpoint (pass that folder's spec, e.g. :func:`load_run_spec`).

    ``progress``: show a progress bar on an interactive terminal (default ``spec.run.progress``).
    ``callbacks``: called with each metrics row (a dict) after it is written.
    Returns the :class:`Summary`; raises :class:`~pcc.errors.DivergenceError` when training diverges.
    """
    if out is not None and resume is not None:
        raise PccError("give either out (a new run folder) or resume (an existing one), not both")
    process, primary = jax.process_index(), jax.process_index() == 0
    if jax.process_count() > 1:
        if out is None and resume is None:
            raise PccError("a multi-process run writes one run folder: give every process the same out folder "
                           "(--out, on a file system they share)")
        _same_on_every_process("spec", spec.model_dump_json())
        _same_on_every_process("run folder", str(Path(out if resume is None else resume).absolute()))
    setup = _setup(spec)
    if resume is not None:
        run_dir = Path(resume)
        ckpts = _open_checkpoints(run_dir, spec.run.keep)
    else:
        run_dir = _new_run_dir(spec, out) if jax.process_count() == 1 else _shared_run_dir(spec, out)
        ckpts = Checkpoints(run_dir, spec.run.keep)
    log_dir = run_dir if primary else run_dir / f"process-{process}"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        trainer = _Trainer(setup, run_dir, ckpts, resume is not None, list(callbacks), log_dir)
    except BaseException:
        ckpts.close()
        raise
    # written once the checkpoint fits, so a resume with a wrong spec leaves the run folder as it was
    if primary:
        _write_text(run_dir / SPEC_FILE, yaml.safe_dump(spec.model_dump(mode="json", by_alias=True),
                                                        sort_keys=False, allow_unicode=True))
        _write_json(run_dir / ENV_FILE, environment())
    return trainer.run(spec.run.progress if progress is None else progress)


class _Trainer:
    """One session of a run: the loop, its bookkeeping and its faults."""

    def __init__(self, setup: _Setup, run_dir: Path, ckpts: Checkpoints, resume: bool, callbacks: list[Callback],
                 log_dir: Path):
        self.setup, self.spec, self.model, self.data = setup, setup.spec, setup.model, setup.data
        self.dir, self.ckpts, self.callbacks = run_dir, ckpts, callbacks
        self.log_dir = log_dir  # metrics and summary: the run folder, or process-<i>/ in it for processes i > 0
        self.nb = setup.steps_per_epoch
        self.total = self.nb * self.spec.learning.epochs
        self.labels = list(self.model.graph.layer_labels)
        self.metric = _main_metric(self.spec, self.data)
        self.score: float | None = None  # score of the evaluation at step pos.last_eval
        self.compile_time = setup.compile_time
        self._first_step = True
        if resume:
            step = ckpts.latest()
            self.state, self.pos = ckpts.restore(step, jax.eval_shape(self.model.init))
            if self.pos.steps_per_epoch != self.nb:
                raise CheckpointError(
                    f"{ckpts.folder(step)}: the checkpoint was taken with {self.pos.steps_per_epoch} batches per "
                    f"epoch, this spec gives {self.nb} (data.batch_size or the dataset changed): resume with the "
                    "run's own spec.yaml")
        else:
            self.state, self.pos = self.model.init(), Position(steps_per_epoch=self.nb)
        self.log = MetricsLog(log_dir, columns(self.labels, alignment=bool(self.spec.run.alignment_every)),
                              keep=self.pos.rows)

    # ------------------------------------------------------------------------------------- the loop
    def run(self, show: bool) -> Summary:
        status: Status = "completed"
        self._t0 = perf_counter()
        try:
            with graceful_interrupt() as stop, Bar(self.total, self.pos.step, show) as bar, self.log:
                try:
                    self._epochs(stop, bar)
                except KeyboardInterrupt:
                    status = "interrupted"
                self._checkpoint()
            return self._summarize(status)
        except DivergenceError:
            self._summarize("diverged")
            raise
        finally:
            self.ckpts.close()

    def _epochs(self, stop: StopFlag, bar: Bar) -> None:
        spec = self.spec
        for epoch in range(self.pos.epoch, spec.learning.epochs):
            epoch_batches = batches(self.data.x_train, self.data.y_train, spec.data.batch_size, seed=spec.seed,
                                    epoch=epoch, start=self.pos.batch)
            for batch in prefetch(epoch_batches, self.model.place_batch):
                if stop.requested:
                    raise KeyboardInterrupt
                align = self._alignment(batch)  # from the state before the step: train_step donates it
                start = perf_counter()
                self.state, metrics = self.model.train_step(self.state, batch)
                self.pos = replace(self.pos, batch=self.pos.batch + 1, step=self.pos.step + 1)
                if self._first_step:
                    jax.block_until_ready(metrics.loss)
                    self.compile_time += perf_counter() - start
                    self._first_step = False
                self._after_step(metrics, bar, align)
            self._end_epoch(epoch, bar)

    def _alignment(self, batch: tuple[jax.Array, jax.Array]) -> dict[str, float | None] | None:
        """The alignment metrics of the coming step's update, when the step is on the ``alignment_every``
        cadence (else None)."""
        every = self.spec.run.alignment_every
        if not every or (self.pos.step + 1) % every:
            return None
        from pcc.theory.diagnose import alignment

        return alignment(self.model, self.state, *batch).metrics()

    def _after_step(self, metrics: Any, bar: Bar, align: dict[str, float | None] | None = None) -> None:
        step, row = self.pos.step, None
        if step % self.spec.run.log_every == 0 or step == self.total:
            row = train_row(jax.device_get(metrics), self.labels, step=step, epoch=self._epoch(), wall=self._wall())
            self._write(row)
            if not finite(row):
                raise DivergenceError(self._diverged(f"loss or energy (loss {row['loss']}, energy {row['energy_final']})"))
        if align is not None:
            self._write(alignment_row(align, step=step, epoch=self._epoch(), wall=self._wall()))
        bar.update(step, self._epoch(), row)
        every = self.spec.eval.every_steps
        if every and step % every == 0:
            self._evaluate(bar)

    def _end_epoch(self, epoch: int, bar: Bar) -> None:
        done, last = epoch + 1, epoch + 1 == self.spec.learning.epochs
        every_eval, every_ckpt = self.spec.eval.every_epochs, self.spec.run.checkpoint_every_epochs
        if (last or (every_eval and done % every_eval == 0)) and self.pos.last_eval != self.pos.step:
            self._evaluate(bar)
        self.pos = replace(self.pos, epoch=done, batch=0)
        if last or (every_ckpt and done % every_ckpt == 0):
            self._checkpoint()

    # ------------------------------------------------------------------------------- bookkeeping
    def _evaluate(self, bar: Bar) -> None:
        result = self.model.evaluate(self.state, _test_batches(self.spec, self.data))
        row = eval_row(result, step=self.pos.step, epoch=self._epoch(), wall=self._wall())
        self._write(row)
        bar.update(self.pos.step, self._epoch(), row)
        if not finite(row):
            raise DivergenceError(self._diverged(f"test loss ({row['loss']})"))
        self.pos = replace(self.pos, last_eval=self.pos.step)
        self.score = _score(self.metric, result.loss, result.accuracy)

    def _write(self, row: Row) -> None:
        self.log.write(row)
        for callback in self.callbacks:
            callback(row)

    def _checkpoint(self) -> None:
        """Checkpoint the current position (once per step); a non-finite state is never written."""
        step = self.pos.step
        if step in self.ckpts.steps():
            return
        arrays = to_arrays(self.state)
        if not all_finite(arrays):
            raise DivergenceError(self._diverged("weights or optimiser state"))
        position = replace(self.pos, rows=self.log.count, wall=self._wall())
        self.ckpts.save(step, arrays, position, self.score if self.pos.last_eval == step else None)

    def _diverged(self, what: str) -> str:
        eta, lr = self.spec.inference.step_size, self.spec.learning.optimizer.lr
        last = self.ckpts.latest()
        kept = (f"The last good checkpoint is kept: {self.ckpts.folder(last)} (step {last})." if last is not None
                else "No checkpoint had been written yet.")
        return (f"{self.dir}: training diverged at step {self.pos.step} (epoch {self._epoch():.2f}): non-finite {what}. "
                f"Likely cause: the activity step size inference.step_size = {eta:g} or the weight learning rate "
                f"learning.optimizer.lr = {lr:g} is too large; lower one (e.g. --set inference.step_size={eta / 10:g} "
                f"or --set learning.optimizer.lr={lr / 10:g}). {kept}")

    def _epoch(self) -> float:
        return round(self.pos.step / self.nb, 6)

    def _wall(self) -> float:
        return round(self.pos.wall + perf_counter() - self._t0, 3)

    # ----------------------------------------------------------------------------------- summary
    def _summarize(self, status: Status) -> Summary:
        rows = read_rows(self.log_dir)
        train_rows = [r for r in rows if r["kind"] == "train"]
        evals = [r for r in rows if r["kind"] == "eval" and np.isfinite(r["loss"])]
        best = max(evals, key=lambda r: (_score(self.metric, r["loss"], r.get("accuracy")), r["step"]), default=None)
        accuracies = [r["accuracy"] for r in evals if "accuracy" in r]
        latest, best_ckpt = self.ckpts.latest(), self.ckpts.best()
        summary = Summary(
            name=self.spec.name, run_dir=str(self.dir), status=status, steps=self.pos.step,
            epochs=self._epoch(),
            final_train_loss=train_rows[-1]["loss"] if train_rows else None,
            final_test_loss=evals[-1]["loss"] if evals else None,
            final_test_accuracy=evals[-1].get("accuracy") if evals else None,
            best_test_loss=min((r["loss"] for r in evals), default=None),
            best_test_accuracy=max(accuracies, default=None),
            best_step=best["step"] if best else None,
            wall_time=self._wall(), compile_time=round(self.compile_time, 3),
            checkpoint=None if latest is None else str(self.ckpts.folder(latest)),
            best_checkpoint=None if best_ckpt is None else str(self.ckpts.folder(best_ckpt)),
        )
        _write_json(self.log_dir / SUMMARY_FILE, summary.to_dict())
        return summary


# ------------------------------------------------------------------------------------------ evaluate


def evaluate_run(run_dir: str | Path, which: Literal["best", "last"] = "best") -> dict[str, Any]:
    """Evaluate a run's best (or last) checkpoint on its test split. Falls back to the last checkpoint when
    none was evaluated (``which`` in the answer says which one was used)."""
    if which not in ("best", "last"):
        raise PccError(f"which must be 'best' or 'last', got {which!r}")
    run_dir = Path(run_dir)
    setup = _setup(load_run_spec(run_dir))
    ckpts = _open_checkpoints(run_dir, keep=None)
    try:
        step = ckpts.best() if which == "best" else None
        used = which if step is not None else "last"
        step = ckpts.latest() if step is None else step
        state, _ = ckpts.restore(step, jax.eval_shape(setup.model.init))
    finally:
        ckpts.close()
    result = setup.model.evaluate(state, _test_batches(setup.spec, setup.data))
    return {"run_dir": str(run_dir), "which": used, "step": step, "checkpoint": str(ckpts.folder(step)),
            "loss": result.loss, "accuracy": result.accuracy, "samples": result.samples}
