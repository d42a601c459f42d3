"""Operator commands: serving a published model version (rollout, status, abort, cleanup)."""
