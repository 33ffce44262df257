"""The base of every config section."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Unknown keys are errors, so a typo such as ``scoring.mc_sample`` names the field."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
