"""Builders the tests and the benchmarks share: report bodies (``reports``), store records and events
(``records``), and moto's SimpleDB made to answer as SimpleDB does (``simpledb``). Not shipped."""
