"""MariaDB and MySQL: row-binlog capture and apply, one module per concern.

Capture (``MySQLSource``, source.py) reads the row binlog with
mysql-replication.  Apply: ``target.py`` (``MySQLTarget``, replay and
consumer replicas), ``reader.py`` (``MySQLReader``, verify).
``connection.py`` turns a ``mysql://`` URL into connections.
"""
