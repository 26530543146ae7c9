"""Ray for the annotation runner: connecting (``ray`` config node) and sizing the annotation actors (``runner``
node), with every key checked before anything starts. Ray is imported lazily: without it, this module imports and
:func:`import_ray` raises an error that says what to install."""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

INSTALL_HINT = 'Ray is not installed; install the optional extra: pip install "creative-insights[ray]"'


def import_ray() -> Any:
    """Import ``ray`` (and ``ray.data``), or raise ImportError naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is the `data` extra of ray; fail here, not mid-run
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return ray


def get(cfg: Mapping[str, Any] | None, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    value = cfg.get(key, default)
    return default if value is None else value


def init_ray(ray_cfg: Mapping[str, Any] | None = None) -> bool:
    """Connect to Ray as the ``ray`` config node says, unless this process is already connected.

    Parameters
    ----------
    ray_cfg : mapping, optional
        ``address``: null starts a local Ray instance on this machine; ``"auto"`` joins the cluster started here
        with ``ray start``; ``"ray://HOST:10001"`` joins a remote cluster through Ray Client. ``num_cpus`` /
        ``num_gpus`` / ``object_store_memory`` size a local instance (null: what the machine has).
        ``include_dashboard``, ``namespace``, ``runtime_env`` (e.g. ``{py_modules: [...]}`` for a cluster where the
        project is not installed), ``log_to_driver`` are passed to ``ray.init``.

    Returns
    -------
    bool
        True when this call connected (the caller then owns the connection and shuts it down); False when Ray was
        already initialised, e.g. by a test fixture or an outer script.

    Raises
    ------
    ConnectionError
        When ``ray.address`` cannot be reached (checked with a 10 s TCP connect first: ``ray.init`` itself keeps
        retrying a dead address for minutes).
    ValueError
        When ``ray.address`` is not of a recognised form.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = get(ray_cfg, "address")
    kwargs: dict[str, Any] = {
        "address": address,
        "include_dashboard": bool(get(ray_cfg, "include_dashboard", False)),
        "log_to_driver": bool(get(ray_cfg, "log_to_driver", True)),
    }
    for key in ("namespace", "runtime_env"):
        value = get(ray_cfg, key)
        if value is not None:
            kwargs[key] = plain(value)
    if address is None:
        # Sizing only applies to an instance this process starts; a cluster has its own.
        for key in ("num_cpus", "num_gpus", "object_store_memory"):
            value = get(ray_cfg, key)
            if value is not None:
                kwargs[key] = value
    if address not in (None, "auto", "local"):
        _check_reachable(str(address))
    log.info("ray.init(%s)", ", ".join(f"{k}={v!r}" for k, v in kwargs.items()))
    try:
        ray.init(**kwargs)
    except ConnectionError as err:
        raise ConnectionError(f"cannot connect to the Ray cluster at ray.address={address!r}: {err}") from err
    return True


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast on an unreachable ``host:port`` (ray.init retries a dead address for minutes)."""
    host_port = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, sep, port = host_port.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"ray.address: expected null, 'auto', 'HOST:PORT' or 'ray://HOST:PORT', got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConnectionError(f"cannot reach the Ray cluster at ray.address={address!r}: {err}") from None


def plain(node: Any) -> Any:
    """OmegaConf containers -> plain dict / list (Ray pickles its arguments; DictConfig is heavy and fragile)."""
    if isinstance(node, Mapping):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)) or type(node).__name__ == "ListConfig":
        return [plain(v) for v in node]
    return node


def resolved(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    if type(cfg).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(cfg, resolve=True)
    return plain(cfg)


def check_runner(runner: Mapping[str, Any]) -> None:
    """Validate the ``runner`` node before anything starts, naming the bad key."""
    actors = get(runner, "actors", 1)
    pool_ok = (
        isinstance(actors, (list, tuple))
        and len(actors) == 2
        and all(isinstance(a, int) and a >= 1 for a in actors)
        and actors[0] <= actors[1]
    )
    if not (pool_ok or (isinstance(actors, int) and not isinstance(actors, bool) and actors >= 1)):
        raise ValueError(f"runner.actors: an integer >= 1 or [min, max] with 1 <= min <= max, got {actors!r}")
    gpus = get(runner, "num_gpus_per_actor", "auto")
    if gpus != "auto" and not (isinstance(gpus, (int, float)) and gpus >= 0):
        raise ValueError(f"runner.num_gpus_per_actor: a number >= 0 or 'auto', got {gpus!r}")
    for key in ("num_cpus_per_actor", "decode_num_cpus"):
        value = get(runner, key, 1)
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"runner.{key}: a number > 0, got {value!r}")
    threads = get(runner, "threads_per_actor", 0)
    if not (isinstance(threads, int) and threads >= 0):
        raise ValueError(f"runner.threads_per_actor: an integer >= 0 (0: the actor's CPUs), got {threads!r}")


def actor_resources(ray: Any, runner: Mapping[str, Any]) -> tuple[Any, float, float, int]:
    """(compute strategy, num_gpus, num_cpus, torch threads) of the annotation actors from a checked ``runner``."""
    actors = get(runner, "actors", 1)
    if isinstance(actors, (list, tuple)):
        compute = ray.data.ActorPoolStrategy(min_size=actors[0], max_size=actors[1])
    else:
        compute = ray.data.ActorPoolStrategy(size=actors)
    gpus = get(runner, "num_gpus_per_actor", "auto")
    if gpus == "auto":
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    cpus = float(get(runner, "num_cpus_per_actor", 1))
    threads = int(get(runner, "threads_per_actor", 0)) or max(1, math.ceil(cpus))
    return compute, float(gpus), cpus, threads
