"""pcc.theory.diagnose against oracles: the closed forms, the compiled while loop, BP at the feedforward state."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from pcc.compiler import compile
from pcc.data import load_dataset
from pcc.data.datasets import FASHION_MNIST_DIR
from pcc.errors import PccError
from pcc.ir.lower import lower
from pcc.spec.loader import load_spec
from pcc.theory import linear as T
from pcc.theory.diagnose import (
    analytic_spectrum,
    autodiff_spectrum,
    cosine,
    diagnose,
    layer_vectors,
    plot_diagnosis,
    trajectory,
)
from pcc.theory.network import linear_chain
from tests.helpers import batch, chain_layers, make_spec

D, C = 6, 3


def linear_resnet(N=8, H=4, **inference):
    """A μPC linear ResNet: a dense stem, H − 1 residual layers, a readout."""
    spec = make_spec(chain_layers([N], residual_repeat=H - 1), param="mupc", act="identity",
                     inference={"step_size": 0.2, **inference})
    return compile(spec, shapes=(D, C))


@pytest.fixture(scope="module")
def relu_resnet():
    spec = make_spec(chain_layers([8], residual_repeat=3), param="mupc", act="relu", inference={"steps": 4})
    return compile(spec, shapes=(D, C))


def test_autodiff_condition_number_equals_the_closed_form():
    m = linear_resnet()
    params = m.init().params
    x, y = batch(0, 4, D, C, classes=False)
    chain = linear_chain(m, params)
    auto, exact = autodiff_spectrum(m, params, x, y, samples=2), analytic_spectrum(chain)
    assert (auto.method, exact.method, auto.samples) == ("autodiff", "analytic", 2)
    np.testing.assert_allclose(auto.eigenvalues, T.hessian_spectrum(chain), rtol=1e-4, atol=1e-5)
    assert auto.condition_number == pytest.approx(T.condition_number(chain), rel=1e-3)
    assert exact.condition_number == pytest.approx(T.condition_number(chain), rel=1e-12)


def test_cosine_of_a_gradient_with_itself_is_one(relu_resnet):
    g = relu_resnet.init().params
    vectors = layer_vectors(relu_resnet.graph, g)
    assert len(vectors) == len(relu_resnet.graph.layer_labels) == 5
    assert [cosine(v, v) for v in vectors] == pytest.approx([1.0] * 5)
    assert [cosine(v, -2 * v) for v in vectors] == pytest.approx([-1.0] * 5)
    assert np.isnan(cosine(vectors[0], 0 * vectors[0]))


def test_without_inference_only_the_readout_learns_and_it_learns_like_bp(relu_resnet, tmp_path):
    """At the feedforward activities every hidden error is 0: ∇_θ F is BP's gradient on the readout, 0 elsewhere."""
    m = compile(relu_resnet.spec.model_copy(update={"inference": relu_resnet.spec.inference.model_copy(
        update={"steps": 0})}), shapes=(D, C))
    x, y = batch(1, 8, D, C)
    diag = diagnose(m, m.init(), x, y, max_steps=3)
    *hidden, readout = diag.layers
    assert readout.cosine == pytest.approx(1.0, abs=1e-6) and readout.norm_ratio == pytest.approx(1.0, rel=1e-5)
    assert all(layer.pc_grad_norm < 1e-5 * layer.bp_grad_norm for layer in hidden)  # 0 up to rounding
    assert diag.inference_steps == 0 and diag.spectrum.method == "autodiff"
    # JSON-ready and plottable
    assert json.loads(json.dumps(diag.to_dict(), allow_nan=False))["trajectory"]["steps_to_tol"] is None  # the output error is not settled
    assert plot_diagnosis(diag, tmp_path / "d.png").stat().st_size > 0


def test_pc_bp_cosine_at_equilibrium_matches_the_closed_form():
    m = linear_resnet(N=16, H=4, steps=20000, tol=1e-6)
    state = m.init()
    x, y = batch(2, 16, D, C, classes=False)
    diag = diagnose(m, state, x, y, max_steps=5)
    chain = linear_chain(m, state.params)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    pc, bp = T.pc_weight_gradients_at_equilibrium(chain, x64, y64), T.bp_weight_gradients(chain, x64, y64)
    assert diag.inference_steps < 20000
    assert diag.cosine == pytest.approx(T.gradient_cosine(pc, bp), abs=1e-4)
    assert [layer.cosine for layer in diag.layers] == pytest.approx(T.layer_cosines(pc, bp), abs=1e-3)
    lin = diag.linear
    assert lin.z_max_abs_diff < 1e-3
    assert lin.energy_numerical == pytest.approx(lin.energy_closed_form, rel=1e-4)
    s = T.energy_rescaling(chain)
    assert lin.s_minus_identity == pytest.approx(np.linalg.norm(s - np.eye(C), 2))
    assert diag.spectrum.method == "analytic"


def test_ode_inference_is_diagnosed_without_a_trajectory(tmp_path):
    """ODE inference has no discrete steps to record: the diagnosis leaves the trajectory out (saying so) and
    still reaches the closed-form equilibrium and its PC-vs-BP cosines."""
    m = linear_resnet(N=8, H=3, solver="ode", steps=200, ode={"rtol": 1e-6, "atol": 1e-6, "max_steps": 20000})
    state = m.init()
    x, y = batch(4, 8, D, C, classes=False)
    diag = diagnose(m, state, x, y)
    chain = linear_chain(m, state.params)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    pc, bp = T.pc_weight_gradients_at_equilibrium(chain, x64, y64), T.bp_weight_gradients(chain, x64, y64)
    assert diag.trajectory is None and any("ODE" in note for note in diag.notes)
    assert diag.to_dict()["trajectory"] is None
    assert diag.linear.z_max_abs_diff < 1e-2
    assert diag.linear.energy_numerical == pytest.approx(diag.linear.energy_closed_form, rel=1e-5)
    assert [layer.cosine for layer in diag.layers] == pytest.approx(T.layer_cosines(pc, bp), abs=1e-3)
    assert plot_diagnosis(diag, tmp_path / "d.png").stat().st_size > 0


def test_steps_to_tolerance_is_monotone_and_matches_the_compiled_loop():
    m = linear_resnet(steps=400, tol=1e-3)
    state = m.init()
    x, y = batch(3, 4, D, C, classes=False)
    traj = trajectory(m, state, x, y, max_steps=400, tol=1e-3)
    steps = [traj.steps_to(t) for t in (1e-1, 1e-2, 1e-3, 1e-4)]
    assert None not in steps and steps == sorted(steps) and steps[0] < steps[-1]
    # the jitted while loop of the compiled inference stops at the same step
    assert abs(traj.steps_to_tol - int(m.infer(state, x, y).steps)) <= 1
    assert traj.steps_to(1e-12) is None
    # feedforward initialisation: hidden energies 0, output energy = the loss
    loss = 0.5 * np.sum((y - np.asarray(m.predict(state, x))) ** 2, -1).mean()
    np.testing.assert_allclose(traj.energies[0], [0, 0, 0, 0, loss], atol=1e-6, rtol=1e-5)
    assert traj.energies.shape == (401, 5) and traj.energies[-1].sum() < traj.energies[0].sum()


def test_hessian_size_guard():
    spec = make_spec(chain_layers([4100]), act="tanh", inference={"steps": 1})
    m = compile(spec, shapes=(D, C))
    state = m.init()
    x, y = batch(4, 2, D, C)
    with pytest.raises(PccError, match="free units 4100 > 4096"):
        diagnose(m, state, x, y, hessian="autodiff")
    diag = diagnose(m, state, x, y, max_steps=1)
    assert diag.spectrum is None and "4096" in diag.notes[0]
    with pytest.raises(PccError, match="linear chain"):
        diagnose(m, state, x, y, hessian="analytic")
    assert jax.numpy.isfinite(diag.cosine)


# ------------------------------------------------------------------------------------ the paper specs
PAPER = Path(__file__).parent.parent / "specs" / "paper"
DEPTHS = (8, 16, 32, 64, 128)


@pytest.mark.parametrize("kind", ["mupc", "sp", "bp"])
def test_paper_specs(kind):
    """μPC, sp and BP ResNets of width 128 at every depth: a stem, H − 1 residual layers, a readout; T = H."""
    for H in DEPTHS:
        spec = load_spec(PAPER / f"{kind}-h{H}.yaml")
        assert spec.name == f"{kind}-h{H}" and spec.data.dataset == "fashion_mnist" and spec.data.batch_size == 64
        assert spec.model.parameterisation == ("sp" if kind == "sp" else "mupc")
        assert spec.learning.algorithm == ("bp" if kind == "bp" else "pc") and spec.learning.epochs == 1
        inf = spec.inference
        assert (inf.steps, inf.step_size, inf.step_convention, inf.tuned_batch_size) == (H, 0.5, "batch_mean", 64)
        graph = lower(spec, (784, 10))
        assert graph.depth == H + 1 and [n.width for n in graph.free] == [128, 128]
        assert (PAPER / f"{kind}-h{H}.yaml").read_text().startswith(
            "# yaml-language-server: $schema=../pcc-spec.schema.json\n")


@pytest.mark.slow
@pytest.mark.skipif(not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason="apt-get install -y dataset-fashion-mnist")
def test_mupc_keeps_deep_activities_of_order_one_where_sp_does_not():
    """THEORY.md §3: hidden RMS activity stays O(1) at depth under μPC, and grows under sp with skips."""
    peaks = {}
    for kind in ("mupc", "sp"):
        spec = load_spec(PAPER / f"{kind}-h64.yaml", ["data.limit_train=64", "data.limit_test=16"])
        data = load_dataset(spec.data, spec.seed)
        m = compile(spec, shapes=(data.input_dim, data.output_dim))
        diag = diagnose(m, m.init(), data.x_test[:8], data.y_test[:8], hessian="none", max_steps=1)
        peaks[kind] = max(layer.forward_rms for layer in diag.layers[:-1])
        assert diag.spectrum is None and diag.notes
    assert 0.1 < peaks["mupc"] < 1.0 and peaks["sp"] > 10 * peaks["mupc"]
