"""The per-sample stages on a Ray cluster: Ray Data ``map_batches`` over a pool of actors, one model per actor.

What runs where:

* The driver (this process) splits the N samples into index ranges of ``block_rows`` samples. Each range is read
  where the data live: an array memory-mapped from a ``.npy`` file is opened by path on the actor (the file must
  be reachable at the same path from every node); any other array goes through the object store once, one block
  per range, never as one giant object.
* Each actor rebuilds the trained model from its recipe and state dict (:func:`~ogaudit.models.nets.model_recipe`,
  tensors only: nothing pickled from a user's file is executed) and computes, per range, the penultimate
  features and logits (the closed-form last-layer evidence) or the projected gradients of chosen layers with the
  same code the local engine runs (:func:`~ogaudit.gradients.layers.project_layer_gradients`). With GPUs in the
  cluster every actor takes one.
* Results stream back as ranges finish and are written into the same arrays and the same resumable layer store
  as the local engine's (a :class:`~ogaudit.cache.store.SampleStore` from
  :func:`~ogaudit.gradients.layers.layer_store`; ranges are whole chunks of it, so the actors take the local
  engine's batches); progress is reported as they land, and a set cancel stops the iteration (the Ray Data
  executor and its actors are shut down).

Ray is an optional extra (``pip install 'ogaudit[ray]'``) imported only here, and only when an engine is made.
Ray Data: https://docs.ray.io/en/latest/data/api/doc/ray.data.Dataset.map_batches.html
"""

from __future__ import annotations

import mmap
import os
import threading

import numpy as np
import torch

from ogaudit.cache.store import SampleStore
from ogaudit.data.dataset import Dataset
from ogaudit.data.imagefiles import ImageFiles
from ogaudit.errors import EngineError, OgauditError, SettingsError
from ogaudit.models.base import AuditModel
from ogaudit.models.nets import model_recipe, rebuild_model
from ogaudit.progress import ProgressCallback, check_cancel, report

__all__ = ["RAY_INSTALL", "RayEngine"]

RAY_INSTALL = "pip install 'ogaudit[ray]'"
BLOCK_ROWS = 2048
"""Samples per range (one actor call, one object-store block) for small models; see :meth:`RayEngine.block_rows_for`."""
SLOW_MODEL_BLOCK_ROWS = 256
"""Samples per range for pretrained backbones and checkpoints, so a range lands (and cancel is seen) in seconds."""
BLOCK_BYTES = 32 * 2**20
"""At most this many bytes of projected gradients per range, so results stream without filling the store."""
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20
"""Object store of a Ray instance the engine starts on this machine (spills to disk beyond it)."""
FORWARD_BATCH = 256


def import_ray():
    """The ``ray`` module with Ray Data, or :class:`~ogaudit.errors.SettingsError` naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is a separate extra of ray
    except ImportError as error:
        raise SettingsError(
            f"The Ray engine needs Ray Data, which is not installed: run {RAY_INSTALL} (ray[data]==2.60.0) here "
            "and on every node of the cluster, or use the local engine (leave out --engine ray)."
        ) from error
    return ray


def _count(name: str, value, *, low: int, none_ok: bool = True) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise SettingsError(f"{name} must be a number ≥ {low}; got {value!r}.")


class RayEngine:
    """The per-sample stages as Ray Data ``map_batches`` over an actor pool (see the module docstring).

    Parameters
    ----------
    address : ``"auto"`` (a cluster started on this machine with ``ray start --head``), ``"ray://host:10001"``
        (Ray Client to a remote head), or None: ``$RAY_ADDRESS`` if set, else a Ray instance started on this
        machine with ``local_cpus`` CPUs and a ``local_object_store_bytes`` object store (shut down by
        :meth:`close`). A Ray already initialised in this process (``ray.init`` by the caller) is used as it is.
    actors : actors in the pool; default one per GPU when the cluster has GPUs, else one per
        ``cpus_per_actor`` CPUs of the cluster.
    cpus_per_actor : CPUs each actor reserves, and the torch threads it uses.
    gpus_per_actor : GPUs each actor reserves (the model runs on ``cuda``); default 1 when the cluster has GPUs.
    block_rows : samples per range; default :meth:`block_rows_for`.

    Raises :class:`~ogaudit.errors.SettingsError` when Ray is not installed (naming ``pip install 'ogaudit[ray]'``)
    or a count is out of range.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        actors: int | None = None,
        cpus_per_actor: float = 1,
        gpus_per_actor: float | None = None,
        block_rows: int | None = None,
        local_cpus: int | None = None,
        local_object_store_bytes: int = LOCAL_OBJECT_STORE_BYTES,
    ):
        _count("actors", actors, low=1)
        _count("cpus_per_actor", cpus_per_actor, low=0, none_ok=False)
        _count("gpus_per_actor", gpus_per_actor, low=0)
        _count("block_rows", block_rows, low=1)
        _count("local_cpus", local_cpus, low=1)
        _count("local_object_store_bytes", local_object_store_bytes, low=80 * 2**20, none_ok=False)
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise SettingsError(f"ray_address must be 'auto', 'ray://HOST:PORT' or a HOST:PORT; got {address!r}.")
        self.address, self.actors, self.block_rows = address, actors, block_rows
        self.cpus_per_actor, self.gpus_per_actor = cpus_per_actor, gpus_per_actor
        self.local_cpus = local_cpus or max(1, min(2, os.cpu_count() or 1))
        self.local_object_store_bytes = int(local_object_store_bytes)
        self._ray = import_ray()
        self._started = False
        self._pool: dict = {}

    # ---- the two stages -------------------------------------------------------------------------------------

    def head_outputs(
        self,
        model: AuditModel,
        dataset: Dataset,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(features (N, d) float32, logits (N, C) float32)``, computed on the actors (eval mode)."""
        n = len(dataset)
        ranges = _ranges(n, self.block_rows_for(model))
        out: dict[str, np.ndarray] = {}
        landed = np.zeros(n, dtype=bool)

        def write(batch: dict[str, np.ndarray]) -> None:
            rows = _rows(batch["index"])
            if not out:
                out["features"] = np.empty((n, batch["features"].shape[1]), dtype=np.float32)
                out["logits"] = np.empty((n, batch["logits"].shape[1]), dtype=np.float32)
            out["features"][rows] = batch["features"]
            out["logits"][rows] = batch["logits"]
            landed[rows] = True

        self._run({"stage": "head"}, model, dataset, ranges, write, progress, cancel)
        _check_landed(landed)
        return out["features"], out["logits"]

    def layer_gradients(
        self,
        model: AuditModel,
        dataset: Dataset,
        settings,
        *,
        store: SampleStore,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Fill the missing chunks of ``store`` (:func:`~ogaudit.gradients.layers.layer_store`) with the (N, D)
        float32 projected gradients, computed on the actors.

        Only missing chunks are sent, in ranges of whole chunks (consecutive ones, about :meth:`block_rows_for`
        rows and at most :data:`BLOCK_BYTES` of results each); each lands with
        :meth:`~ogaudit.cache.store.SampleStore.write_rows`, in whatever order the actors finish.
        """
        from dataclasses import asdict

        (dim,) = store.fields["gradients"][0]
        rows_per_range = min(self.block_rows_for(model), max(16, BLOCK_BYTES // (4 * max(dim, 1))))
        ranges = _chunk_ranges(store, max(1, rows_per_range // store.chunk_rows))

        def write(batch: dict[str, np.ndarray]) -> None:
            store.write_rows(batch["index"], gradients=batch["gradients"])

        task = {"stage": "layers", "settings": {**asdict(settings), "layers": list(settings.layers)}}
        self._run(task, model, dataset, ranges, write, progress, cancel, already=store.rows_done())
        sizes = [stop - start for start, stop in map(store.bounds, range(store.n_chunks))]
        _check_landed(np.repeat(store.done, sizes))

    def block_rows_for(self, model: AuditModel) -> int:
        """Samples per range: ``block_rows`` if given, else fewer for slow models (pretrained, checkpoints)."""
        if self.block_rows is not None:
            return int(self.block_rows)
        return BLOCK_ROWS if model.kind in ("mlp", "cnn") else SLOW_MODEL_BLOCK_ROWS

    def describe(self) -> dict:
        return {"name": self.name, "address": self.address or os.environ.get("RAY_ADDRESS") or "local", **self._pool}

    def close(self) -> None:
        """Shut down the Ray instance this engine started (one it found running is left alone)."""
        if self._started:
            self._ray.shutdown()
            self._started = False

    # ---- plumbing -------------------------------------------------------------------------------------------

    def _connect(self):
        ray = self._ray
        if not ray.is_initialized():
            if self.address is None and not os.environ.get("RAY_ADDRESS"):
                ray.init(
                    num_cpus=self.local_cpus,
                    object_store_memory=self.local_object_store_bytes,
                    include_dashboard=False,
                    log_to_driver=False,
                )
            else:
                ray.init(address=self.address or None, log_to_driver=False)
            self._started = True
        return ray

    def _pool_size(self, ray) -> tuple[int, float, float]:
        resources = ray.cluster_resources()
        gpus = self.gpus_per_actor
        if gpus is None:
            gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        if self.actors is not None:
            actors = int(self.actors)
        elif gpus > 0:
            actors = max(1, int(resources.get("GPU", 0) // gpus))
        else:
            actors = max(1, int(resources.get("CPU", 1) // max(self.cpus_per_actor, 1)))
        return actors, float(self.cpus_per_actor), float(gpus)

    def _run(self, task, model, dataset, ranges, write, progress, cancel, *, already=0) -> None:
        """Send ``ranges`` to the actor pool; ``write(batch)`` each result as it lands (``already``: rows done
        before, for progress)."""
        check_cancel(cancel)
        todo = list(range(len(ranges)))
        n = len(dataset)
        if not todo:
            report(progress, "gradients", 1.0, f"{n}/{n} samples")
            return
        ray = self._connect()
        actors, cpus, gpus = self._pool_size(ray)
        actors = min(actors, len(todo))
        self._pool = {"actors": actors, "cpus_per_actor": cpus, "gpus_per_actor": gpus, "nodes": len(ray.nodes())}
        recipe = model_recipe(model)
        state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
        refs = {"model": ray.put(state)}
        source = _source(ray, dataset.x, ranges, todo, refs)
        if task["stage"] == "layers":
            refs["labels"] = ray.put(np.ascontiguousarray(dataset.y, dtype=np.int64))
            source["labels"] = [refs["labels"]]
        task = {**task, "recipe": recipe, "threads": max(1, int(cpus)), "gpu": gpus > 0, "batch": FORWARD_BATCH}
        items = [{"block": i, "start": ranges[i][0], "stop": ranges[i][1]} for i in todo]
        context = ray.data.DataContext.get_current()
        bars = context.enable_progress_bars
        context.enable_progress_bars = False  # progress goes through the callback; a dataset copies the context
        try:
            data = ray.data.from_items(items, override_num_blocks=len(items))
        finally:
            context.enable_progress_bars = bars
        mapped = data.map_batches(
            _RangeWorker,
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus,
            num_gpus=gpus,
            fn_constructor_kwargs={"task": task, "model": [refs["model"]], "source": source},
        )
        finished = already
        report(progress, "gradients", finished / n, f"{finished}/{n} samples on {actors} Ray actor(s)")
        batches = mapped.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1)
        try:
            for batch in batches:
                write(batch)
                finished += len(batch["index"])
                report(progress, "gradients", finished / n, f"{finished}/{n} samples on {actors} Ray actor(s)")
                check_cancel(cancel)
        except (OgauditError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001 - Ray wraps what failed on the cluster; say it in one line
            raise _cluster_error(error) from error
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # stops the streaming executor and its actors
            del refs, source


def _cluster_error(error: Exception) -> OgauditError:
    """The first readable cause of a failure on the cluster: an ogaudit error raised on an actor as it is."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OgauditError):
            return cause
        cause = cause.__cause__
    lines = [line for line in str(error).splitlines() if line.strip()]
    last = lines[-1].strip() if lines else type(error).__name__
    return EngineError(
        f"The Ray engine failed on the cluster ({type(error).__name__}): {last[:300]}. Check that every node has "
        f"the same ogaudit installed ({RAY_INSTALL}) and can read the data at the same path; the Ray logs "
        "(/tmp/ray/session_latest/logs on each node) have the full traceback. Rows already landed are kept."
    )


def _ranges(n: int, rows: int) -> list[tuple[int, int]]:
    return [(start, min(start + rows, n)) for start in range(0, n, rows)]


def _chunk_ranges(store: SampleStore, chunks_per_range: int) -> list[tuple[int, int]]:
    """Row ranges ``(start, stop)`` over the missing chunks of ``store``: runs of consecutive missing chunks, cut
    every ``chunks_per_range`` chunks."""
    ranges: list[tuple[int, int]] = []
    run: list[int] = []
    for chunk in [*store.missing(), None]:
        if run and (chunk is None or chunk != run[-1] + 1 or len(run) == chunks_per_range):
            ranges.append((store.bounds(run[0])[0], store.bounds(run[-1])[1]))
            run = []
        if chunk is not None:
            run.append(chunk)
    return ranges


def _rows(index: np.ndarray) -> slice | np.ndarray:
    """The rows ``index`` as a slice when contiguous (every range is), else as the index array."""
    index = np.asarray(index, dtype=np.int64)
    if len(index) and index[-1] - index[0] == len(index) - 1 and np.all(np.diff(index) == 1):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def _check_landed(landed: np.ndarray) -> None:
    missing = np.flatnonzero(~landed)
    if len(missing):
        raise EngineError(
            f"The Ray engine returned no result for {len(missing)} sample(s) (first: row {missing[0]}); the "
            "cluster may have lost a worker. Run again: finished ranges are kept."
        )


def npy_file_of(x: np.ndarray) -> dict | None:
    """``{"path", "offset", "dtype", "shape"}`` when ``x`` is the whole array of a memory-mapped ``.npy`` file
    (as ``np.load(path, mmap_mode="r")`` gives), so a worker can map the same bytes; else None."""
    if not isinstance(x, np.memmap) or getattr(x, "filename", None) is None or not x.flags.c_contiguous:
        return None
    buffer = getattr(x, "_mmap", None)
    offset = int(getattr(x, "offset", 0))
    if buffer is None:
        return None
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    mapped = np.frombuffer(buffer, dtype=np.uint8)
    if x.ctypes.data != mapped.ctypes.data + (offset - start) or x.nbytes != len(mapped) - (offset - start):
        return None  # a slice or view of the mapped array, not the array of the whole file
    return {"path": str(x.filename), "offset": offset, "dtype": x.dtype.str, "shape": list(x.shape)}


def _source(ray, x: np.ndarray, ranges, todo, refs: dict) -> dict:
    """How actors read rows: the ``.npy`` file by path, or one object-store block per range still to do."""
    spec = npy_file_of(x)
    if spec is not None:
        return {"kind": "npy", **spec}
    if isinstance(x, ImageFiles):  # image files: the actors decode them (the files must be reachable from each node)
        return {"kind": "files", "files": x}
    blocks = {i: ray.put(np.ascontiguousarray(x[ranges[i][0] : ranges[i][1]])) for i in todo}
    refs["blocks"] = blocks
    return {"kind": "blocks", "blocks": [blocks.get(i) for i in range(len(ranges))]}


class _RangeWorker:
    """One Ray Data actor: the rebuilt model and a reader of the data; called with a batch of ranges."""

    def __init__(self, task: dict, model: list, source: dict):
        import ray

        torch.set_num_threads(task["threads"])
        self.task, self.source = task, source
        self.device = torch.device("cuda" if task["gpu"] and torch.cuda.is_available() else "cpu")
        self.model = rebuild_model(task["recipe"], ray.get(model[0])).to(self.device)
        self.x = None
        if source["kind"] == "files":
            self.x = source["files"]
        elif source["kind"] == "npy":
            self.x = np.memmap(
                source["path"], dtype=np.dtype(source["dtype"]), mode="r", offset=source["offset"],
                shape=tuple(source["shape"]),
            )  # fmt: skip
        self.labels = ray.get(source["labels"][0]) if "labels" in source else None
        self.layer_settings = None
        if task["stage"] == "layers":
            from ogaudit.gradients.layers import LayerGradientSettings

            self.layer_settings = LayerGradientSettings(
                **{**task["settings"], "layers": tuple(task["settings"]["layers"])}
            )

    def _read(self, block: int, start: int, stop: int) -> np.ndarray:
        if self.x is not None:
            return np.array(self.x[start:stop])  # a memory map's rows, or image files decoded here
        import ray

        return np.array(ray.get(self.source["blocks"][block]))  # a writable copy: torch refuses read-only arrays

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        parts = [
            self._compute(self._read(int(b), int(s), int(e)), int(s), int(e))
            for b, s, e in zip(batch["block"], batch["start"], batch["stop"], strict=True)
        ]  # one range per call (batch_size=1): a loop over ranges, never over samples
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def _compute(self, x: np.ndarray, start: int, stop: int) -> dict[str, np.ndarray]:
        index = np.arange(start, stop, dtype=np.int64)
        if self.layer_settings is not None:
            from ogaudit.gradients.layers import project_layer_gradients

            gradients = project_layer_gradients(
                self.model, torch.as_tensor(x), self.labels[start:stop], self.layer_settings
            )
            return {"index": index, "gradients": np.asarray(gradients, dtype=np.float32)}
        features, logits = [], []
        with torch.no_grad():
            for first in range(0, len(x), self.task["batch"]):
                h = self.model.features(torch.as_tensor(x[first : first + self.task["batch"]]).to(self.device)).float()
                features.append(h.cpu().numpy())
                logits.append(self.model.head(h).cpu().numpy())
        return {"index": index, "features": np.concatenate(features), "logits": np.concatenate(logits)}
