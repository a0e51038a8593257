"""Per-sample loss gradients: the last layer in closed form, chosen layers through the projected engine."""

from ogaudit.gradients.closed_form import HeadEvidence, reference_last_layer_gradients

__all__ = ["HeadEvidence", "reference_last_layer_gradients"]
