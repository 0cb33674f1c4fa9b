"""Evaluation results as Detectron2-style pipe (markdown) tables, and logging them without Lightning."""

import logging
import math
from collections.abc import Mapping

_LOGGER = logging.getLogger("detzoo.evaluation")


def _pipe_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"

    separator = "|" + "|".join(":" + "-" * (width + 1) for width in widths) + "|"
    return "\n".join([line(header), separator, *(line(row) for row in rows)])


def _number(value: float, scale: float) -> str:
    return "nan" if math.isnan(value) else f"{value * scale:.3f}"


def format_metrics_table(
    results: Mapping[str, float], scale: float = 100.0, columns: int = 3
) -> str:
    """Render evaluator results as pipe tables, one section per task, like Detectron2's logs.

    Args:
        results: ``"<task>/<metric>"`` keys (e.g. ``"bbox/AP"``) to values in ``[0, 1]``; keys
            ``"<task>/<metric>-<category>"`` are per-category values.
        scale: multiplier for display (100: percent, as Detectron2 prints).
        columns: (category, value) pairs per row of the per-category tables.

    Returns:
        For each task in order of appearance, a ``"<task>:"`` title, a one-row table of its
        summary metrics, then one table per per-category metric with ``columns`` pairs per row.
    """
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    tasks: dict[str, tuple[dict[str, float], dict[str, dict[str, float]]]] = {}
    for key, value in results.items():
        task, sep, metric = key.partition("/")
        if not sep:
            raise ValueError(f"result key {key!r} is not of the form '<task>/<metric>'")
        summary, per_category = tasks.setdefault(task, ({}, {}))
        name, dash, category = metric.partition("-")
        if dash:
            per_category.setdefault(name, {})[category] = float(value)
        else:
            summary[metric] = float(value)

    sections = []
    for task, (summary, per_category) in tasks.items():
        parts = [f"{task}:"]
        if summary:
            parts.append(
                _pipe_table(list(summary), [[_number(v, scale) for v in summary.values()]])
            )
        for name, values in per_category.items():
            cells = [
                cell for category, v in values.items() for cell in (category, _number(v, scale))
            ]
            width = 2 * columns
            cells += [""] * (-len(cells) % width)
            rows = [cells[i : i + width] for i in range(0, len(cells), width)]
            parts.append(
                f"Per-category {task} {name}:\n" + _pipe_table(["category", name] * columns, rows)
            )
        sections.append("\n\n".join(parts))
    return "\n\n".join(sections)


def log_metrics(
    results: Mapping[str, float], logger: logging.Logger | None = None, level: int = logging.INFO
) -> None:
    """Log :func:`format_metrics_table` of ``results`` (to the ``detzoo.evaluation`` logger by default)."""
    (logger or _LOGGER).log(level, "Evaluation results:\n%s", format_metrics_table(results))
