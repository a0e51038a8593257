"""Stage: the artifact cache. Expensive results kept on disk, keyed by the fingerprints of their inputs.

* :mod:`~ogaudit.cache.artifacts`: :class:`ArtifactCache`, one folder per entry with the settings it came from
  (``entry.json``), written atomically, checked when read, one writer at a time;
* :mod:`~ogaudit.cache.store`: :class:`SampleStore`, the one resumable per-sample store (sharded rows with a done
  mask) that the forward pass, the layer gradients and the text encoder fill chunk by chunk.
"""
