"""Result tables: one row per evaluated run, written as Markdown and CSV (atomically)."""
import csv
import io

from .files import atomic_write_text

COLUMNS = ("run", "fid", "fid_images", "style_images", "identity_distance", "identity_pairs",
           "lpips_diversity", "diversity_inputs", "variants_per_input")


def _cell(value, missing=""):
    if value is None:
        return missing
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def to_markdown(rows, columns=COLUMNS, missing=""):
    """A Markdown table; a value a row lacks (or holds as None) is written as ``missing``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c), missing) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows, columns=COLUMNS):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def write_report(rows, prefix, notes=()):
    """Write ``prefix.md`` (table + notes) and ``prefix.csv``; returns the two paths."""
    markdown = to_markdown(rows) + "".join(f"\n> {note}\n" for note in notes)
    atomic_write_text(prefix + ".md", markdown)
    atomic_write_text(prefix + ".csv", to_csv(rows))
    return prefix + ".md", prefix + ".csv"
