/**
 * DuckDB as a user would run it, in a fresh process (start-up and module load included):
 *   node dist/bench/duckdb.js <stats|wordcount|groupby> <file> <threads>
 * Prints one JSON line with the answer in cloudmill's result shape (stats: count, sum, min, max,
 * mean, variance; wordcount: total, distinct, top 10 by count then word; groupby, over a `k,x`
 * CSV: [key, { count, sum, min, max }] per key, count the numbers of the key).
 */
import { DuckDBInstance } from "@duckdb/node-api";

const [what, file, threads] = process.argv.slice(2) as [string, string, string];
const quoted = `'${file.replaceAll("'", "''")}'`;
/** Whole lines as one VARCHAR column: no separator, quote or escape can split or join them. */
const lines = `read_csv(${quoted}, columns={'l': 'VARCHAR'}, header=false, auto_detect=false, delim='\\0', quote='', escape='')`;

const sql: Record<string, string> = {
  stats: `select count(x) as count, sum(x) as sum, min(x) as min, max(x) as max, avg(x) as mean, var_pop(x) as variance
    from read_csv(${quoted}, columns={'x': 'DOUBLE'}, header=false, auto_detect=false)`,
  wordcount: `with words as (select unnest(string_split_regex(l, '[ \\t\\n\\v\\f\\r]+')) as w from ${lines}),
    counts as (select w, count(*) as c from words where w <> '' group by w)
    select (select sum(c) from counts) as total, (select count(*) from counts) as distinct,
      (select list([w, c::varchar] order by c desc, w) from (select w, c from counts order by c desc, w limit 10)) as top`,
  groupby: `select k, count(x) as count, sum(x) as sum, min(x) as min, max(x) as max
    from read_csv(${quoted}, columns={'k': 'VARCHAR', 'x': 'DOUBLE'}, header=true, auto_detect=false) group by k order by k`,
};
const query = sql[what];
if (query === undefined) throw new Error(`duckdb.js: unknown query ${what} (stats, wordcount or groupby)`);

const instance = await DuckDBInstance.create(":memory:", { threads });
const connection = await instance.connect();
const reader = await connection.runAndReadAll(query);
const rows = reader.getRowObjectsJson() as Record<string, unknown>[];
const [row] = rows;
if (row === undefined) throw new Error("duckdb.js: no row");
const orNull = (v: unknown): number | null => (v === null ? null : Number(v));
const answer =
  what === "stats"
    ? Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Number(v)]))
    : what === "groupby"
      ? rows.map((r) => [r.k, { count: Number(r.count), sum: Number(r.sum ?? 0), min: orNull(r.min), max: orNull(r.max) }])
      : {
          total: Number(row.total),
          distinct: Number(row.distinct),
          top: (row.top as [string, string][]).map(([w, c]) => [w, Number(c)]),
        };
process.stdout.write(`${JSON.stringify(answer)}\n`);
