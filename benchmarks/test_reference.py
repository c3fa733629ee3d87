"""Fast tests of the plain-JAX PC reference (``benchmarks/reference.py``) at small sizes.

Run with ``pytest benchmarks/test_reference.py`` (about 15 s of CPU time, mostly XLA compiles).
"""

import dataclasses
import functools
import pathlib
import sys

import jax
import jax.numpy as jnp
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import reference as R

# Same structure as the benchmark tasks, small: H = 6 hidden layers of width 16.
SMALL = {"d_in": 20, "width": 16, "n_hidden": 6, "d_out": 5, "batch": 8, "n_infer": 5}
SMALL_A = dataclasses.replace(R.TASK_A, name="small-a", **SMALL)
SMALL_B = dataclasses.replace(
    R.TASK_B, name="small-b", a_in=20**-0.5, a_mid=1 / 16, a_out=1 / 16, **SMALL
)
TASKS = [SMALL_A, SMALL_B]
ids = lambda t: t.name


@pytest.fixture(scope="module", params=TASKS, ids=ids)
def check(request):
    """The self-check results of one small task (computed once per task)."""
    return request.param, R.self_check(request.param)


def _assert_ok(results, prefix):
    hits = {k: v for k, v in results.items() if k.startswith(prefix)}
    assert hits, prefix
    tol = R.TOLERANCES[prefix]
    assert all(v <= tol for v in hits.values()), hits


def test_activity_grad_matches_autodiff(check):
    _assert_ok(check[1], "act_grad")


def test_weight_grad_matches_autodiff(check):
    _assert_ok(check[1], "weight_grad")


def test_ff_init_energy_is_mse_loss(check):
    _assert_ok(check[1], "ff_energy")
    _assert_ok(check[1], "ff_hidden_err")


def test_inference_lowers_energy(check):
    _assert_ok(check[1], "infer_energy_rise")


def test_variants_and_grads_agree(check):
    """batched/scan x local/autodiff: same weight gradients and updated params."""
    _assert_ok(check[1], "grads")
    _assert_ok(check[1], "params")
    assert not R.check_failures(check[1])


@pytest.mark.parametrize("task", TASKS, ids=ids)
def test_traced_code_has_no_layer_loop(task):
    """The jaxpr of a train step does not grow with depth (no Python loop over layers)."""
    sizes = []
    for h in (6, 12):
        t = dataclasses.replace(task, n_hidden=h)
        init_fn, step_fn = R.make_task(t, "batched", "local")
        state = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
        x, y = jax.eval_shape(functools.partial(R.make_data, t), jax.random.PRNGKey(1))
        sizes.append(len(str(jax.make_jaxpr(step_fn)(state, x, y)).splitlines()))
    assert sizes[0] == sizes[1]


@pytest.fixture(scope="module")
def step_fns():
    """The jitted, donating ``make_task`` train steps of SMALL_B, per variant (compiled once)."""
    return {v: R.make_task(SMALL_B, v, "local") for v in R.VARIANTS}


def test_step_fn_variants_agree(step_fns):
    """batched and scan step_fns give the same updated params."""
    x, y = R.make_data(SMALL_B, jax.random.PRNGKey(1))
    new = []
    for init_fn, step_fn in step_fns.values():
        (params, _), energy = step_fn(init_fn(jax.random.PRNGKey(0)), x, y)
        assert jnp.isfinite(energy)
        new.append(params)
    for a, b in zip(jax.tree.leaves(new[0]), jax.tree.leaves(new[1])):
        assert jnp.max(jnp.abs(a - b)) <= SMALL_B.lr * R.TOLERANCES["params"]


def test_train_steps_reduce_loss(step_fns):
    """A few train steps on a fixed batch lower the feedforward MSE loss."""
    task, (init_fn, step_fn) = SMALL_B, step_fns["batched"]
    x, y = R.make_data(task, jax.random.PRNGKey(1))

    @jax.jit
    def loss(params):
        yhat = R.feedforward(task, params, R.input_projection(task, params, x))[1]
        return 0.5 * jnp.mean(jnp.sum((y - yhat) ** 2, -1))

    state = init_fn(jax.random.PRNGKey(0))
    before = loss(state[0])
    for _ in range(20):
        state, energy = step_fn(state, x, y)
        assert jnp.isfinite(energy)
    assert loss(state[0]) < before


def test_flops_per_step_task_a():
    B, T = 128, 20
    mm = lambda i, o: 2 * B * i * o
    free = 2 * mm(128, 128) + mm(128, 10)
    stem = mm(784, 128)
    assert R.flops_per_step(R.TASK_A) == T * 2 * free + stem + free + stem + free


def test_make_task_rejects_unknown_variant():
    with pytest.raises(ValueError):
        R.make_task("a", "nope", "local")
