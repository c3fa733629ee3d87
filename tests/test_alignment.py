"""PC-vs-BP alignment logged by the runner (``run.alignment_every``) against oracles: the linear closed forms at
equilibrium, the train step's own gradients (pc and bp), ``pcc diagnose``; its cadence, resume, validation."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from pcc.compiler import compile
from pcc.data import batches, load_dataset
from pcc.errors import PccError, SpecError
from pcc.run import load_run_spec, plot_runs, read_rows, train
from pcc.run.checkpoint import Checkpoints
from pcc.run.metrics import columns
from pcc.run.runner import _setup
from pcc.spec.loader import load_spec_text
from pcc.spec.models import Spec
from pcc.theory import diagnose as D
from pcc.theory import linear as T
from pcc.theory.network import linear_chain
from tests.helpers import batch, chain_layers, copy_state, make_spec

IN, OUT = 6, 3


def run_spec(model: dict, **sections) -> Spec:
    """A short run on synthetic data (``sections`` update the defaults section by section)."""
    base = {
        "name": "align",
        "data": {"dataset": "synthetic", "batch_size": 16,
                 "synthetic": {"kind": "gaussian_classes", "n_train": 64, "n_test": 16, "input_dim": IN,
                               "output_dim": OUT}},
        "model": model,
        "inference": {"steps": 6, "step_size": 0.2},
        "learning": {"epochs": 2, "optimizer": {"name": "sgd", "lr": 0.05}},
        "eval": {"every_epochs": 0},
        "run": {"log_every": 4, "progress": False},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return Spec.model_validate(base)


RESNET = {"parameterisation": "mupc", "activation": "relu", "layers": chain_layers([8], residual_repeat=3)}
LABELS = ("h1", "h2[0]", "h2[1]", "h2[2]", "output")


def aligned(rows):
    return [r for r in rows if r["kind"] == "alignment"]


def restore(run_dir, spec, step):
    ckpts = Checkpoints(run_dir)
    try:
        return ckpts.restore(step, __import__("jax").eval_shape(_setup(spec).model.init))[0]
    finally:
        ckpts.close()


def nth_batch(spec, epoch, index):
    data = load_dataset(spec.data, spec.seed)
    for i, b in enumerate(batches(data.x_train, data.y_train, spec.data.batch_size, seed=spec.seed, epoch=epoch)):
        if i == index:
            return b
    raise AssertionError("no such batch")


# ------------------------------------------------------------------------------- closed-form oracle


def test_logged_alignment_at_equilibrium_equals_the_linear_closed_forms(tmp_path):
    """A linear μPC ResNet whose inference runs to equilibrium: each logged cosine and norm ratio is the closed
    form's (PC gradient at z* vs the BP gradient), at the first step (fresh weights) and after a checkpoint."""
    spec = run_spec({"parameterisation": "mupc", "activation": "identity",
                     "layers": chain_layers([8], residual_repeat=2)},
                    data={"synthetic": {"kind": "linear", "n_train": 32, "n_test": 8, "input_dim": IN,
                                        "output_dim": OUT}},
                    inference={"steps": 20000, "tol": 1e-6}, run={"alignment_every": 1, "log_every": 1})
    run = Path(train(spec, out=tmp_path / "lin").run_dir)
    rows = {r["step"]: r for r in aligned(read_rows(run))}
    assert sorted(rows) == [1, 2, 3, 4]  # 2 batches x 2 epochs
    model = _setup(spec).model
    labels = model.graph.layer_labels
    for step, state, (x, y) in ((1, model.init(), nth_batch(spec, 0, 0)),  # the update of step k: from step k - 1
                                (3, restore(run, spec, 2), nth_batch(spec, 1, 0))):
        chain = linear_chain(model, state.params)
        x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
        pc, bp = T.pc_weight_gradients_at_equilibrium(chain, x64, y64), T.bp_weight_gradients(chain, x64, y64)
        row = rows[step]
        assert [row[f"align_cos/{l}"] for l in labels] == pytest.approx(T.layer_cosines(pc, bp), abs=1e-3)
        ratios = [np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(pc, bp)]
        assert [row[f"align_ratio/{l}"] for l in labels] == pytest.approx(ratios, rel=1e-3)
        assert row["align_cos"] == pytest.approx(T.gradient_cosine(pc, bp), abs=1e-4)
        assert min(T.layer_cosines(pc, bp)) < 0.999  # not trivially 1: μPC at this width is not BP yet


# -------------------------------------------------------------------------- the train step as oracle


@pytest.mark.parametrize("mode", ["discriminative", "generative"])
def test_alignment_uses_the_train_steps_gradients(mode):
    """‖g_PC,l‖ is the grad norm the pc train step reports from the same state and batch; ‖g_BP,l‖ the one the
    bp train step reports (generative: BP runs y → x, as `algorithm: bp` does); diagnose reports the same."""
    spec = make_spec(chain_layers([8], residual_repeat=3), param="mupc", act="relu", mode=mode)
    pc_model = compile(spec, shapes=(IN, OUT))  # generative: the label y is the clamped input, x the output
    bp_model = compile(spec.model_copy(update={"learning": spec.learning.model_copy(update={"algorithm": "bp"})}),
                       shapes=(IN, OUT))
    x, y = batch(5, 8, IN, OUT)
    state = pc_model.init()
    al = D.alignment(pc_model, state, x, y)
    assert al.labels == LABELS
    _, pc_metrics = pc_model.train_step(copy_state(state), (x, y))
    _, bp_metrics = bp_model.train_step(copy_state(state), (x, y))
    np.testing.assert_allclose(al.pc_norms, np.asarray(pc_metrics.grad_norms), rtol=1e-5)
    np.testing.assert_allclose(al.bp_norms, np.asarray(bp_metrics.grad_norms), rtol=1e-4)
    np.testing.assert_allclose(al.ratios, al.pc_norms / al.bp_norms, rtol=1e-12)
    assert np.all(np.abs(al.cosines) <= 1) and np.all(np.isfinite(al.cosines))
    if mode == "generative":
        return
    diag = D.diagnose(pc_model, state, x, y, hessian="none", max_steps=1)
    np.testing.assert_allclose([layer.cosine for layer in diag.layers], al.cosines, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose([layer.norm_ratio for layer in diag.layers], al.ratios, rtol=1e-6)


def test_layer_sums_keep_tiny_gradients():
    """Per-layer cosines and norms from the on-device sums equal float64 ones of the same float32 trees, even
    for entries ~1e-25 whose float32 squares underflow (a deep layer's PC gradient)."""
    import jax

    m = compile(make_spec(chain_layers([8], residual_repeat=3), param="mupc", act="relu"), shapes=(IN, OUT))
    params = m.init().params
    noise = iter(np.random.default_rng(0).normal(size=(99, 64)))
    b = jax.tree.map(lambda v: v + np.resize(next(noise), v.shape).astype(v.dtype), params)
    a = jax.tree.map(lambda v: v * np.float32(1e-25), params)
    al = D.Alignment.from_sums(m.graph.layer_labels, jax.device_get(D.layer_sums(m.graph, a, b)))
    va, vb = D.layer_vectors(m.graph, a), D.layer_vectors(m.graph, b)
    np.testing.assert_allclose(al.cosines, [D.cosine(u, v) for u, v in zip(va, vb)], rtol=1e-5)
    np.testing.assert_allclose(al.pc_norms, [np.linalg.norm(u) for u in va], rtol=1e-5)
    np.testing.assert_allclose(al.ratios, [np.linalg.norm(u) / np.linalg.norm(v) for u, v in zip(va, vb)], rtol=1e-5)
    assert al.cosine == pytest.approx(D.cosine(np.concatenate(va), np.concatenate(vb)), rel=1e-5)
    assert 1e-26 < al.pc_norms.min() and np.all(np.abs(al.cosines) < 1)


def test_alignment_is_compiled_once():
    spec = make_spec(chain_layers([8], residual_repeat=3), param="mupc", act="relu")
    m = compile(spec, shapes=(IN, OUT))
    state = m.init()
    before = D._infer_and_align._cache_size()
    results = [D.alignment(m, state, *batch(seed, 8, IN, OUT)) for seed in range(3)]
    assert D._infer_and_align._cache_size() == before + 1
    assert not np.allclose(results[0].cosines, results[1].cosines)  # really different batches


def test_unsupervised_alignment_is_refused():
    spec = make_spec(chain_layers([8]), mode="unsupervised", latent_width=4)
    m = compile(spec, shapes=(IN, OUT))
    x, y = batch(0, 4, IN, OUT)
    with pytest.raises(PccError, match="unsupervised"):
        D.alignment(m, m.init(), x, y)
    with pytest.raises(PccError, match="unsupervised"):
        D.diagnose(m, m.init(), x, y, hessian="none")


# ------------------------------------------------------------------------------------ the runner


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run of 8 steps with alignment_every = 3: (spec, run folder)."""
    spec = run_spec(RESNET, run={"alignment_every": 3})
    return spec, Path(train(spec, out=tmp_path_factory.mktemp("runs") / "straight").run_dir)


def test_cadence_names_csv_and_plot(straight, tmp_path):
    """alignment_every = 3 over 8 steps: records at steps 3 and 6 only; stacked layers one column per copy."""
    _, run = straight
    rows = read_rows(run)
    records = aligned(rows)
    assert [r["step"] for r in records] == [3, 6]  # floor(8 / 3) records
    assert [r["epoch"] for r in records] == [0.75, 1.5]
    keys = {"align_cos", "align_ratio", *(f"align_{m}/{l}" for m in ("cos", "ratio") for l in LABELS)}
    assert all(keys | {"kind", "step", "epoch", "wall"} == set(r) for r in records)
    assert all(-1 <= r[f"align_cos/{l}"] <= 1 and r[f"align_ratio/{l}"] > 0 for r in records for l in LABELS)
    assert not any(k.startswith("align") for r in rows if r["kind"] != "alignment" for k in r)
    with open(run / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["kind"], int(r["step"])) for r in table] == [(r["kind"], r["step"]) for r in rows]
    csv_rec = [r for r in table if r["kind"] == "alignment"]
    assert [float(r["align_cos/h2[1]"]) for r in csv_rec] == pytest.approx([r["align_cos/h2[1]"] for r in records])
    png = plot_runs([run], tmp_path / "curves.png")
    assert png.stat().st_size > 1000
    # off by default: no alignment columns
    assert Spec.model_validate({"model": RESNET}).run.alignment_every is None
    assert not any(c.startswith("align") for c in columns(LABELS))


def test_resume_continues_the_cadence(straight, tmp_path):
    spec, done = straight[0], read_rows(straight[1])

    def stop_after_4(row):
        if row["kind"] == "train" and row["step"] == 4:
            raise KeyboardInterrupt  # mid-epoch 1: the checkpoint is at step 4, the next record due at 6

    run = tmp_path / "resumed"
    assert train(spec, out=run, callbacks=[stop_after_4]).status == "interrupted"
    assert [r["step"] for r in aligned(read_rows(run))] == [3]
    train(load_run_spec(run), resume=run)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "wall"} for r in rows]  # noqa: E731
    assert [r["step"] for r in aligned(read_rows(run))] == [3, 6]
    assert drop(read_rows(run)) == drop(done)


# ------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("extra, says", [
    ("learning: {algorithm: bp}\n", "`algorithm: bp` has no PC gradient"),
    ("model:\n  mode: unsupervised\n  latent_width: 4\n  layers:\n    - dense: {width: 16}\n    - dense: {}\n",
     "`mode: unsupervised`"),
])
def test_rejected_combinations(extra, says):
    text = ("model:\n  layers:\n    - dense: {width: 16}\n    - dense: {}\n" if "model" not in extra else "") + \
        extra + "run:\n  alignment_every: 5\n"
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "s.yaml")
    (issue,) = info.value.issues
    assert str(issue).startswith(f"s.yaml:{text.count(chr(10))}:")  # located at the alignment_every line
    assert "run.alignment_every" in str(issue) and says in str(issue)
    load_spec_text(text.replace("alignment_every: 5", "log_every: 5"), "s.yaml")  # fine without it
