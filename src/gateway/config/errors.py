"""Config errors that point at the file, line and column an operator must fix."""

from __future__ import annotations

from dataclasses import dataclass

Path = tuple[str | int, ...]


def format_path(path: Path) -> str:
    """``("providers", "local", "preset")`` → ``providers.local.preset``; indexes as ``[2]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "<root>"


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based
    column: int  # 1-based


@dataclass(frozen=True)
class ConfigIssue:
    message: str
    path: Path = ()
    location: Location | None = None

    def __str__(self) -> str:
        where = (
            f"{self.location.file}:{self.location.line}:{self.location.column}: "
            if self.location
            else ""
        )
        return f"{where}{format_path(self.path)}: {self.message}"


class ConfigError(Exception):
    """Every problem found in one config file, reported together."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))
