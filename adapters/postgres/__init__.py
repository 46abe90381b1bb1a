"""PostgreSQL: logical-decoding capture and apply, one module per concern.

Capture (``PostgresSource``, source.py), read from a replication slot:

* ``source.py``: the source itself, orchestrating the collaborators below;
* ``prepare.py``: checks, bookkeeping schema, publication and slot;
* ``stream.py``: the slot's transactions; ``pgoutput.py``: its messages;
* ``transactions.py``: a transaction's changes and positions;
* ``snapshot.py``: snapshot sessions, passes and chunks;
* ``resnapshot.py``: re-snapshot requests, lost-slot recovery, pass progress;
* ``schema_history.py``: the schemas emitted;
* ``keyless.py``: copy counts of tables without a key;
* ``position.py``: the LSN position scheme;
* ``types.py``: text values <-> Python values;
* ``catalog.py``: tables as the catalog describes them (capture and apply).

Apply: ``target.py`` (``PostgresTarget``, replay and consumer replicas),
``reader.py`` (``PostgresReader``, verify), ``dialect.py`` (connections,
names, DDL).
"""
