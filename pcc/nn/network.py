"""flax nnx modules built from the graph IR, with the parameterisation baked in.

A dense edge is a :class:`Dense` module holding its weights (drawn as its rule says) and a *static* forward
multiplier; the training loops never see the parameterisation's name. :class:`PCNetwork` holds one module
per dense edge and knows how to predict a node from its sources (both orderings) and how to run the
feedforward pass, scanning over stacked nodes.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from pcc.ir.graph import INPUT, Graph, Node, bottom_up_key
from pcc.param.rules import EdgeParam

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "identity": lambda x: x,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "sigmoid": jax.nn.sigmoid,
    "silu": jax.nn.silu,
    "leaky_relu": jax.nn.leaky_relu,
    "softplus": jax.nn.softplus,
}

Values = dict[str, jax.Array]
"""Node name → value: ``(B, N)``, or ``(R, B, N)`` for a stacked node."""


class Dense(nnx.Module):
    """``a · h W (+ b)``: weights drawn by the rule's init, ``a`` a static multiplier.

    With ``stack=R`` the kernel is ``(R, fan_in, fan_out)`` and the op maps ``(R, B, fan_in)`` to
    ``(R, B, fan_out)`` with one batched matmul over the layer axis.
    """

    def __init__(self, fan_in: int, fan_out: int, param: EdgeParam, *, bias: bool, stack: int | None,
                 rngs: nnx.Rngs, dtype=jnp.float32, precision: str | None = "highest"):
        lead = (stack,) if stack else ()
        shape = lead + (fan_in, fan_out)
        key = rngs.params()
        # drawn in float32 and rounded, so a bfloat16 network holds the float32 network's weights, rounded
        if param.init == "normal":
            kernel = param.init_scale * jax.random.normal(key, shape, jnp.float32)
        else:
            kernel = jax.random.uniform(key, shape, jnp.float32, -param.init_scale, param.init_scale)
        self.kernel = nnx.Param(kernel.astype(dtype))
        self.bias = nnx.Param(jnp.zeros(lead + (fan_out,), dtype)) if bias else None
        self.multiplier = param.multiplier
        self.lr_scale = param.lr_scale
        self.precision = precision  # static: the matmul's precision config

    def __call__(self, h: jax.Array, sign: float = 1.0, bias: bool = True) -> jax.Array:
        """``sign · (a h W + b)`` (``sign · a h W`` without ``bias``: the change of the output for a change h)."""
        kernel = self.kernel[...]
        bias = None if self.bias is None or not bias else self.bias[...]
        out = scaled_matmul(sign * self.multiplier, self.precision, h, kernel)
        if bias is None:
            return out
        return out + sign * (bias[:, None, :] if kernel.ndim == 3 else bias)


def apply_dense(multiplier: float, h: jax.Array, kernel: jax.Array, bias: jax.Array | None,
                precision: str | None = "highest") -> jax.Array:
    out = scaled_matmul(multiplier, precision, h, kernel)
    return out if bias is None else out + bias


def _matmul(h: jax.Array, kernel: jax.Array, precision: str | None, wide: bool = True,
            scale: float = 1.0) -> jax.Array:
    """``scale · h W`` at ``precision`` in the kernel's dtype. A bfloat16 kernel takes bfloat16 inputs (``h`` is
    rounded) and the scaled result is rounded back to bfloat16; with ``wide`` the dot itself asks for a float32
    result (float32 accumulation), otherwise it is a bfloat16 dot, which XLA's backends accumulate in float32
    too (the tangent rule uses it: the transpose of a widened dot would receive float32 cotangents, and the
    back-projections and weight gradients would become float32 matmuls)."""
    h = h.astype(kernel.dtype)
    wide = None if kernel.dtype == jnp.float32 or not wide else jnp.float32
    if kernel.ndim == 3:
        out = jnp.einsum("rbi,rio->rbo", h, kernel, precision=precision, preferred_element_type=wide)
    else:
        out = jnp.matmul(h, kernel, precision=precision, preferred_element_type=wide)
    return (out if scale == 1 else scale * out).astype(kernel.dtype)


@partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def scaled_matmul(multiplier: float, precision: str | None, h: jax.Array, kernel: jax.Array) -> jax.Array:
    """``a · h W`` (batched over a leading layer axis for a 3-d kernel) at matmul ``precision`` (see
    :func:`_matmul`; every dense op of a network goes through here, so this is where ``model.dtype`` and
    ``model.matmul_precision`` take effect, in the primal and, by the rule below, in every derivative).

    Its tangent scales the tangent *inputs* (``(a·dh) W + h (a·dW)``), so the transposed (reverse-mode)
    rule scales *after* the transposed matmuls and the scalar multiply fuses into whatever consumes the
    result instead of costing a pass over the cotangent.
    """
    return _matmul(h, kernel, precision, scale=multiplier)


@partial(scaled_matmul.defjvp, symbolic_zeros=True)
def _scaled_matmul_jvp(multiplier, precision, primals, tangents):
    h, kernel = primals
    dh, dkernel = tangents  # a SymbolicZero for an input not differentiated (the kernel, in inference)
    parts = ([] if _zero(dh) else [_matmul(multiplier * dh, kernel, precision, False)]) + (
        [] if _zero(dkernel) else [_matmul(h, multiplier * dkernel, precision, False)])
    out = scaled_matmul(multiplier, precision, h, kernel)
    return out, sum(parts[1:], parts[0]) if parts else jnp.zeros_like(out)


def _zero(tangent) -> bool:
    return isinstance(tangent, jax.custom_derivatives.SymbolicZero)


class PCNetwork(nnx.Module):
    """The network of a graph: one :class:`Dense` per dense edge, ``edges[dst][src]``."""

    def __init__(self, graph: Graph, table: dict[str, EdgeParam], rngs: nnx.Rngs, dtype=None):
        self.graph = graph
        self.dtype = dtype = jnp.dtype(dtype or graph.dtype)  # weights, activities and errors
        dense = partial(Dense, rngs=rngs, dtype=dtype, precision=graph.matmul_precision)
        edges = {}
        for node in graph.nodes:
            modules = {}
            for e in graph.incoming(node.name):
                if e.op == "dense":
                    stack = node.repeat if node.repeat > 1 else None
                    modules[e.src] = dense(graph.node(e.src).width, node.width, table[e.key], bias=e.bias,
                                           stack=stack)
            if modules:
                edges[node.name] = nnx.Dict(modules)
        self.edges = nnx.Dict(edges)
        if graph.bidirectional:  # V_l: one bottom-up map per dense edge of the chain, node → its input
            self.bottom_up = nnx.Dict({
                e.dst: dense(graph.node(e.dst).width, graph.node(e.src).width, table[bottom_up_key(e.key)],
                             bias=e.bias, stack=graph.node(e.dst).repeat if graph.node(e.dst).repeat > 1 else None)
                for e in graph.edges if e.op == "dense"})
        if graph.learned_precision:  # log λ per node (per copy), from its fixed precision; float32 as the energy
            self.log_precision = nnx.Dict({
                n: nnx.Param(jnp.full((graph.node(n).repeat,) if graph.node(n).repeat > 1 else (),
                                      math.log(graph.precision_of(n)), jnp.float32))
                for n in graph.learned_precision})
        if graph.amortised:  # hybrid PC: â_n(x) = x A_n + b_n for every node but the one holding x
            src = graph.x_node
            init = EdgeParam("uniform", 1 / math.sqrt(src.width), 1.0)
            self.amortiser = nnx.Dict({
                n.name: dense(src.width, n.width, init, bias=True, stack=n.repeat if n.repeat > 1 else None)
                for n in graph.nodes if n.name != src.name})

    def amortise(self, x: jax.Array) -> Values:
        """The amortiser's guess â_n(x) of every node but the one holding x (``(R, B, N)`` when stacked)."""
        stacked = lambda n: jnp.broadcast_to(x, (self.graph.node(n).repeat,) + x.shape)
        return {n: m(stacked(n) if self.graph.node(n).repeat > 1 else x) for n, m in self.amortiser.items()}

    # ------------------------------------------------------------------ one node from its sources
    def _phi(self, name: str) -> Callable:
        return ACTIVATIONS[self.graph.node(name).activation]

    def _combine(self, node: Node, dense: jax.Array | None, skip: jax.Array | None) -> jax.Array:
        """Sum the dense and identity parts: ``dense + skip`` (w_phi) or ``φ(dense) + skip`` (phi_w)."""
        if dense is not None and self.graph.ordering == "phi_w":
            dense = ACTIVATIONS[node.activation](dense)
        parts = [p for p in (dense, skip) if p is not None]
        return sum(parts[1:], parts[0])

    def _source(self, src: str, node: Node, values: Values, dense: bool) -> jax.Array:
        """What an edge src → node carries: φ(z) into a w_phi dense edge, z otherwise.

        For a stacked node, copy 0 reads ``src`` and copy k reads copy k−1 (a shift along the layer axis).
        """
        out = (lambda name, v: self._phi(name)(v)) if dense and self.graph.ordering == "w_phi" else (lambda n, v: v)
        rest = out(node.name, values[node.name][:-1]) if node.repeat > 1 else None
        head = values[src]
        head = jnp.zeros_like(rest[0]) if head is None else out(src, self.last(src, values))  # None: no change
        return head if rest is None else jnp.concatenate([head[None], rest], axis=0)

    def last(self, name: str, values: Values) -> jax.Array:
        """The value a node passes downstream: its last copy when stacked."""
        return values[name][-1] if self.graph.node(name).repeat > 1 else values[name]

    def predict(self, name: str, values: Values) -> jax.Array:
        """The prediction μ of node ``name`` from the current values of its sources."""
        return self._prediction(name, values, sign=1.0)

    def error(self, name: str, values: Values, prediction: jax.Array | None = None) -> jax.Array:
        """The prediction error e = z − μ of node ``name``, from its :meth:`signed_prediction` (computed here
        unless given: inference computes the fixed predictions of nodes fed by clamped data once).

        Under ``w_phi`` the dense terms enter with a negated multiplier (z + Σ(−a)φ(h)W − skips), so the
        transposed matmul of a back-projection receives the error signal as it is, with no negation pass.
        """
        prediction = self.signed_prediction(name, values) if prediction is None else prediction
        if self.graph.ordering == "w_phi":
            return (values[name] + prediction).astype(self.dtype)
        return (values[name] - prediction).astype(self.dtype)

    def signed_prediction(self, name: str, values: Values) -> jax.Array:
        """−μ under ``w_phi``, μ under ``phi_w``: the term :meth:`error` adds to or subtracts from z."""
        return self._prediction(name, values, sign=-1.0 if self.graph.ordering == "w_phi" else 1.0)

    def error_change(self, name: str, dz: Values, dphi: Values) -> jax.Array:
        """e_n(new) − e_n(old) under ``w_phi``, from the changes of the values alone: Δz_n − Σ_dense a Δφ(h) W −
        Σ_skip Δh, given every node's Δz = z_new − z_old and Δφ = φ(z_new) − φ(z_old) (None: did not change).
        Exactly 0 where neither the node nor its sources changed, however the backend rounds."""
        node = self.graph.node(name)
        change = 0.0 if dz[name] is None else dz[name]
        for e in self.graph.incoming(name):
            if node.repeat == 1 and dz[e.src] is None:  # a clamped source: no change
                continue
            if e.op == "dense":
                change = change + self.edges[name][e.src](self._source(e.src, node, dphi, False), -1.0, bias=False)
            else:
                change = change - self._source(e.src, node, dz, False)
        return change

    def bottom_up_error(self, name: str, values: Values) -> jax.Array:
        """b_l = z_{l−1} − g_l(z_l): the error of node l's bottom-up prediction of its input (bidirectional PC),
        g_l(z) = a V_l φ_l(z) under w_phi, φ_{l−1}(a V_l z) under phi_w; copy k of a stack predicts copy k−1."""
        node = self.graph.node(name)
        (src,) = [e.src for e in self.graph.incoming(name) if e.op == "dense"]  # chains: one dense edge
        target = self._source(src, node, values, dense=False)
        if self.graph.ordering == "w_phi":
            return (target - self.bottom_up[name](self._phi(name)(values[name]))).astype(self.dtype)
        pre = self.bottom_up[name](values[name])
        if node.repeat == 1:
            return (target - self._phi(src)(pre)).astype(self.dtype)
        mu = jnp.concatenate([self._phi(src)(pre[:1]), self._phi(name)(pre[1:])], axis=0)
        return (target - mu).astype(self.dtype)

    def _prediction(self, name: str, values: Values, sign: float) -> jax.Array:
        """``sign · μ`` under w_phi (dense terms scaled, skips negated); μ under phi_w (``sign`` 1)."""
        node = self.graph.node(name)
        dense, skip = None, None
        for e in self.graph.incoming(name):
            if e.op == "dense":
                term = self.edges[name][e.src](self._source(e.src, node, values, dense=True), sign=sign)
                dense = term if dense is None else dense + term
            else:
                term = self._source(e.src, node, values, dense=False)
                skip = term if skip is None else skip + term
        if skip is not None and sign < 0:
            skip = -skip
        return self._combine(node, dense, skip)

    # ------------------------------------------------------------------ the feedforward pass
    def forward(self, x: jax.Array, offsets: Values | None = None) -> Values:
        """Values of every node by a feedforward pass from ``x`` (stacked nodes scan over their copies).

        With ``offsets`` a node's value is its prediction plus its offset, z_n = μ_n + ε_n, copy by copy
        (the activities of ePC's error state)."""
        values: Values = {INPUT: x}
        offsets = offsets or {}
        for node in self.graph.nodes[1:]:
            offset = offsets.get(node.name)
            if node.repeat == 1:
                mu = self.predict(node.name, values)
                values[node.name] = mu if offset is None else mu + offset
            else:
                values[node.name] = self._forward_stack(node, values, offset)
        return values

    def _forward_stack(self, node: Node, values: Values, offset: jax.Array | None = None) -> jax.Array:
        (edge,) = [e for e in self.graph.incoming(node.name) if e.op == "dense"]  # stacks are single-source
        module = self.edges[node.name][edge.src]
        skip = any(e.op == "identity" for e in self.graph.incoming(node.name))
        kernel = module.kernel[...]
        bias = None if module.bias is None else module.bias[...]
        w_phi = self.graph.ordering == "w_phi"

        phi = self._phi(node.name)

        def step(carry, kbo):  # carry: copy k's input z_{k−1} and what its dense op reads (φ(z_{k−1}) under w_phi)
            z_prev, h = carry
            k_kernel, k_bias, k_offset = kbo
            z = self._combine(node, apply_dense(module.multiplier, h, k_kernel, k_bias, module.precision),
                              z_prev if skip else None)
            z = z if k_offset is None else z + k_offset
            return (z, phi(z) if w_phi else z), z

        src = self.last(edge.src, values)  # copy 0 reads the source, through the source's activation
        _, zs = jax.lax.scan(step, (src, self._phi(edge.src)(src) if w_phi else src), (kernel, bias, offset))
        return zs


def build_network(graph: Graph, table: dict[str, EdgeParam], seed, dtype=None) -> PCNetwork:
    """Instantiate the network's modules with weights drawn from ``seed`` (an int or a key); ``dtype``
    defaults to the graph's (``model.dtype``)."""
    return PCNetwork(graph, table, nnx.Rngs(params=seed), dtype=dtype)


def abstract_network(graph: Graph, table: dict[str, EdgeParam], dtype=None) -> PCNetwork:
    """The network's structure with shape-only weights (no random numbers drawn, nothing compiled)."""
    return nnx.eval_shape(lambda: build_network(graph, table, 0, dtype))
