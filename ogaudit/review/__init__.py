"""Stage: review. What reviewers decide and what comes of it.

* :mod:`~ogaudit.review.ledger`: the decisions ledger (append-only SQLite, safe for several annotators);
* :mod:`~ogaudit.review.actions`: the review rules, bulk plans, undo/redo; :mod:`~ogaudit.review.queue`: filters;
* :mod:`~ogaudit.review.evidence`: why a sample is flagged, with the calibrated probability that it is wrong;
  :mod:`~ogaudit.review.duplicates`, :mod:`~ogaudit.review.thumbnails`, :mod:`~ogaudit.review.texts`: what cards show;
* :mod:`~ogaudit.review.decisions` (the decisions CSV), :mod:`~ogaudit.review.split` (the cleaned split),
  :mod:`~ogaudit.review.verify` (trim and retrain).

``ledger``, ``actions``, ``decisions`` and ``split`` import neither torch nor the pipeline, so review commands start
fast; ``verify`` trains models.
"""
