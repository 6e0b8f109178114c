"""Developer tools, run from the repository root (``python -m tools.…``); never imported by the installed packages."""
