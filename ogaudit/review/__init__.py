"""The review stage: the decisions ledger, the review rules, exports and the trim-and-retrain check.

``ledger``, ``actions`` and ``exports`` import neither torch nor the pipeline, so review commands start fast;
``verify`` trains models and imports both.
"""
