"""The `classroom.yaml` keys of a term's deadlines: the course's time zone and `grading.late`.

Kept apart from d2lhub.config (which imports them) so that file stays readable; pure data,
no I/O. The policy is applied at autograde by d2lhub.grading.deadlines, through nbgrader's
late-submission plugin interface.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

UNIT_SECONDS = {"day": 86400, "hour": 3600}


def known_zone(name: str) -> str:
    """An IANA time zone name, or a ValueError that says what is expected."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Berlin)") from None
    return name


class Late(BaseModel):
    """What a submission after its due date (the student's extension included) loses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["none", "zero", "penalty"] = Field(
        "none", description="none: late work keeps its score (it is still marked late); zero: it scores 0; "
        "penalty: it loses `percent` of its score per started `per` late, down to `floor`"
    )
    per: Literal["day", "hour"] = Field("day", description="penalty: the unit lateness is counted in (a started "
                                        "unit counts whole)")
    percent: float = Field(10.0, gt=0, le=100, description="penalty: percent of the score lost per unit late")
    floor: float = Field(0.0, ge=0, lt=100, description="penalty: the percent of its score a late submission "
                         "keeps however late it is")

    @model_validator(mode="after")
    def policy_keys(self) -> Late:
        if self.policy != "penalty" and (self.per, self.percent, self.floor) != ("day", 10.0, 0.0):
            raise ValueError(f"per, percent and floor apply only to policy: penalty (policy is {self.policy})")
        return self

    def units_late(self, seconds_late: float) -> int:
        return math.ceil(seconds_late / UNIT_SECONDS[self.per]) if seconds_late > 0 else 0

    def penalty(self, score: float, seconds_late: float) -> float:
        """Points taken from `score` for a submission `seconds_late` after its due date."""
        if seconds_late <= 0 or self.policy == "none":
            return 0.0
        if self.policy == "zero":
            return score
        lost = min(self.units_late(seconds_late) * self.percent, 100.0 - self.floor)
        return round(score * lost / 100.0, 4)

    def describe(self) -> str:
        if self.policy == "penalty":
            floor = f", keeping at least {self.floor:g}%" if self.floor else ""
            return f"{self.percent:g}% of the score per {self.per} late{floor}"
        return {"none": "no penalty", "zero": "late work scores 0"}[self.policy]
