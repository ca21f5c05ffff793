"""jaxloss: functional loss kernels for JAX with exact, documented semantics.

Every loss takes ``(predictions_or_logits, targets, *, ...)`` with keyword-only
``weights``, ``where`` and ``reduction`` options that mean the same thing
everywhere (see :func:`jaxloss.reduce_loss`).
"""

from jaxloss._checks import REDUCTIONS as REDUCTIONS
from jaxloss._checks import checked as checked
from jaxloss._checks import value_checks as value_checks
from jaxloss._reduction import reduce_loss as reduce_loss
from jaxloss._regression import huber_loss as huber_loss
from jaxloss._regression import mean_absolute_error as mean_absolute_error
from jaxloss._regression import mean_squared_error as mean_squared_error

__version__ = "0.1.0"

__all__ = [
    "REDUCTIONS",
    "checked",
    "huber_loss",
    "mean_absolute_error",
    "mean_squared_error",
    "reduce_loss",
    "value_checks",
]
