"""ganbrush inpainting (not implemented yet; see the project issues)."""
