"""The policy gate: render every overlay, validate it strictly, and enforce the platform's invariants."""
