"""Closed forms for linear predictive coding chains: diagnostics for users and oracles for the compiler's tests.

See :mod:`pcc.theory.linear` for the conventions (row vectors, ``f_l(z) = a_l · z W_l + τ_l · z``)."""

from pcc.theory.linear import (
    PARAMETERISATIONS,
    LinearChain,
    activity_hessian,
    activity_rhs,
    bp_weight_gradients,
    condition_number,
    effective_map,
    energy,
    energy_rescaling,
    equilibrated_energy,
    equilibrium,
    feedforward,
    gradient_cosine,
    hessian_spectrum,
    layer_cosines,
    mupc_chain,
    pc_weight_gradients,
    pc_weight_gradients_at_equilibrium,
)

__all__ = [
    "PARAMETERISATIONS",
    "LinearChain",
    "activity_hessian",
    "activity_rhs",
    "bp_weight_gradients",
    "condition_number",
    "effective_map",
    "energy",
    "energy_rescaling",
    "equilibrated_energy",
    "equilibrium",
    "feedforward",
    "gradient_cosine",
    "hessian_spectrum",
    "layer_cosines",
    "mupc_chain",
    "pc_weight_gradients",
    "pc_weight_gradients_at_equilibrium",
]
