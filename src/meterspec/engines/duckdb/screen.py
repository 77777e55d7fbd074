"""Stage 1 in DuckDB: every input row accepted on its fast, valid shape
(meterspec.engines.shapes) or flagged, into one table `ev`.

`ev` holds per row: its number `n`, `ok`, the text to describe it by when it is not ok
(`flagged`), and the values the later stages read: for events id, w(orkspace), u(niverse),
type, s(ubject), the instant t (HUGEINT ns) and v_0.. (the needed properties, NULL when
absent); for records id, w, u, s, t, the quantity text q, unit and sev (sourceEventID).
`p` keeps the properties or dimensions as JSON text when a later stage needs all of them
(record output, the record-stream identity check).

NDJSON is read once, as lines (DuckDB's CSV reader, one VARCHAR per line, its rowid the line
number), and each line is parsed by json_transform (NULL, under TRY, when it is not JSON). A
row is accepted only when its line equals the text rebuilt from the values read (shapes.py),
so a line the lenient parser took although it is not strict JSON (trailing commas, NaN,
members it does not know) can only be flagged.
"""

from __future__ import annotations

from collections.abc import Sequence

from meterspec.engines.duckdb.sql import (
    condition,
    distinct,
    layered,
    literal,
    quantity_ok,
    timestamp_columns,
)
from meterspec.engines.plan import Plan
from meterspec.engines.shapes import QUOTES_PER_MEMBER
from meterspec.engines.sources import EVENT_COLUMNS, RECORD_COLUMNS

LINE_READER = ("read_csv(?, columns = {'line': 'VARCHAR'}, header = false, delim = chr(0), "
               "quote = '', escape = '', auto_detect = false, new_line = '\\n', "
               "strict_mode = false, max_line_size = 1073741824, "
               "parallel = true)")
NON_BLANK = "line IS NOT NULL AND (starts_with(line, '{') OR ltrim(line, ' ' || chr(9)) <> '')"
_EVENT_JSON = ('{"id":"VARCHAR","workspaceID":"VARCHAR","universeID":"VARCHAR",'
               '"type":"VARCHAR","subject":"VARCHAR","time":"VARCHAR","properties":"JSON"}')
_RECORD_JSON = ('{"id":"VARCHAR","workspaceID":"VARCHAR","universeID":"VARCHAR",'
                '"subject":"VARCHAR","recordedAt":"VARCHAR",'
                '"measurement":{"quantity":"VARCHAR","unit":"VARCHAR"},"dimensions":"JSON",'
                '"sourceEventID":"VARCHAR","meteredAt":"VARCHAR"}')


class Screen:
    """The screening SQL of one plan. `keep_object` keeps `p` (see the module)."""

    def __init__(self, plan: Plan, keep_object: bool) -> None:
        self.plan = plan
        self.events = plan.input == "events"
        self.needed = plan.needed()
        self.keep_object = keep_object

    def columns(self) -> list[tuple[str, str]]:
        """The columns of `ev`."""
        head = [("n", "BIGINT"), ("ok", "BOOLEAN"), ("flagged", "VARCHAR"), ("id", "VARCHAR"),
                ("w", "VARCHAR"), ("u", "VARCHAR")]
        body = ([("type", "VARCHAR"), ("s", "VARCHAR"), ("t", "HUGEINT")] if self.events else
                [("s", "VARCHAR"), ("t", "HUGEINT"), ("q", "VARCHAR"), ("unit", "VARCHAR"),
                 ("sev", "VARCHAR")])
        values = [(f"v_{i}", "VARCHAR") for i in range(len(self.needed))]
        return head + body + values + [("p", "VARCHAR")]

    def create(self) -> str:
        return "CREATE OR REPLACE TEMP TABLE ev (" + ", ".join(
            f"{name} {kind}" for name, kind in self.columns()) + ")"

    # -------------------------------------------------------------- per source

    def ndjson(self, first: int) -> str:
        """INSERT the rows of the lines in table `raw`, numbered from `first`."""
        structure = _EVENT_JSON if self.events else _RECORD_JSON
        if self.events:
            fields = ("j.id, j.workspaceID AS w, j.universeID AS u, j.type, j.subject AS s, "
                      "j.time AS tt, j.properties::VARCHAR AS p")
        else:
            fields = ("j.id, j.workspaceID AS w, j.universeID AS u, j.subject AS s, "
                      "j.recordedAt AS tt, j.measurement.quantity AS q, "
                      "j.measurement.unit AS unit, j.dimensions::VARCHAR AS p, "
                      "j.sourceEventID AS sev, j.meteredAt AS ma")
        source = (f"SELECT n, line, {fields} FROM (SELECT rowid + {first} AS n, line, "
                  f"TRY(json_transform(line, '{structure}')) AS j FROM raw WHERE {NON_BLANK})")
        text_ok = f"coalesce(NOT contains(line, '\\') AND line = {self._rebuilt()}, false)"
        object_ok = (f"p IS NULL OR (NOT contains(p, '[') AND NOT contains(substr(p, 2), '{{')"
                     f" AND strlen(p) - strlen(replace(p, '\"', '')) = {QUOTES_PER_MEMBER} "
                     f"* len(pk) AND {distinct('pk')})")
        keyed = (f"SELECT *, CASE WHEN p IS NOT NULL THEN json_keys(p) END AS pk, "
                 f"CASE WHEN p IS NOT NULL THEN json_extract_string(p, '$.*') END AS pv, "
                 f"{text_ok} AS text_ok FROM ({source}) WHERE n IS NOT NULL")
        values = [f"pv[list_position(pk, {literal(name)})]" for name in self.needed]
        return self._insert(keyed, values, f"text_ok AND ({object_ok})", "line")

    @property
    def defer_object(self) -> bool:
        """Whether typed rows leave `p` NULL for `objects` to fill in: when only the
        record-stream identity check reads it (readings out), which reads it for the rows of
        repeated identities alone; converting every row's map to JSON costs more than the
        rest of its screening."""
        return self.keep_object and self.plan.aggregation is not None

    def objects(self, relation: str, number: str, columns: set[str], rows: str) -> str:
        """UPDATE `ev`: `p` of the typed rows numbered in `rows` (a query of numbers)."""
        column = ("dimensions" if not self.events else
                  "properties" if "properties" in columns else "NULL::MAP(VARCHAR, VARCHAR)")
        return (f"UPDATE ev SET p = d.p FROM (SELECT n, to_json(pm)::VARCHAR AS p FROM ("
                f"SELECT {number} AS n, {column} AS pm FROM {relation}) WHERE n IN ({rows})) d "
                "WHERE ev.n = d.n")

    def typed(self, relation: str, number: str, columns: set[str]) -> str:
        """INSERT the rows of a typed relation (sources.py's layout); `number` is the SQL of
        a row's number. A flagged row's document (to_json of its columns) is built for that
        row alone."""
        if self.events:
            fields = ("id, workspaceID AS w, universeID AS u, type, subject AS s, time AS tt, "
                      + ("properties AS pm" if "properties" in columns
                         else "NULL::MAP(VARCHAR, VARCHAR) AS pm"))
            shown = EVENT_COLUMNS
            alias = {"workspaceID": "w", "universeID": "u", "subject": "s", "time": "tt",
                     "properties": "pm"}
        else:
            fields = ("id, workspaceID AS w, universeID AS u, subject AS s, recordedAt AS tt, "
                      "measurement AS msr, measurement.quantity AS q, measurement.unit AS "
                      "unit, dimensions AS pm, sourceEventID AS sev, "
                      + ("meteredAt AS ma" if "meteredAt" in columns else "NULL AS ma"))
            shown = RECORD_COLUMNS
            alias = {"workspaceID": "w", "universeID": "u", "subject": "s",
                     "recordedAt": "tt", "measurement": "msr", "dimensions": "pm",
                     "sourceEventID": "sev", "meteredAt": "ma"}
        document = "chr(0) || to_json(struct_pack(" + ", ".join(
            f'"{name}" := {alias.get(name, name)}' for name in shown if name in columns) + "))"
        p = "to_json(pm)::VARCHAR" if self.keep_object and not self.defer_object else "NULL"
        source = f"SELECT {number} AS n, {fields}, {p} AS p FROM {relation}"
        values = [f"pm[{literal(name)}]" for name in self.needed]
        shape = "pm IS NULL OR list_count(map_values(pm)) = cardinality(pm)"
        if not self.events:
            shape = f"msr IS NOT NULL AND pm IS NOT NULL AND ({shape})"
        return self._insert(source, values, shape, document)

    # -------------------------------------------------------------- shared

    def _rebuilt(self) -> str:
        """The compact text of the values read, in schema order (shapes.py)."""
        if self.events:
            return ("'{\"id\":\"' || id || '\",\"workspaceID\":\"' || w || '\",\"universeID\":"
                    "\"' || u || '\",\"type\":\"' || type || '\",\"subject\":\"' || s || "
                    "'\",\"time\":\"' || tt || '\"' || CASE WHEN p IS NULL THEN '' ELSE "
                    "',\"properties\":' || p END || '}'")
        return ("'{\"id\":\"' || id || '\",\"workspaceID\":\"' || w || '\",\"universeID\":\"'"
                " || u || '\",\"subject\":\"' || s || '\",\"recordedAt\":\"' || tt || "
                "'\",\"measurement\":{\"quantity\":\"' || q || '\",\"unit\":\"' || unit || "
                "'\"},\"dimensions\":' || p || ',\"sourceEventID\":\"' || sev || '\"' || "
                "CASE WHEN ma IS NULL THEN '' ELSE ',\"meteredAt\":\"' || ma || '\"' END || '}'")

    def _insert(self, source: str, values: Sequence[str], shape: str, text: str) -> str:
        """INSERT INTO ev from `source` (columns n, the text, the fields, p), given the SQL
        of each needed value and of the shape check (each computed once, in layers)."""
        stamps = timestamp_columns("tt", "ts")
        checks = ["shape_ok", "ts_ok"]
        if self.events:
            checks += [f"coalesce({name} <> '', false)" for name in ("id", "w", "u", "type", "s")]
            checks += self._metering_checks()
        else:
            stamps = [a + b for a, b in zip(stamps, timestamp_columns("ma", "ma"), strict=True)]
            checks += [f"coalesce({name} <> '', false)"
                       for name in ("id", "w", "u", "s", "sev", "unit")]
            checks += ["(ma IS NULL OR ma_ok)", quantity_ok("q")]
        first = [f"{value} AS v_{i}" for i, value in enumerate(values)]
        first.append(f"coalesce({shape}, false) AS shape_ok")
        layers = [first + stamps[0], *stamps[1:], [f"{' AND '.join(checks)} AS ok"]]
        fields = (["id", "w", "u", "type", "s", "ts_t"] if self.events
                  else ["id", "w", "u", "s", "ts_t", "q", "unit", "sev"])
        kept = ", ".join([*fields, *(f"v_{i}" for i in range(len(values))),
                          "p" if self.keep_object else "NULL"])
        return (f"INSERT INTO ev SELECT n, ok, CASE WHEN NOT ok THEN {text} END, {kept} "
                f"FROM ({layered(source, layers)})")

    def _metering_checks(self) -> list[str]:
        """An event whose matching measurement has no valid fast quantity is flagged
        (MS-MET-008: the reference then rejects it, or reads an exponent form)."""
        assert self.plan.metering is not None
        checks = []
        for rule in self.plan.metering.rules:
            if rule.source_property is None:
                continue
            value = f"v_{self.needed.index(rule.source_property)}"
            checks.append(f"(NOT {self.matches(rule.index)} OR {quantity_ok(value)})")
        return checks

    def matches(self, index: int) -> str:
        """Whether an event row of `ev` matches rule `index` (MS-MET-003/005)."""
        assert self.plan.metering is not None
        rule = self.plan.metering.rules[index]
        parts = []
        if rule.event_types is not None:
            parts.append(f"type IN ({', '.join(literal(t) for t in rule.event_types)})")
        if rule.condition is not None:
            value = {name: f"v_{i}" for i, name in enumerate(self.needed)}
            parts.append(condition(rule.condition, value))
        return "(" + " AND ".join(parts) + ")" if parts else "true"
