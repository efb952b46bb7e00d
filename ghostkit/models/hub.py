"""ImageNet weights from the Hugging Face Hub: the repositories timm publishes for GhostNet.

``weights="imagenet"`` (``--pretrained imagenet``) names the ImageNet-1k weights of a variant; ``"imagenet@REV"``
pins a revision of its repository (a commit hash, branch or tag; the default is ``main``, the latest). The file is
``model.safetensors`` with timm's key names, fetched by ``huggingface_hub.hf_hub_download`` into the hub's own
cache (``HF_HUB_CACHE`` / ``HF_HOME``, default ``~/.cache/huggingface/hub``) and read through the key mapping of
:mod:`ghostkit.models.weights`. ``HF_HUB_OFFLINE=1`` makes the hub use its cache only, without network requests.

Beside the weights comes the normalisation they were trained with (``pretrained_cfg`` in the repository's
``config.json``: mean, std, input size, crop fraction, interpolation), returned as a plain dict that a task model
stores in its checkpoint config. When ``config.json`` is not there (a weights file placed by hand), timm's values for
these repositories are used: every GhostNet in timm was trained at 224 px with ImageNet's mean and std.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from ..errors import GhostkitError

__all__ = ["HUB_WEIGHTS", "DEFAULT_REVISION", "hub_revision", "check_hub_weights", "hub_weights", "resolve_weights",
           "check_normalisation"]

# variant → the Hub repository holding its ImageNet-1k weights (timm's ``<variant>.in1k`` tags)
HUB_WEIGHTS: dict[str, str] = {
    "ghostnet_100": "timm/ghostnet_100.in1k",
    "ghostnetv2_100": "timm/ghostnetv2_100.in1k",
    "ghostnetv2_130": "timm/ghostnetv2_130.in1k",
    "ghostnetv2_160": "timm/ghostnetv2_160.in1k",
    "ghostnetv3_100": "timm/ghostnetv3_100.in1k",
}
DEFAULT_REVISION = "main"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
KEYWORD = "imagenet"

# timm's pretrained_cfg of every GhostNet repository, used when config.json is absent
TIMM_PRETRAINED_CFG: dict = {
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "input_size": [3, 224, 224],
    "crop_pct": 0.875,
    "interpolation": "bicubic",
}


def hub_revision(weights: object) -> str | None:
    """The revision asked for when ``weights`` is ``"imagenet"`` or ``"imagenet@REV"``, else ``None`` (a path)."""
    if not isinstance(weights, str) or weights.split("@", 1)[0] != KEYWORD:
        return None
    revision = weights.partition("@")[2] if "@" in weights else DEFAULT_REVISION
    if not revision:
        raise GhostkitError(f"{weights!r}: give a revision after '@' (a commit hash, branch or tag), or plain "
                            f"{KEYWORD!r} for {DEFAULT_REVISION}")
    return revision


def check_hub_weights(name: str) -> str:
    """The repository of ``name``'s ImageNet weights; a variant without them raises a one-line error listing those
    that have them."""
    if name not in HUB_WEIGHTS:
        raise GhostkitError(f"{name}: no published ImageNet weights; variants with them: {', '.join(HUB_WEIGHTS)} "
                            "(or pass a weights file)")
    return HUB_WEIGHTS[name]


def hub_weights(name: str, revision: str = DEFAULT_REVISION) -> tuple[Path, dict]:
    """Fetch (or find in the hub's cache) ``name``'s ImageNet weights → ``(model.safetensors path, pretrained cfg)``.

    The cfg holds ``weights`` ("imagenet"), ``repo``, ``revision`` (the commit actually used), ``mean``, ``std``,
    ``input_size`` (C, H, W), ``crop_pct`` and ``interpolation``. Errors are one line, naming the repository.
    """
    repo = check_hub_weights(name)
    path = _download(repo, WEIGHTS_FILE, revision)
    commit = path.parent.name  # hf_hub_download returns <cache>/models--.../snapshots/<commit>/<file>
    cfg = {"weights": KEYWORD, "repo": repo, "revision": commit, **_data_config(repo, commit, path.parent)}
    return path, cfg


def resolve_weights(name: str, weights: str | Path) -> tuple[str | Path, dict | None]:
    """``weights`` as a file to read: ``"imagenet[@REV]"`` → the hub file of ``name`` and its pretrained cfg; a path
    (official, timm or ghostkit file) → itself and ``None``."""
    revision = hub_revision(weights)
    if revision is None:
        return weights, None
    return hub_weights(name, revision)


def _download(repo: str, filename: str, revision: str) -> Path:
    """``hf_hub_download`` with the hub's errors turned into one-line :class:`GhostkitError`\\ s."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.file_download import repo_folder_name

    pinned = revision != DEFAULT_REVISION
    where = f"{repo}@{revision}" if pinned else repo
    try:
        return Path(hf_hub_download(repo, filename, revision=revision))
    except LocalEntryNotFoundError:  # no network (or HF_HUB_OFFLINE=1) and not in the cache
        cache = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")
        why = "HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE else "the Hub could not be reached"
        raise GhostkitError(
            f"{where}: {filename} is not in the Hugging Face cache ({cache}) and {why}; fetch it where there is "
            f"network (`hf download {repo} {filename}{f' --revision {revision}' if pinned else ''}`, then copy that "
            "cache folder here) or pass the file itself "
            "(--pretrained FILE, create_model(name, weights=FILE))") from None
    except RevisionNotFoundError:
        raise GhostkitError(f"{where}: no revision {revision!r} in the repository") from None
    except RepositoryNotFoundError:
        raise GhostkitError(f"{repo}: repository not found on the Hub (or not accessible)") from None
    except EntryNotFoundError:
        raise GhostkitError(f"{where}: the repository has no {filename}") from None
    except HfHubHTTPError as e:
        raise GhostkitError(f"{where}: download of {filename} failed ({str(e).splitlines()[0]})") from None
    except OSError as e:  # cache folder not writable, disk full
        raise GhostkitError(f"{where}: cannot store {filename} in the Hugging Face cache ({e})") from None


def _data_config(repo: str, commit: str, snapshot: Path) -> dict:
    """Mean, std, input size, crop fraction and interpolation from the repository's config.json (``pretrained_cfg``)
    at ``commit``; timm's values where the file or a field is missing."""
    cfg = dict(TIMM_PRETRAINED_CFG)
    path = snapshot / CONFIG_FILE
    if not path.is_file():
        try:
            path = _download(repo, CONFIG_FILE, commit)
        except GhostkitError:
            return cfg  # a weights file placed by hand, without its config: timm's values
    try:
        found = json.loads(path.read_text()).get("pretrained_cfg", {})
        cfg.update({k: list(v) if isinstance(v, (list, tuple)) else v for k, v in found.items() if k in cfg})
    except (OSError, ValueError, AttributeError) as e:
        warnings.warn(f"{path}: unreadable ({e}); using timm's normalisation for {repo}", stacklevel=2)
    return cfg


def check_normalisation(pretrained_cfg: dict, mean: list[float], std: list[float]) -> None:
    """Raise when the data are normalised otherwise than the pretrained weights expect (the features would shift)."""
    close = all(abs(a - b) <= 1e-3 for a, b in zip([*pretrained_cfg["mean"], *pretrained_cfg["std"]], [*mean, *std]))
    if not close or len(mean) != len(pretrained_cfg["mean"]) or len(std) != len(pretrained_cfg["std"]):
        raise GhostkitError(f"{pretrained_cfg['repo']}: its weights expect inputs normalised with mean "
                            f"{pretrained_cfg['mean']} and std {pretrained_cfg['std']}, but the data use mean {mean} "
                            f"and std {std}")
