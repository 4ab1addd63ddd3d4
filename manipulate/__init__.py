"""ganbrush manipulate (not implemented yet; see the project issues)."""
