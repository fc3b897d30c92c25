"""Markdown tables: how a number reads in a cell, the table lines, and a benchmark process's
status in one cell. Used by every report (the suite's section, keypoints, the GPU check)."""


def cell(value):
    """A number for a table cell: thousands separators, 1 decimal from 100 up, 2 from 1 up,
    3 significant digits below 1 (tiny smoke-run numbers stay readable); '-' for None."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:,.1f}"
        if magnitude >= 1 or magnitude == 0:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def table(header, rows):
    """Markdown table lines from a header list and rows of cell values (strings as they are,
    anything else through `cell`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) if not isinstance(c, str) else c for c in row) + " |"
              for row in rows]
    return lines


def status_cell(entry):
    """'ok', 'skipped: REASON' or 'ERROR: first line of the error' of a worker result."""
    if entry["status"] == "error":
        lines = (entry.get("error") or "").splitlines()
        return f"ERROR: {lines[0]}" if lines else "ERROR"
    if entry["status"] == "skipped":
        return f"skipped: {entry.get('reason')}"
    return entry["status"]
