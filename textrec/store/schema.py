"""Print the SQL schema of the store for a dialect: ``python -m textrec.store.schema sqlite``.

The files ``sql/schema.sql`` (PostgreSQL) and ``sql/schema.sqlite.sql`` are this command's
output; the tests check that they still match the models.
"""

import sys

from textrec.store.sql import schema_ddl

if __name__ == "__main__":
    sys.stdout.write(schema_ddl(sys.argv[1] if len(sys.argv) > 1 else "postgresql"))
