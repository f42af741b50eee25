// Runs one SQL query with DuckDB (an independent Parquet reader: its own C++
// implementation) and prints the rows as JSON, for firstboot's export tests:
//   node scripts/parquet-reader/query.mjs "SELECT count(*) AS n FROM 'conns.parquet'"
import { DuckDBInstance } from '@duckdb/node-api';

const sql = process.argv[2];
if (!sql) {
  console.error('usage: node query.mjs SQL');
  process.exit(2);
}
const db = await DuckDBInstance.create(':memory:');
const conn = await db.connect();
const reader = await conn.runAndReadAll(sql);
// BigInt (DuckDB's BIGINT) and timestamps are not JSON: print them as strings.
const rows = reader.getRowObjectsJson();
process.stdout.write(JSON.stringify(rows) + '\n');
