"""How a model id is shown to a reader (the dashboard and the HTML report share this).

A model given as a local folder (an absolute path, `~/…`, `./…`, `../…`, a Windows path, or a
relative path with two or more parts such as `models/org/name`) is shown by its last path
component; the whole id stays available (the dashboard puts it in a hover text). Hugging Face
ids (`Qwen/Qwen2.5-VL-3B-Instruct`: one slash), served models (`served:name`) and OCR engine
names are shown as they are.
"""
from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath

_DRIVE = re.compile(r"^[A-Za-z]:[/\\]")


def is_local_path(model_id: str | None) -> bool:
    """True for a model id that names a folder on disk rather than a hub id / served name."""
    if not model_id:
        return False
    text = str(model_id).strip()
    if text.startswith(("/", "~", ".", "\\")) or _DRIVE.match(text):
        return True
    if ":" in text.split("/")[0]:                    # served:name, hf:org/name, ...
        return False
    return text.rstrip("/\\").count("/") >= 2 or "\\" in text


def public_name(model_id: str | None) -> str:
    """A model/engine id as shown: local folders by their last component, everything else as it is."""
    if not model_id:
        return ""
    text = str(model_id).strip()
    if not is_local_path(text):
        return text
    text = text.rstrip("/\\")
    name = PureWindowsPath(text).name if "\\" in text else PurePosixPath(text).name
    return name or text
