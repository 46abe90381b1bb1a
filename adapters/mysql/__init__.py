"""MariaDB and MySQL: row-binlog capture and apply, one module per concern.

Capture (``MySQLSource``, source.py) reads the row binlog with
mysql-replication.  Apply: ``target.py`` (``MySQLTarget``, replay and
consumer replicas; runs of updates and deletes in ``joined.py``),
``reader.py`` (``MySQLReader``, verify); ``dialect.py`` (names, DDL),
``target_types.py`` (declared types -> MariaDB types), ``row_values.py``
(values written and read), ``tables.py`` (information_schema).
``connection.py`` turns a ``mysql://`` URL into connections.
"""
