"""SQL engine and models, migrations, the keyspace map, the embedded Redis,
files at rest, redaction and error translation."""
