"""DDL statements from the binlog (QueryEvents) as what they do to tables, parsed with sqlglot.

``interpret`` says, for a statement run with default database ``schema``,
which tables of ``database`` it touches and how:

==========================================  ===================================
``ALTER TABLE t ...``                       ``Ddl("alter", t, renames=...)``: columns
                                            renamed (``RENAME COLUMN a TO b``,
                                            ``CHANGE a b type``) old -> new
``ALTER TABLE t RENAME [TO] u``,            ``Ddl("rename", t, new=u)``
``RENAME TABLE t TO u, ...``
``CREATE TABLE t ...``                      ``Ddl("create", t)``
``DROP TABLE t, ...``                       ``Ddl("drop", t)`` per table
``TRUNCATE [TABLE] t``                      ``Ddl("truncate", t)``
==========================================  ===================================

Other statements (indexes, users, grants, views, ...) touch no table's
rows or columns and give nothing.  A statement that names a table but
cannot be parsed gives ``Ddl("unknown", t)`` for every word of it that
could be a table name, so the caller can refuse to go on for the tables it
captures (never silently).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

_DDL = re.compile(r"^\s*(?:/\*.*?\*/\s*)*(?:(?:ALTER|CREATE|DROP)\s+(?:OR\s+REPLACE\s+|IF\s+EXISTS\s+|ONLINE\s+|"
                  r"IGNORE\s+|TEMPORARY\s+)*TABLE|TRUNCATE|RENAME)\b", re.IGNORECASE | re.DOTALL)
_NAME = re.compile(r"`((?:[^`]|``)+)`|([\w$\u0080-\uffff]+)")


@dataclass(frozen=True)
class Ddl:
    kind: str  # alter, rename, create, drop, truncate, unknown
    table: str
    renames: dict[str, str] = field(default_factory=dict)
    new: str = ""  # a renamed table's new name
    steps: tuple[tuple, ...] = ()  # ALTER TABLE column steps: (rename, old, new), (add, name, type, where),
    #                                (drop, name), (modify, name, type); where: "", "FIRST" or a column name
    complete: bool = True  # the steps say every change to the columns' names

    def columns(self, names: list[str]) -> list[str] | None:
        """The column names after the statement, from ``names`` before it (None when it cannot tell)."""
        if not self.complete:
            return None
        result = list(names)
        for step in self.steps:
            if step[0] in ("rename", "modify") and step[1] in result:
                result[result.index(step[1])] = step[2] if step[0] == "rename" else step[1]
            elif step[0] == "drop" and step[1] in result:
                result.remove(step[1])
            elif step[0] == "add" and step[1] not in result:
                where = step[3]
                at = 0 if where == "FIRST" else result.index(where) + 1 if where in result else len(result)
                result.insert(at, step[1])
            elif step[0] in ("rename", "modify", "drop"):
                return None
        return result

    def added_type(self, name: str) -> str | None:
        """The declared type of column ``name`` the statement added or changed."""
        found = [step[2] for step in self.steps if step[0] in ("add", "modify") and step[1] == name]
        return found[-1] if found else None


def interpret(query: str, schema: str, database: str) -> list[Ddl]:
    """What ``query`` (run with default database ``schema``) does to tables of ``database``."""
    if not _DDL.match(query):
        return []
    try:
        tree = sqlglot.parse_one(query, read="mysql")
    except SqlglotError:
        return _unknown(query)
    found: list[tuple[str | None, Ddl]] = []
    if isinstance(tree, exp.Alter) and (tree.args.get("kind") or "").upper() == "TABLE":
        found += _alter(tree)
    elif isinstance(tree, exp.Create) and (tree.args.get("kind") or "").upper() == "TABLE":
        table = tree.find(exp.Table)
        found.append((table.db or None, Ddl("create", table.name)))
    elif isinstance(tree, exp.Drop) and (tree.args.get("kind") or "").upper() == "TABLE":
        found += [(t.db or None, Ddl("drop", t.name)) for t in tree.args.get("tables") or tree.expressions]
    elif isinstance(tree, exp.TruncateTable):
        found += [(t.db or None, Ddl("truncate", t.name)) for t in tree.expressions]
    elif isinstance(tree, exp.Command) and str(tree.this).upper() == "RENAME":
        return _rename_tables(str(tree.expression.this), schema, database, query)
    elif isinstance(tree, exp.Command) and str(tree.this).upper() in ("ALTER", "CREATE", "DROP", "TRUNCATE"):
        return _unknown(query)
    return [ddl for db, ddl in found if (db or schema) == database]


def _alter(tree: exp.Alter) -> list[tuple[str | None, Ddl]]:
    table = tree.this
    renames: dict[str, str] = {}
    steps: list[tuple] = []
    complete = True
    new = None
    for action in tree.args.get("actions") or []:
        if isinstance(action, exp.RenameColumn):
            old, now = action.this.name, action.args["to"].name
            renames[old] = now
            steps.append(("rename", old, now))
        elif isinstance(action, exp.ColumnDef):
            steps.append(("add", action.name, _type(action), _where(action)))
        elif type(action).__name__ == "ModifyColumn":
            definition = action.this
            old = action.args["rename_from"].name if action.args.get("rename_from") is not None else definition.name
            if old != definition.name:
                renames[old] = definition.name
                steps.append(("rename", old, definition.name))
            steps.append(("modify", definition.name, _type(definition)))
        elif isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "COLUMN":
            steps += [("drop", column.name) for column in action.args.get("tables") or action.expressions]
        elif isinstance(action, exp.AlterRename):
            new = action.this
        elif isinstance(action, exp.AlterColumn) or type(action).__name__ in ("AddConstraint", "DropPrimaryKey"):
            continue
        else:
            complete = complete and not isinstance(action, (exp.Drop, exp.Command))
    found: list[tuple[str | None, Ddl]] = [(table.db or None, Ddl("alter", table.name, renames, steps=tuple(steps),
                                                                  complete=complete))]
    if new is not None:
        found.append((table.db or None, Ddl("rename", table.name, new=new.name)))
    return found


def _type(definition: exp.ColumnDef) -> str:
    kind = definition.args.get("kind")
    return kind.sql(dialect="mysql").lower() if kind is not None else ""


def _where(definition: exp.ColumnDef) -> str:
    position = definition.args.get("position")
    if position is None:
        return ""
    if (position.args.get("position") or "").upper() == "FIRST":
        return "FIRST"
    return position.this.name if position.this is not None else ""


def _rename_tables(body: str, schema: str, database: str, query: str) -> list[Ddl]:
    """``RENAME TABLE a TO b, c TO d`` (sqlglot leaves it unparsed)."""
    found = []
    for pair in _split_commas(re.sub(r"^\s*TABLES?\s+", "", body, flags=re.IGNORECASE)):
        parts = re.split(r"\s+TO\s+", pair.strip(), flags=re.IGNORECASE)
        if len(parts) != 2:
            return _unknown(query)
        (old_db, old), (new_db, new) = (_qualified(p, schema) for p in parts)
        if old_db == database and new_db == database:
            found.append(Ddl("rename", old, new=new))
        elif old_db == database:
            found.append(Ddl("drop", old))
        elif new_db == database:
            found.append(Ddl("create", new))
    return found


def _split_commas(text: str) -> list[str]:
    parts, current, quoted = [], [], False
    for char in text:
        if char == "`":
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _qualified(text: str, schema: str) -> tuple[str, str]:
    names = [quoted.replace("``", "`") if quoted else plain for quoted, plain in _NAME.findall(text)]
    return (names[0], names[1]) if len(names) >= 2 else (schema, names[0])


def _unknown(query: str) -> list[Ddl]:
    """Every name-like word of a statement that could not be parsed."""
    words = {quoted.replace("``", "`") if quoted else plain for quoted, plain in _NAME.findall(query)}
    return [Ddl("unknown", word) for word in sorted(words)]
