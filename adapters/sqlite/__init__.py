"""SQLite: trigger-based capture (``source``) and apply (``target``, ``reader``).

* ``source.py``: SQLiteSource, capture through triggers into a change log.
* ``images.py``: the JSON row images the triggers write, and their decoding.
* ``target.py``: SQLiteTarget, the apply target replay and consumers write to.
* ``reader.py``: SQLiteReader, the tables as ``exchange verify`` reads them.
* ``dialect.py``: connections, transactions, quoting, schemas, DDL.
"""
