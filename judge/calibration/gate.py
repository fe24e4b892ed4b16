"""The gate: approve a judge for a rubric only when it agrees with people well enough,
in absolute terms and against how well people agree with each other."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from judge.calibration.agreement import AgreementReport
    from judge.calibration.ceiling import CeilingReport


@dataclass(frozen=True)
class GateDecision:
    """Whether the judge is approved, with one reason per rule naming its figures."""

    approved: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"approved": self.approved, "reasons": list(self.reasons)}


def gate(report: AgreementReport, min_kappa: float = 0.6, max_gap: float = 0.1, *,
         ceiling: CeilingReport | None = None, require_ceiling: bool = True) -> GateDecision:
    """Approve only if agreement reaches ``min_kappa`` and is within ``max_gap`` of the
    human ceiling.

    Args:
        report: judge vs human-consensus agreement; its ``primary`` figure (Cohen's
            kappa, quadratic-weighted on ordered scales) is compared with ``min_kappa``.
        min_kappa: the least acceptable point estimate.
        max_gap: the largest acceptable ``ceiling.gap`` (typical human leave-one-out
            agreement minus the judge's, point estimate).
        ceiling: the leave-one-out ceiling; without it the gap cannot be checked.
        require_ceiling: refuse when there is no ceiling (no item rated by several
            people); with False, a missing ceiling only adds a reason.
    """
    reasons: list[str] = []
    ok = True
    k = report.kappa
    if not math.isfinite(k.value):
        ok = False
        reasons.append(f"{report.primary} is undefined (n={k.n}); cannot approve.")
    elif k.value >= min_kappa:
        reasons.append(f"{report.primary} {k} reaches the minimum {min_kappa:g}.")
    else:
        ok = False
        reasons.append(f"{report.primary} {k} is below the minimum {min_kappa:g}.")
    if ceiling is None:
        if require_ceiling:
            ok = False
            reasons.append("no human ceiling: the gap to human agreement needs items rated by "
                           "two or more people.")
        else:
            reasons.append("no human ceiling given; the gap was not checked.")
    else:
        g = ceiling.gap
        what = (f"gap {g} = typical human {ceiling.stat} {ceiling.human.value:.3f} "
                f"− judge {ceiling.judge.value:.3f}")
        if not math.isfinite(g.value):
            ok = False
            reasons.append(f"{what} is undefined; cannot approve.")
        elif g.value <= max_gap:
            reasons.append(f"{what} is within the maximum gap {max_gap:g}.")
        else:
            ok = False
            reasons.append(f"{what} exceeds the maximum gap {max_gap:g}.")
    return GateDecision(ok, reasons)
