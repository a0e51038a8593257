"""Stage: data. Everything a user can audit becomes one :class:`~ogaudit.data.dataset.Dataset`.

* :mod:`~ogaudit.data.dataset`: the :class:`Dataset`, subsets, splits, label rules;
* :mod:`~ogaudit.data.load`: :func:`load_dataset`, the one entry point (by name, suffix or layout);
* :mod:`~ogaudit.data.builtins`, :mod:`~ogaudit.data.images`, :mod:`~ogaudit.data.imagefiles`,
  :mod:`~ogaudit.data.arrays`, :mod:`~ogaudit.data.text`, :mod:`~ogaudit.data.hf` (Hugging Face datasets, folders
  and Parquet/Arrow image tables), :mod:`~ogaudit.data.fiftyone` (FiftyOne classification exports): one module per
  kind of input; :mod:`~ogaudit.data.manifest`: where the paths a table lists may lead;
* :mod:`~ogaudit.data.csvtext` (reading CSV as people write it), :mod:`~ogaudit.data.limits` (memory checks
  before decoding), :mod:`~ogaudit.data.uploads` (unpacking untrusted uploads), :mod:`~ogaudit.data.noise`
  (planted label noise for demos and benchmarks).

Loaders read; they run no model (texts are encoded by the load stage, :mod:`ogaudit.pipeline.load`).
"""
