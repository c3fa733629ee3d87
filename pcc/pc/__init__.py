"""The energy, inference solvers and learning algorithms: small registries of pure functions."""
