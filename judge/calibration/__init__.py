"""Calibration of judges against human ratings: agreement with confidence intervals, the
human ceiling, calibration maps, bias probes and the approval gate.

Pure functions over arrays and tables; the store, the engine and the CLI build on them.
"""

from judge.calibration.agreement import (
    AgreementReport,
    Estimate,
    ScaleSpec,
    agreement,
    cohen_kappa,
    fleiss,
    fleiss_kappa,
    krippendorff_alpha,
)
from judge.calibration.bias import (
    ProbeResult,
    position_bias,
    same_model,
    self_preference,
    unswap,
    verbosity_bias,
)
from judge.calibration.ceiling import (
    CeilingReport,
    HumanAgreement,
    consensus,
    human_agreement,
    loo_ceiling,
)
from judge.calibration.gate import GateDecision, gate
from judge.calibration.maps import CalibrationMap, IsotonicMap, LabelMap, MapFit, fit_map, load_map
from judge.calibration.ratings_io import (
    RatingsFile,
    RatingsMatrix,
    parse_ratings_mapping,
    ratings_matrix,
    read_ratings,
)

__all__ = [
    "AgreementReport",
    "CalibrationMap",
    "CeilingReport",
    "Estimate",
    "GateDecision",
    "HumanAgreement",
    "IsotonicMap",
    "LabelMap",
    "MapFit",
    "ProbeResult",
    "RatingsFile",
    "RatingsMatrix",
    "ScaleSpec",
    "agreement",
    "cohen_kappa",
    "consensus",
    "fit_map",
    "fleiss",
    "fleiss_kappa",
    "gate",
    "human_agreement",
    "krippendorff_alpha",
    "load_map",
    "loo_ceiling",
    "parse_ratings_mapping",
    "position_bias",
    "ratings_matrix",
    "read_ratings",
    "same_model",
    "self_preference",
    "unswap",
    "verbosity_bias",
]
