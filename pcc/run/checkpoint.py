"""Checkpoints of a run: the TrainState as plain arrays and the runner's position, written atomically by orbax.

Layout: ``RUN_DIR/checkpoints/<step>/`` with the items ``state`` (the arrays), ``position`` (JSON: where the
runner stands) and ``metrics`` (the test score, when the step was evaluated). orbax writes a step into a
temporary folder and renames it when complete, so a save killed half-way leaves the earlier checkpoints as
they were, and a half-written folder is never listed as a checkpoint.

The state is stored as a nested dict of numpy arrays keyed by its pytree path (``params/edges/h1/input/
kernel/value``, ``opt_state/0/mu/...``, ``step``, ``key``) rather than as nnx or optax objects: any optimiser
state round-trips without special cases, and a restore into a model of another shape names the leaf that
does not fit. Retention: the last ``keep`` checkpoints and the best-scoring one (orbax preservation
policies).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from pcc.errors import CheckpointError

FOLDER = "checkpoints"
TMP_MARK = ".orbax-checkpoint-tmp"  # orbax's suffix for a step folder being written
_A = ocp.args
_POLICY = ocp.checkpoint_managers


@dataclass(frozen=True)
class Position:
    """Where the runner stands: the next batch is batch ``batch`` of epoch ``epoch`` (0-based)."""

    epoch: int = 0
    batch: int = 0
    step: int = 0  # train steps done
    steps_per_epoch: int = 0
    last_eval: int = -1  # step of the last evaluation (-1: none)
    rows: int = 0  # metrics rows written
    wall: float = 0.0  # seconds of training so far

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Position":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


# ------------------------------------------------------------------------------ pytree <-> plain arrays


def _key_name(k: Any) -> str:
    for attr in ("name", "key", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _leaves(tree: Any) -> dict[tuple[str, ...], Any]:
    path_leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {tuple(_key_name(k) for k in path): leaf for path, leaf in path_leaves}


def to_arrays(tree: Any) -> dict[str, Any]:
    """``tree`` as a nested dict of numpy arrays keyed by pytree path (copied to the host)."""
    out: dict[str, Any] = {}
    for path, leaf in _leaves(tree).items():
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = np.asarray(jax.device_get(leaf))
    return out


def _flatten_dict(d: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for k, v in d.items():
        out.update(_flatten_dict(v, (*prefix, k)) if isinstance(v, dict) else {(*prefix, k): v})
    return out


def from_arrays(template: Any, arrays: dict[str, Any], where: str) -> Any:
    """``template`` (a pytree) with its leaves replaced by ``arrays``; CheckpointError naming each misfit."""
    want, have = _leaves(template), _flatten_dict(arrays)
    problems = [f"missing {'/'.join(p)}" for p in want if p not in have]
    problems += [f"unexpected {'/'.join(p)}" for p in have if p not in want]
    problems += [
        f"{'/'.join(p)}: checkpoint has {have[p].dtype}{list(have[p].shape)}, the model needs {leaf.dtype}{list(leaf.shape)}"
        for p, leaf in want.items()
        if p in have and (np.shape(have[p]) != leaf.shape or np.asarray(have[p]).dtype != leaf.dtype)
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise CheckpointError(
            f"{where}: the checkpoint does not fit this model ({shown}). It was written by a spec with another "
            "model or optimiser: resume with the run's own spec.yaml, or start a new run."
        )
    _, treedef = jax.tree_util.tree_flatten(template)
    return jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(have[p]) for p in want])


def all_finite(arrays: dict[str, Any]) -> bool:
    """True when every floating-point array in the nested dict is finite."""
    return all(np.all(np.isfinite(a)) for a in _flatten_dict(arrays).values() if np.issubdtype(a.dtype, np.floating))


# ---------------------------------------------------------------------------------------- manager


class _QuietMissingMetrics(logging.Filter):
    """Drops orbax's warning for a checkpoint saved without a score (most are: only evaluated steps have one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "tracked_metric" not in record.getMessage()


logging.getLogger("absl").addFilter(_QuietMissingMetrics())


def _score(metrics: dict[str, float]) -> float:
    return metrics["score"]


class Checkpoints:
    """The checkpoints of one run folder. ``keep``: how many recent ones to keep besides the best (None: all).

    Scores are "higher is better" (the runner passes the accuracy, or minus the test loss).
    """

    def __init__(self, run_dir: str | Path, keep: int | None = None):
        self.dir = Path(run_dir) / FOLDER
        policy = None if keep is None else _POLICY.AnyPreservationPolicy([
            _POLICY.LatestN(keep),
            _POLICY.BestN(get_metric_fn=_score, n=1, keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=False, best_fn=_score, best_mode="max", preservation_policy=policy,
            create=keep is not None,
        )
        if keep is not None and jax.process_index() == 0:  # the one writer (orbax writes from process 0)
            self._remove_unfinished()
        try:
            self.manager = ocp.CheckpointManager(self.dir.absolute(), options=options)
        except Exception as e:  # noqa: BLE001 - any failure to open is reported the same way
            raise CheckpointError(f"{self.dir}: cannot open the checkpoints ({_reason(e)})") from None

    def _remove_unfinished(self) -> None:
        """Delete the temporary folders of saves that never completed (a killed process leaves them).

        Done here, synchronously, by the one writer, rather than by orbax's background cleanup, which races
        with itself when a folder is opened twice."""
        for tmp in self.dir.glob(f"*{TMP_MARK}*"):
            shutil.rmtree(tmp, ignore_errors=True)

    def steps(self) -> list[int]:
        """Steps with a complete checkpoint, ascending."""
        return sorted(self.manager.all_steps())

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def best(self) -> int | None:
        """The best-scoring step (None when no checkpoint has a score)."""
        return self.manager.best_step() if any(self.manager.metrics(s) for s in self.steps()) else None

    def folder(self, step: int) -> Path:
        return self.dir / str(step)

    def save(self, step: int, arrays: dict[str, Any], position: Position, score: float | None = None) -> None:
        """Write checkpoint ``step`` (``arrays``: :func:`to_arrays` of the state); returns once it is on disk."""
        self.manager.save(
            step,
            args=_A.Composite(state=_A.StandardSave(arrays), position=_A.JsonSave(asdict(position))),
            metrics=None if score is None else {"score": float(score)},
        )
        self.manager.wait_until_finished()

    def restore(self, step: int, template: Any) -> tuple[Any, Position]:
        """The state (shaped like ``template``) and position of checkpoint ``step``."""
        where = self.folder(step)
        try:
            item = self.manager.restore(step, args=_A.Composite(state=_A.StandardRestore(), position=_A.JsonRestore()))
            position = Position.from_dict(item["position"])
            arrays = item["state"]
        except Exception as e:  # noqa: BLE001 - a corrupt checkpoint can fail in many ways; all mean the same
            earlier = [s for s in self.steps() if s < step]
            hint = (f"delete {where} to resume from the previous checkpoint (step {earlier[-1]})" if earlier
                    else "start the run again")
            raise CheckpointError(f"{where}: the checkpoint is unreadable or incomplete ({_reason(e)}); {hint}") from None
        return from_arrays(template, arrays, str(where)), position

    def close(self) -> None:
        self.manager.close()


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__
