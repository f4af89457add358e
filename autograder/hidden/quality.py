"""Optional model-quality gate (part "quality", 0 points unless staff enable it in points.json)."""

from __future__ import annotations

PART = "quality"
