"""What identifies a model: a name safe as a file name, and a digest over its files.

A model is known by ``"<name>-v<version>"`` (`validate_model_name` keeps names usable as file
names) and identified by its `model_digest`, one SHA-256 over the SHA-256 of its metadata,
weights and emulator files, which the registry records and ``predict`` writes to
``table.meta["MODELDIG"]``.
"""

from __future__ import annotations

import hashlib
import re

from .._hashing import is_sha256

__all__ = ["model_digest", "validate_model_name"]

#: First line of the text whose SHA-256 is `model_digest`.
_DIGEST_HEADER = "specutils-cinn model digest 1"

_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._+-]*[A-Za-z0-9])?$")


def validate_model_name(name: str, what: str = "model name") -> str:
    """Check that ``name`` is a safe model name and return it.

    A safe name starts and ends with a letter or digit, contains only letters, digits
    and ``._+-``, and never ``..``; it can therefore be used as a file name without
    path traversal.

    Parameters
    ----------
    name : str
        The name to check.
    what : str, optional
        How to call the value in the error message.

    Returns
    -------
    str
        ``name`` unchanged.

    Raises
    ------
    ValueError
        If the name is not a string or not safe.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise ValueError(
            f"invalid {what} {name!r}: use letters, digits and '._+-' only, starting and "
            "ending with a letter or digit, without '..'"
        )
    return name


def model_digest(
    metadata_sha256: str, weights_sha256: str, emulator_sha256: str | None = None
) -> str:
    """Return the digest identifying a model: one SHA-256 over all its files.

    It is the SHA-256 of the UTF-8 text ``"specutils-cinn model digest 1\\n"`` followed by
    ``"metadata <sha256>\\n"``, ``"weights <sha256>\\n"`` and, for a model with an emulator,
    ``"emulator <sha256>\\n"``, each ``<sha256>`` being the file's SHA-256. Changing any byte of
    any file of the model changes it. The registry records it per model (``digest``) and
    ``predict`` writes it to ``table.meta["MODELDIG"]``.

    Parameters
    ----------
    metadata_sha256, weights_sha256 : str
        SHA-256 of the metadata and weights files (64 lower-case hex digits).
    emulator_sha256 : str or None, optional
        SHA-256 of the emulator file, for a model with one.

    Returns
    -------
    str
        64 lower-case hexadecimal digits.

    Raises
    ------
    ValueError
        If a hash is not 64 lower-case hex digits.
    """
    lines = [_DIGEST_HEADER]
    for role, sha in (
        ("metadata", metadata_sha256),
        ("weights", weights_sha256),
        ("emulator", emulator_sha256),
    ):
        if sha is None and role == "emulator":
            continue
        if not is_sha256(sha):
            raise ValueError(f"invalid SHA-256 of the {role} file: {sha!r}")
        lines.append(f"{role} {sha}")
    return hashlib.sha256(("\n".join(lines) + "\n").encode("utf-8")).hexdigest()
