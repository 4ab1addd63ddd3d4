"""ganbrush inversion (not implemented yet; see the project issues)."""
