"""jaxloss: functional loss kernels for JAX with exact, documented semantics.

Every loss takes ``(predictions_or_logits, targets, *, ...)`` with keyword-only
``weights``, ``where`` and ``reduction`` options that mean the same thing
everywhere (see :func:`jaxloss.reduce_loss`).
"""

from jaxloss._bce_dice_loss import sigmoid_bce_dice_loss as sigmoid_bce_dice_loss
from jaxloss._binary import sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy
from jaxloss._breakdown import class_breakdown as class_breakdown
from jaxloss._ce_dice_loss import softmax_ce_dice_loss as softmax_ce_dice_loss
from jaxloss._checks import REDUCTIONS as REDUCTIONS
from jaxloss._checks import checked as checked
from jaxloss._checks import value_checks as value_checks
from jaxloss._class_weights import ClassCounts as ClassCounts
from jaxloss._class_weights import class_pixel_counts as class_pixel_counts
from jaxloss._class_weights import effective_number_weights as effective_number_weights
from jaxloss._class_weights import inverse_frequency_weights as inverse_frequency_weights
from jaxloss._class_weights import median_frequency_weights as median_frequency_weights
from jaxloss._classification import softmax_cross_entropy as softmax_cross_entropy
from jaxloss._cldice import cl_dice_loss as cl_dice_loss
from jaxloss._cldice import dice_cl_dice_loss as dice_cl_dice_loss
from jaxloss._cldice import soft_skeleton as soft_skeleton
from jaxloss._consistency import consistency_loss as consistency_loss
from jaxloss._consistency import entropy_minimization_loss as entropy_minimization_loss
from jaxloss._distance import distance_transform as distance_transform
from jaxloss._distance import signed_distance as signed_distance
from jaxloss._distribution import earth_mover_distance as earth_mover_distance
from jaxloss._focal import sigmoid_focal_loss as sigmoid_focal_loss
from jaxloss._focal import softmax_focal_loss as softmax_focal_loss
from jaxloss._linear_ce import linear_softmax_cross_entropy as linear_softmax_cross_entropy
from jaxloss._lovasz import lovasz_hinge_loss as lovasz_hinge_loss
from jaxloss._lovasz import lovasz_softmax_loss as lovasz_softmax_loss
from jaxloss._metrics import accuracy as accuracy
from jaxloss._metrics import confusion_matrix as confusion_matrix
from jaxloss._metrics import dice_per_class as dice_per_class
from jaxloss._metrics import iou_per_class as iou_per_class
from jaxloss._metrics import mean_iou as mean_iou
from jaxloss._metrics import multilabel_confusion_matrix as multilabel_confusion_matrix
from jaxloss._overlap_losses import dice_loss as dice_loss
from jaxloss._overlap_losses import generalized_dice_loss as generalized_dice_loss
from jaxloss._overlap_losses import jaccard_loss as jaccard_loss
from jaxloss._overlap_losses import tversky_loss as tversky_loss
from jaxloss._propel import gaussian_overlap as gaussian_overlap
from jaxloss._propel import mixture_mean_and_variance as mixture_mean_and_variance
from jaxloss._propel import propel_loss as propel_loss
from jaxloss._propel import split_mixture_outputs as split_mixture_outputs
from jaxloss._reduction import reduce_loss as reduce_loss
from jaxloss._regression import huber_loss as huber_loss
from jaxloss._regression import mean_absolute_error as mean_absolute_error
from jaxloss._regression import mean_squared_error as mean_squared_error
from jaxloss._scores import counts_to_distribution as counts_to_distribution
from jaxloss._scores import score_mean_std as score_mean_std
from jaxloss._scores import scores_to_distribution as scores_to_distribution
from jaxloss._semi_supervised import labeled_mask as labeled_mask
from jaxloss._semi_supervised import multi_head_loss as multi_head_loss
from jaxloss._semi_supervised import pseudo_label_cross_entropy as pseudo_label_cross_entropy
from jaxloss._shape_losses import boundary_loss as boundary_loss
from jaxloss._shape_losses import hausdorff_dt_loss as hausdorff_dt_loss
from jaxloss._surface_metrics import average_surface_distance as average_surface_distance
from jaxloss._surface_metrics import hausdorff_distance as hausdorff_distance
from jaxloss._surface_metrics import surface_dice as surface_dice

__version__ = "0.1.0"

__all__ = [
    "REDUCTIONS",
    "accuracy",
    "average_surface_distance",
    "boundary_loss",
    "checked",
    "cl_dice_loss",
    "class_breakdown",
    "class_pixel_counts",
    "ClassCounts",
    "confusion_matrix",
    "consistency_loss",
    "counts_to_distribution",
    "dice_cl_dice_loss",
    "dice_loss",
    "dice_per_class",
    "distance_transform",
    "earth_mover_distance",
    "effective_number_weights",
    "entropy_minimization_loss",
    "gaussian_overlap",
    "generalized_dice_loss",
    "hausdorff_distance",
    "hausdorff_dt_loss",
    "huber_loss",
    "inverse_frequency_weights",
    "iou_per_class",
    "jaccard_loss",
    "labeled_mask",
    "linear_softmax_cross_entropy",
    "lovasz_hinge_loss",
    "lovasz_softmax_loss",
    "mean_absolute_error",
    "mean_iou",
    "multilabel_confusion_matrix",
    "mean_squared_error",
    "median_frequency_weights",
    "mixture_mean_and_variance",
    "multi_head_loss",
    "propel_loss",
    "pseudo_label_cross_entropy",
    "reduce_loss",
    "score_mean_std",
    "scores_to_distribution",
    "sigmoid_bce_dice_loss",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "signed_distance",
    "soft_skeleton",
    "softmax_ce_dice_loss",
    "softmax_cross_entropy",
    "softmax_focal_loss",
    "split_mixture_outputs",
    "surface_dice",
    "tversky_loss",
    "value_checks",
]
