"""ConfigPart: the base of every config section (unknown keys are errors, numbers finite, assignments re-validated)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigPart(BaseModel):
    """Base of every config part: unknown keys are errors, assignments are re-validated."""

    # numbers become strings where a str is expected: `--set tracking.run_name=2024` and YAML
    # label_words keys like `0: World` are parsed as ints by YAML
    # inf / nan are refused everywhere (`lr: .inf` would only fail mid-training, as a NaN loss)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, coerce_numbers_to_str=True,
                              allow_inf_nan=False)
