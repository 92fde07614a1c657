"""zssr: zero-shot super-resolution on the CPU.

This folder (engine/api/ in the source tree) is installed as the top-level package ``zssr``;
the folders engine/ and cli/ are installed as ``zssr.engine`` and ``zssr.cli``
(pyproject.toml, ``[tool.setuptools.package-dir]``).
"""
