"""One printed line per figure: the value, its ceiling and ratio, how measured, PASS/MISS."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    text: str  # e.g. "p50 < 0.7 s"
    passed: bool

    def __str__(self) -> str:
        return f"{self.text}: {'PASS' if self.passed else 'MISS'}"


@dataclass(frozen=True)
class Line:
    label: str
    value: str
    ceiling: str = ""
    detail: str = ""
    targets: tuple[Target, ...] = field(default=())

    def render(self) -> str:
        parts = [f"{self.label:<30}", self.value]
        if self.ceiling:
            parts.append(f"| {self.ceiling}")
        if self.detail:
            parts.append(f"[{self.detail}]")
        if self.targets:
            parts.append("| " + "; ".join(str(t) for t in self.targets))
        return " ".join(parts)


def ratio(value: float, ceiling: float) -> str:
    if not ceiling or ceiling != ceiling or value != value:
        return "n/a"
    share = value / ceiling
    return f"{share:.3f}" if share < 0.1 else f"{share:.2f}"


def mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"
