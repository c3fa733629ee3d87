"""Parameterisation rules (sp, ntp, mupc): init, forward multiplier and LR scale of every edge."""

from pcc.param.rules import RULES, EdgeParam, parameterise, parameterise_spec

__all__ = ["RULES", "EdgeParam", "parameterise", "parameterise_spec"]
