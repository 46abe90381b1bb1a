"""MariaDB and MySQL: row-binlog capture and apply, one module per concern.

Capture (``MySQLSource``, source.py) reads the row binlog with
mysql-replication:

* ``source.py``: the source itself, orchestrating the modules below;
* ``prerequisites.py``: what the server and the user must offer;
* ``bookkeeping.py``: capture's tables on the server (``exchange_capture``);
* ``stream.py``: the binlog's whole transactions; ``position.py``: positions;
* ``transactions.py``: a transaction's changes; ``ddl.py``: DDL statements;
* ``snapshot.py``: consistent snapshot sessions, passes and regions;
* ``resnapshot.py``: re-snapshot requests, lost positions, pass progress;
* ``history.py``: the schemas emitted; ``keyless.py``: copy counts;
* ``catalog.py``: tables as ``information_schema`` has them; ``types.py``: values.

Apply: ``target.py`` (``MySQLTarget``, replay and consumer replicas; runs of
updates and deletes in ``joined.py``), ``reader.py`` (``MySQLReader``,
verify); ``dialect.py`` (names, DDL), ``target_types.py`` (declared types ->
MariaDB types), ``row_values.py`` (values written and read), ``tables.py``
(information_schema).
``connection.py`` turns a ``mysql://`` URL into connections.
"""
