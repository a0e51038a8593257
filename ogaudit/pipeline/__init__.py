"""Stage: the pipeline. One audit, load → train → gradients → detect → map.

* :mod:`~ogaudit.pipeline.load`: the load stage (data as the settings say, texts encoded);
* :mod:`~ogaudit.pipeline.stages`: one function per later stage, each owning its cache entry and format;
* :mod:`~ogaudit.pipeline.record`: the run record; :mod:`~ogaudit.pipeline.run`: :func:`audit`, which runs them
  and writes the run through :class:`~ogaudit.results.RunFolder`.
"""
