"""Stage: engines, where the per-sample passes run: :mod:`~ogaudit.engines.local` (this process) or
:mod:`~ogaudit.engines.ray_engine` (Ray Data actors; Ray is imported only there, inside functions)."""
