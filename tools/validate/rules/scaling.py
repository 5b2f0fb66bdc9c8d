"""scaling rules."""

from tools.validate.rules.base import Rule

RULES: list[Rule] = []
