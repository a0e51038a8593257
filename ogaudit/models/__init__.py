"""Stage: models. The audited model as an :class:`~ogaudit.models.base.AuditModel`, ``head(body(preprocess(x)))``.

* :mod:`~ogaudit.models.base`: the shape every model kind is built into;
* :mod:`~ogaudit.models.nets`: the built-in kinds (small CNN, MLP, EfficientNet-Lite0, linear) and checkpoints;
* :mod:`~ogaudit.models.encoders` (the frozen MiniLM sentence encoder), :mod:`~ogaudit.models.lora` (LoRA
  fine-tuning of its top layers);
* :mod:`~ogaudit.models.training`: training and the batched forward pass.
"""
