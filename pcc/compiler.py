"""``pcc.compile(spec) -> Compiled``: lower, parameterise, build the modules, jit the loops.

Each public function of :class:`Compiled` is one XLA program; a train step holds the feedforward
initialisation, all T inference steps, the weight gradient and the optimiser update.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from pcc.errors import PccError
from pcc.ir.graph import Graph
from pcc.nn.network import PCNetwork, abstract_network, build_network
from pcc.parallel import batch_sharding, make_mesh, shard_batch, state_shardings
from pcc.param.rules import EdgeParam, parameterise_spec
from pcc.pc.chunks import batch_groups, chunked_layout, layer_chunks
from pcc.pc.inference import SOLVERS
from pcc.pc.learning import NUDGE_PHASES, InferenceResult, Nudging, Program, StepMetrics, train_step_of
from pcc.pc.modes import MODES, inpaint
from pcc.pc.optim import make_beta_schedule, make_optimizer, make_schedule, scale_by_tree, with_float32_master
from pcc.spec.models import Spec, carries_errors


@jax.tree_util.register_dataclass
@dataclass
class TrainState:
    """Weights, optimiser state, the step counter and the run's random key."""

    params: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array


@dataclass(frozen=True)
class EvalMetrics:
    """Test metrics over a set of batches (means over samples)."""

    loss: float
    accuracy: float | None
    samples: int
    energy: float | None = None  # F after inference, in modes that infer at test time


class Compiled:
    """A compiled spec: the graph, its parameterisation, and the jitted functions."""

    def __init__(self, spec: Spec, graph: Graph, table: dict[str, EdgeParam], steps_per_epoch: int | None):
        self.spec, self.graph, self.table = spec, graph, table
        self.steps_per_epoch = steps_per_epoch
        graphdef, _ = nnx.split(abstract_network(graph, table))
        self._init = jax.jit(self._init_impl)
        inf, learn = spec.inference, spec.learning
        tuned_b = inf.tuned_batch_size or spec.data.batch_size
        self.mesh = make_mesh(spec.parallel, spec.data.batch_size)
        layout = chunked_layout(graph, table, layer_chunks(spec, graph))
        self.program = Program(
            graphdef=graphdef, graph=graph, solver=SOLVERS[inf.solver](inf), steps=inf.steps, tol=inf.tol,
            grad_scale=1.0 if inf.step_convention == "per_sample" else 1.0 / tuned_b,
            init=inf.init, init_std=inf.init_std, tx=self._weight_optimizer(), state=inf.state,
            carry_errors=carries_errors(spec), layout=layout,
            groups=batch_groups(spec, graph, alone=layout is None and self.mesh is None),
        )
        nudging = learn.nudge and Nudging(NUDGE_PHASES[learn.nudge.mode], self._beta_schedule())
        step = train_step_of(learn.algorithm, learn.updates, inf.steps, nudging)
        self._train_step = jax.jit(partial(_train_step, self.program, step), donate_argnums=0)
        self._infer = jax.jit(self._infer_impl)
        self.mode = MODES[spec.model.mode]
        f32 = lambda a: a.astype(jnp.float32)  # predictions leave in float32 whatever `model.dtype` is
        self._predict = jax.jit(lambda params, x, key: f32(self.mode.predict(self.program, params, x, key)[0]))
        self._inpaint = jax.jit(lambda params, x, mask, key: f32(inpaint(self.program, params, x, mask, key)))

    # ------------------------------------------------------------------------------- construction
    def _weight_optimizer(self) -> optax.GradientTransformation:
        learn = self.spec.learning
        lr: Any = learn.optimizer.lr
        if learn.schedule.name != "constant":
            if not self.steps_per_epoch:
                raise PccError(f"schedule '{learn.schedule.name}' needs the number of steps per epoch: "
                               "pass steps_per_epoch to pcc.compile()")
            lr = make_schedule(learn.schedule, lr, self.steps_per_epoch * learn.epochs, self.steps_per_epoch)
        tx = make_optimizer(learn.optimizer, lr)
        if learn.lr_scaling:
            tx = optax.chain(tx, scale_by_tree(self._lr_scales()))
        if self.graph.dtype != "float32":  # float32 optimiser state and master weights
            tx = with_float32_master(tx)
        return tx

    def _lr_scales(self):
        """A pytree like the params holding each leaf's learning-rate scale."""
        net = abstract_network(self.graph, self.table)
        _, params = nnx.split(net)
        pure = nnx.to_pure_dict(params)
        scales = {**jax.tree.map(lambda _: 1.0, pure),  # precisions and the amortiser: 1
                  "edges": {dst: {src: {leaf: net.edges[dst][src].lr_scale for leaf in leaves}
                                  for src, leaves in srcs.items()}
                            for dst, srcs in pure["edges"].items()}}
        nnx.replace_by_pure_dict(params, scales)
        return params

    def _beta_schedule(self):
        """β of ``learning.nudge`` as a function of the train step."""
        nudge = self.spec.learning.nudge
        if nudge.beta_final is None:
            return lambda t: nudge.beta
        if not self.steps_per_epoch:
            raise PccError("a β schedule (`learning.nudge.beta_final`) needs the number of steps per epoch: "
                           "pass steps_per_epoch to pcc.compile()")
        return make_beta_schedule(nudge, self.steps_per_epoch * self.spec.learning.epochs)

    @cached_property
    def network(self) -> PCNetwork:
        """The nnx module with the weights of ``init()`` (for inspection)."""
        return build_network(self.graph, self.table, seed=self.spec.seed)

    # ------------------------------------------------------------------------------- public API
    def init(self, seed: int | None = None) -> TrainState:
        """Fresh weights and optimiser state from ``seed`` (default: the spec's)."""
        state = self._init(self.spec.seed if seed is None else seed)
        return state if self.mesh is None else jax.device_put(state, state_shardings(self.mesh, state))

    def _init_impl(self, seed) -> TrainState:
        params = nnx.split(build_network(self.graph, self.table, jax.random.key(seed)))[1]
        return TrainState(params, self.program.tx.init(params), jnp.asarray(0, jnp.int32),
                          jax.random.key_data(jax.random.key(seed + 1)))

    def train_step(self, state: TrainState, batch: tuple[Any, Any]) -> tuple[TrainState, StepMetrics]:
        """One train step on ``batch = (x, y)``: x (B, D), y (B, C). ``state``'s buffers are donated."""
        return self._train_step(state, *self.place_batch(batch))

    def trace_train_step(self, state: TrainState, batch: tuple[Any, Any]) -> jax.stages.Traced:
        """The train step traced for ``state`` and ``batch``: ``.lower()`` then ``.compile()`` it ahead of time
        (the program :meth:`train_step` then runs)."""
        return self._train_step.trace(state, *self.place_batch(batch))

    def place_batch(self, batch: tuple[Any, Any]) -> tuple[jax.Array, jax.Array]:
        """``batch = (x, y)`` on the device(s), split along the data axis when there is a mesh; arrays placed
        already pass through. The copy is asynchronous: placing the next batch while a step runs hides it."""
        x, y = (self._place(a) for a in batch)
        return x, y

    def _place(self, array) -> jax.Array:
        if self.mesh is None:
            return jnp.asarray(array)
        placed = isinstance(array, jax.Array) and array.sharding == batch_sharding(self.mesh)
        return array if placed else shard_batch(self.mesh, array)

    def _infer_impl(self, params, x, y, key) -> InferenceResult:
        return self.program.infer(params, x, y, key)

    def infer(self, state: TrainState, x, y) -> InferenceResult:
        """Inference at the current weights: activities, per-sample and per-layer energies, steps taken."""
        return self._infer(state.params, jnp.asarray(x), jnp.asarray(y), _step_key(state))

    def predict(self, state: TrainState, x) -> jax.Array:
        """The prediction from x alone: the feedforward output (logits under a cross-entropy output) in
        ``mode: discriminative``, the inferred input node (the label) in ``generative``, the reconstruction
        in ``unsupervised`` (see :mod:`pcc.pc.modes`)."""
        return self._predict(state.params, jnp.asarray(x), _step_key(state))

    def inpaint(self, state: TrainState, x, mask) -> jax.Array:
        """x completed by inference where ``mask`` (like x; 1 = known) is 0 (generative and unsupervised
        modes): the known entries are clamped, the rest and every free node inferred."""
        return self._inpaint(state.params, jnp.asarray(x), jnp.asarray(mask), _step_key(state))

    def evaluate(self, state: TrainState, batches: Iterable[tuple[Any, Any]]) -> EvalMetrics:
        """Mean loss (and accuracy for one-hot targets) of the mode's prediction over ``batches``, and the
        mean energy after inference in modes that infer (see :mod:`pcc.pc.modes`)."""
        sums, n, classify, key = [], 0, self.mode.accuracy, _step_key(state)
        for x, y in batches:  # dispatched without waiting: the host reads the sums back once, at the end
            sums.append(self._eval_batch(state.params, jnp.asarray(x), jnp.asarray(y), key))
            n += len(x)
            classify = classify and _is_one_hot(y)
        if n == 0:
            raise PccError("evaluate() got no batches")
        sums = jax.device_get(sums)
        loss_sum, energy_sum = (sum(float(s[i]) for s in sums) for i in (0, 2))
        correct = sum(int(s[1]) for s in sums)
        infers = self.spec.model.mode != "discriminative"
        return EvalMetrics(loss_sum / n, correct / n if classify else None, n, energy_sum / n if infers else None)

    @cached_property
    def _eval_batch(self):
        @jax.jit
        def run(params, x, y, key):
            pred, energy = self.mode.predict(self.program, params, x, key)
            hits = jnp.sum(jnp.argmax(pred, -1) == jnp.argmax(y, -1))
            loss = self.mode.loss(self.program, params, x, y, pred)
            return loss.sum(), hits, 0.0 if energy is None else energy.sum()

        return run


def _train_step(program: Program, step, state: TrainState, x, y):
    params, opt_state, metrics = step(program, state.params, state.opt_state, x, y, _step_key(state), state.step)
    return TrainState(params, opt_state, state.step + 1, state.key), metrics


def _step_key(state: TrainState) -> jax.Array:
    return jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)


def _is_one_hot(y) -> bool:
    y = np.asarray(y)
    return y.ndim == 2 and bool(np.all((y == 0) | (y == 1))) and bool(np.all(y.sum(-1) == 1))


def compile(spec: Spec, *, shapes: tuple[int, int] | None = None, steps_per_epoch: int | None = None) -> Compiled:
    """Validate, lower, parameterise, build and jit ``spec``.

    ``shapes`` is (input dim, target dim); by default it comes from the spec's dataset.
    ``steps_per_epoch`` is needed by learning-rate schedules other than ``constant``.
    """
    graph, table = parameterise_spec(spec, shapes)
    return Compiled(spec, graph, table, steps_per_epoch)
