"""jaxloss: functional loss kernels for JAX with exact, documented semantics.

Every loss takes ``(predictions_or_logits, targets, *, ...)`` with keyword-only
``weights``, ``where`` and ``reduction`` options that mean the same thing
everywhere (see :func:`jaxloss.reduce_loss`).
"""

from jaxloss._binary import sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy
from jaxloss._checks import REDUCTIONS as REDUCTIONS
from jaxloss._checks import checked as checked
from jaxloss._checks import value_checks as value_checks
from jaxloss._classification import class_breakdown as class_breakdown
from jaxloss._classification import softmax_cross_entropy as softmax_cross_entropy
from jaxloss._distribution import earth_mover_distance as earth_mover_distance
from jaxloss._focal import sigmoid_focal_loss as sigmoid_focal_loss
from jaxloss._focal import softmax_focal_loss as softmax_focal_loss
from jaxloss._reduction import reduce_loss as reduce_loss
from jaxloss._regression import huber_loss as huber_loss
from jaxloss._regression import mean_absolute_error as mean_absolute_error
from jaxloss._regression import mean_squared_error as mean_squared_error
from jaxloss._scores import counts_to_distribution as counts_to_distribution
from jaxloss._scores import score_mean_std as score_mean_std
from jaxloss._scores import scores_to_distribution as scores_to_distribution

__version__ = "0.1.0"

__all__ = [
    "REDUCTIONS",
    "checked",
    "class_breakdown",
    "counts_to_distribution",
    "earth_mover_distance",
    "huber_loss",
    "mean_absolute_error",
    "mean_squared_error",
    "reduce_loss",
    "score_mean_std",
    "scores_to_distribution",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "softmax_cross_entropy",
    "value_checks",
]
