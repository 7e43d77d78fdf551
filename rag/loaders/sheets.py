"""Spreadsheets (.xlsx with openpyxl, .csv and .tsv with the csv module) -> one section per sheet, one paragraph per row.

Each row is written with its column headers ("Month: March; Category: Travel; Amount: 420"), so a
passage of rows still says what every value is, and the chunker keeps rows whole.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

from rag.errors import LoadError
from rag.loaders.archive import checked_zip

MAX_CELLS = 2_000_000  # about 40 MB of text; a bigger table is data for a database, not passages to cite
_CELL_CHARS = 2_000  # one cell longer than this is cut: it is prose pasted into a cell, not a value
_NUMBER = re.compile(r"^[-+]?[\d.,]+%?$")


class _Counter:
    def __init__(self, path: str) -> None:
        self.path, self.cells = path, 0

    def add(self, n: int) -> None:
        self.cells += n
        if self.cells > MAX_CELLS:
            raise LoadError(self.path, f"the table has more than {MAX_CELLS:,} cells; split it into smaller files "
                                       "(or export the part you need) and ingest those")


def workbook_sheets(path: str, data: bytes, max_bytes: int) -> list[tuple[str, list[tuple[int, str]]]]:
    """(sheet name, [(row number, row text)]) for every sheet with values, in workbook order."""
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    checked_zip(path, data, max_bytes, "workbook")
    counter = _Counter(path)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            sheets = []
            for sheet in book.worksheets:
                if not hasattr(sheet, "iter_rows"):  # a chart sheet
                    continue
                sheet.reset_dimensions()  # a wrong stored size ("A1:XFD1048576") would pad every row
                rows = ((number, row) for number, row in enumerate(sheet.iter_rows(values_only=True), start=1))
                sheets.append((sheet.title, table_rows(rows, counter)))
            return [(name, rows) for name, rows in sheets if rows]
        finally:
            book.close()
    except LoadError:
        raise
    except (InvalidFileException, KeyError, ValueError, TypeError, AttributeError, IndexError, OSError, SyntaxError) as exc:
        raise LoadError(path, f"the workbook is damaged or not an .xlsx ({type(exc).__name__}: {exc}); "
                              "open and save it again") from None


def csv_rows(path: str, text: str, delimiter: str | None = None) -> list[tuple[int, str]]:
    """[(row number, row text)] of a CSV or TSV file; the delimiter is sniffed when not given."""
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:65536], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    try:
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        return table_rows(((reader.line_num, row) for row in reader), _Counter(path))
    except csv.Error as exc:
        raise LoadError(path, f"the table cannot be read as CSV ({exc}); check its quoting, or save it again as CSV") from None


def table_rows(rows, counter: _Counter) -> list[tuple[int, str]]:
    """Rows as "Header: value; ..." text; the first row with values is the header when it reads like one."""
    header: list[str] | None = None
    out: list[tuple[int, str]] = []
    for number, row in rows:
        counter.add(len(row))
        cells = [_cell(value) for value in row]
        if not any(cells):
            continue
        if header is None:
            if all(c and not _NUMBER.match(c) for c in cells if c) and len([c for c in cells if c]) >= 2:
                header = cells
                continue
            header = []
        named = []
        for i, value in enumerate(cells):
            if not value:
                continue
            name = header[i] if i < len(header) and header[i] else ""
            named.append(f"{name}: {value}" if name else value)
        out.append((number, "; ".join(named)))
    return out


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())[:_CELL_CHARS]
