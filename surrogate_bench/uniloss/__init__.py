"""UniLoss (Liu, Wang, Deng, ECCV 2020): metric = g(sign(comparisons)), relaxed by sigmoid + IDW over anchors."""

from .accuracy import AccuracyRefactoring
from .ap import AveragePrecisionRefactoring
from .interpolation import AnchorSpec, idw_from_dots, relax, uniloss_value
from .pckh import PCKhRefactoring
from .refactoring import Comparisons, Refactoring

__all__ = ["AccuracyRefactoring", "AnchorSpec", "AveragePrecisionRefactoring", "Comparisons", "PCKhRefactoring",
           "Refactoring", "idw_from_dots", "relax", "uniloss_value"]
