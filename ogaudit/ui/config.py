"""The app's settings from the environment: where projects live, and the demo audited on first start.

``OGAUDIT_MAP_POINTS`` (default :data:`~ogaudit.map.density.DENSITY_ABOVE`) is the most samples a map draws one
marker each; bigger maps are a density image with the most suspicious samples as points.

The demo knobs let tests and benchmarks start the app on something small (``OGAUDIT_DEMO=digits
OGAUDIT_DEMO_EPOCHS=2 OGAUDIT_DEMO_MAP=pca``) while a person running ``scripts/app.sh`` gets MNIST 5k.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ogaudit.errors import SettingsError

DEMO_OFF = ("", "0", "off", "no", "none", "false")


@dataclass(frozen=True)
class DemoConfig:
    """The built-in audit started when the workspace is empty.

    Environment: ``OGAUDIT_DEMO`` (data, default mnist5k; ``0`` or ``off``: no demo), ``OGAUDIT_DEMO_NOISE``
    (planted noise rate, 0.1), ``OGAUDIT_DEMO_EPOCHS`` (10: about 30 s on a quiet 2-core machine, far longer on a shared one, see the README; ``auto`` picks by data size),
    ``OGAUDIT_DEMO_MAP`` (umap), ``OGAUDIT_DEMO_LIMIT`` (a stratified subset size; default all).
    """

    data: str = "mnist5k"
    noise_rate: float = 0.1
    epochs: int | None = 10
    map_method: str = "umap"
    limit: int | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> DemoConfig:
        env = os.environ if environ is None else environ
        try:
            return cls(
                data=env.get("OGAUDIT_DEMO", cls.data),
                noise_rate=float(env.get("OGAUDIT_DEMO_NOISE", cls.noise_rate)),
                epochs=_optional_int(env.get("OGAUDIT_DEMO_EPOCHS", str(cls.epochs))),
                map_method=env.get("OGAUDIT_DEMO_MAP", cls.map_method),
                limit=_optional_int(env.get("OGAUDIT_DEMO_LIMIT")),
            )
        except ValueError as error:
            raise SettingsError(f"An OGAUDIT_DEMO_* environment variable is not a number: {error}.") from error

    def settings(self):
        """The :class:`~ogaudit.settings.AuditSettings` of the demo audit."""
        from ogaudit.settings import AuditSettings

        return AuditSettings(
            noise_rate=self.noise_rate, epochs=self.epochs, map_method=self.map_method, limit=self.limit
        )

    @property
    def enabled(self) -> bool:
        """False when ``OGAUDIT_DEMO`` is ``0``, ``off``, ``no``, ``none``, ``false`` or empty: no demo audit starts."""
        return self.data.strip().lower() not in DEMO_OFF

    @property
    def project_name(self) -> str:
        return f"demo-{self.data}"

    def describe(self) -> str:
        size = f"a {self.limit:,}-sample subset of " if self.limit else ""
        return (
            f"**Demo:** {size}the built-in `{self.data}` data with **{self.noise_rate:.0%} of the labels flipped on "
            "purpose**, so the detector has wrong labels to find and you can check its flags against the truth. "
            "To audit your own data, open **New audit** in the sidebar: give a path to an image folder (one "
            "sub-folder per class), a CSV manifest (`path,label`), an `.npz` (`x`, `y`), a folder of `.npy` arrays or a "
            "text table (`.csv`, `.tsv`, `.jsonl`, `.parquet`), or upload a zip of an image folder or a text table."
        )


MAP_POINTS_ENV = "OGAUDIT_MAP_POINTS"


def map_points_limit(environ: dict[str, str] | None = None) -> int:
    """``$OGAUDIT_MAP_POINTS``: maps with more samples than this are drawn as a density image (default
    :data:`~ogaudit.map.density.DENSITY_ABOVE`). Raises :class:`SettingsError` unless it is a whole number ≥ 0."""
    from ogaudit.map.density import DENSITY_ABOVE

    text = (os.environ if environ is None else environ).get(MAP_POINTS_ENV, "").strip()
    if not text:
        return DENSITY_ABOVE
    if not text.isdigit():
        raise SettingsError(
            f"{MAP_POINTS_ENV}={text!r} is not a whole number of samples; e.g. {MAP_POINTS_ENV}=20000, or unset it "
            f"for the default ({DENSITY_ABOVE:,})."
        )
    return int(text)


def _optional_int(text: str | None) -> int | None:
    return None if text in (None, "", "auto", "none") else int(text)
