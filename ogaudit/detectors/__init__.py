"""Stage: detectors. Outlier scores over per-sample gradients (higher = more suspicious, everywhere).

* :mod:`~ogaudit.detectors.base`: the :class:`Detector` protocol and the flag budget;
* :mod:`~ogaudit.detectors.outliers`: the detectors by name (``posterior``, the paper's ``iforest``/``l1``/``l2``,
  baselines) and counterfactual label evidence;
* :mod:`~ogaudit.detectors.neighbours`: the one nearest-neighbour search (exact, or faiss HNSW above 50k);
* :mod:`~ogaudit.detectors.scoring`: the per-sample table a reviewer reads; :mod:`~ogaudit.detectors.metrics`:
  AUROC / AP against planted noise.
"""
