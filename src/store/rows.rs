//! Many rows in one statement whose text does not depend on their number,
//! so that it is prepared once per connection and stays in its cache. This
//! is how the delivery path writes.
//!
//! - SQLite: the rows are bound parameters, `(VALUES (?, …), …)`, in a few
//!   fixed sizes (1, 4, 16, 64 and 256 rows); a batch is cut into the
//!   largest size and ends in the smallest size that holds the rest, with
//!   rows of NULLs that no statement takes. Binding costs little; the JSON
//!   array of rows that this replaced was parsed, searched field by field
//!   and unescaped again inside SQLite, about a third of the write path's
//!   instructions (callgrind, `hookd bench --only store`).
//! - PostgreSQL: the rows travel as one JSON array in one parameter,
//!   unpacked by `jsonb_array_elements` into the binary form, parsed once
//!   per batch (`json` would parse each row's text again for every field).
//!
//! A multi-row `VALUES` list that grows with every row count would be parsed
//! and planned anew for each batch; building sea-query's per-row value
//! lists cost more than the insert itself.

use sea_orm::{DatabaseConnection, DbBackend, DbErr, QueryResult, Statement, Value};
use serde::Serialize;

use super::statement;

/// How a field becomes a column value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Text,
    Integer,
}

/// A row: a tuple whose fields serialize (for PostgreSQL's JSON) and bind
/// (for SQLite's parameters), in column order.
pub(super) trait Row: Serialize {
    fn bind(self, values: &mut Vec<Value>);
}

macro_rules! tuple_row {
    ($($field:ident $index:tt),+) => {
        impl<$($field: Serialize + Into<Value>),+> Row for ($($field,)+) {
            fn bind(self, values: &mut Vec<Value>) {
                $(values.push(self.$index.into());)+
            }
        }
    };
}

tuple_row!(A 0, B 1);
tuple_row!(A 0, B 1, C 2, D 3);
tuple_row!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13);

/// Rows per SQLite statement: a batch is cut into these sizes.
const SIZES: [usize; 5] = [1, 4, 16, 64, 256];

/// Rows per PostgreSQL statement.
const POSTGRES_CHUNK: usize = 1000;

/// Where a statement's rows come from, as `r`, and how it names their
/// fields.
pub(super) struct Source<'a> {
    backend: DbBackend,
    kinds: &'a [Field],
    /// Rows in the statement's VALUES list (SQLite).
    rows: usize,
}

impl Source<'_> {
    /// The SQL expression for field `index` of the current row.
    pub(super) fn field(&self, index: usize) -> String {
        match (self.backend, self.kinds[index]) {
            (DbBackend::Postgres, Field::Text) => format!("(r.value ->> {index})"),
            (DbBackend::Postgres, Field::Integer) => {
                format!("CAST(r.value ->> {index} AS BIGINT)")
            }
            _ => format!("r.column{}", index + 1),
        }
    }

    /// The table of rows, named `r`, for a FROM clause.
    pub(super) fn table(&self) -> String {
        match self.backend {
            DbBackend::Postgres => "jsonb_array_elements(CAST(? AS jsonb)) AS r(value)".to_owned(),
            _ => {
                let row = format!("({})", vec!["?"; self.kinds.len()].join(", "));
                format!(
                    "(SELECT * FROM (VALUES {}) WHERE column1 IS NOT NULL) AS r",
                    vec![row; self.rows].join(", ")
                )
            }
        }
    }
}

/// The statements that write `rows`, whose fields are of `kinds`: each
/// `sql(source)`, with `before` bound ahead of the rows and `after` behind
/// them. The SQL must take the rows' parameters once, through
/// `source.table()`; the first field must never be NULL.
pub(super) fn batched<R: Row>(
    backend: DbBackend,
    kinds: &[Field],
    rows: Vec<R>,
    before: &[Value],
    after: &[Value],
    sql: impl Fn(&Source<'_>) -> String,
) -> Vec<Statement> {
    let mut statements = Vec::new();
    if backend == DbBackend::Postgres {
        let source = Source {
            backend,
            kinds,
            rows: 0,
        };
        let text = sql(&source);
        for chunk in rows.chunks(POSTGRES_CHUNK) {
            let mut values = before.to_vec();
            values.push(encode(chunk).into());
            values.extend_from_slice(after);
            statements.push(statement(backend, &text, values));
        }
        return statements;
    }
    let mut rows = rows.into_iter();
    let mut left = rows.len();
    // The text of the last size used: a large batch repeats the largest.
    let mut cached: Option<(usize, String)> = None;
    while left > 0 {
        let size = size_for(left);
        let taken = size.min(left);
        let mut values = Vec::with_capacity(before.len() + size * kinds.len() + after.len());
        values.extend_from_slice(before);
        for row in rows.by_ref().take(taken) {
            row.bind(&mut values);
        }
        // Rows of NULLs fill the statement; its first column keeps them out.
        values.resize(
            values.len() + (size - taken) * kinds.len(),
            Value::String(None),
        );
        values.extend_from_slice(after);
        let text = match cached.take() {
            Some((built, text)) if built == size => text,
            _ => sql(&Source {
                backend,
                kinds,
                rows: size,
            }),
        };
        statements.push(statement(backend, &text, values));
        cached = Some((size, text));
        left -= taken;
    }
    statements
}

/// The statement size for a batch with `left` rows still to write: the
/// largest, or the smallest that holds them all.
fn size_for(left: usize) -> usize {
    SIZES
        .iter()
        .copied()
        .find(|&size| size >= left)
        .unwrap_or(SIZES[SIZES.len() - 1])
}

/// The rows as one JSON array; each row is a tuple, written as an array in
/// the order of its columns.
pub(super) fn encode<R: Serialize>(rows: &[R]) -> String {
    serde_json::to_string(rows).expect("tuples of strings and integers always serialize")
}

/// `INSERT INTO table (columns…) SELECT … FROM rows`, the fields of each row
/// going to `columns` in order.
pub(super) fn insert<R: Row>(
    backend: DbBackend,
    table: &str,
    columns: &[(&str, Field)],
    rows: Vec<R>,
) -> Vec<Statement> {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let kinds: Vec<Field> = columns.iter().map(|(_, kind)| *kind).collect();
    batched(backend, &kinds, rows, &[], &[], |source| {
        let values: Vec<String> = (0..kinds.len()).map(|i| source.field(i)).collect();
        format!(
            "INSERT INTO {table} ({}) SELECT {} FROM {}",
            names.join(", "),
            values.join(", "),
            source.table(),
        )
    })
}

/// The statements as few round trips as the backend allows: on SQLite one
/// statement text holding them all, each `?` bound in order (every
/// statement is otherwise a round trip to the connection's worker thread);
/// on PostgreSQL, which takes one parameterized statement at a time, as
/// they are.
pub(super) fn chain(backend: DbBackend, statements: Vec<Statement>) -> Vec<Statement> {
    if backend == DbBackend::Postgres || statements.len() < 2 {
        return statements;
    }
    let mut sql = String::new();
    let mut values = Vec::new();
    for statement in statements {
        if !sql.is_empty() {
            sql.push_str("; ");
        }
        sql.push_str(&statement.sql);
        values.extend(statement.values.into_iter().flat_map(|v| v.0));
    }
    vec![Statement::from_sql_and_values(backend, sql, values)]
}

/// Values a transaction may bind and still go to SQLite in one text: small
/// transactions, where the round trips are the cost (a publish at a low
/// rate waits for each). Their texts are few (only the small statement
/// sizes combine), so they stay in the connection's statement cache.
const ONE_TRIP_VALUES: usize = 1024;

/// The connection the delivery path writes through on SQLite, kept between
/// transactions under the store's write lock; `None` until the first write,
/// and again after a write fails.
///
/// It is taken out of the pool for good. A pooled connection pays on every
/// release for a ping to its worker thread (sqlx checks each connection it
/// takes back), a round trip and two thread wake-ups per transaction; and
/// the pool hands its connections out in turn, so each found its page cache
/// out of date after the others' commits and read its pages again.
pub(super) type WriteConnection = Option<sea_orm::sqlx::SqliteConnection>;

/// Runs `statements` as one SQLite transaction on the write connection
/// `slot` and returns the rows they return. A small transaction goes to the
/// connection's worker thread in a single round trip: `BEGIN IMMEDIATE`,
/// the statements and `COMMIT` as one text (SeaORM's transactions take
/// three, BEGIN and COMMIT each its own, and on a loaded machine every trip
/// is a thread wake-up or two on the publish's path). A large one goes
/// statement by statement, so that each text is one of the few fixed ones
/// and is never prepared again. The caller holds the write lock.
///
/// On any error the transaction is rolled back and the connection closed
/// rather than kept, as it might still be inside the transaction; the same
/// if this future is dropped before the text has run. The next write opens
/// a new one. Errors here are rare, and a new connection is cheap.
pub(super) async fn transact_sqlite(
    db: &DatabaseConnection,
    slot: &mut WriteConnection,
    statements: Vec<Statement>,
) -> Result<Vec<QueryResult>, DbErr> {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx;
    let values: usize = statements
        .iter()
        .map(|s| s.values.as_ref().map_or(0, |v| v.0.len()))
        .sum();
    let begin = Statement::from_string(DbBackend::Sqlite, "BEGIN IMMEDIATE");
    let commit = Statement::from_string(DbBackend::Sqlite, "COMMIT");
    let mut all = Vec::with_capacity(statements.len() + 2);
    all.push(begin);
    all.extend(statements);
    all.push(commit);
    let trips = if values <= ONE_TRIP_VALUES {
        chain(DbBackend::Sqlite, all)
    } else {
        all
    };
    // Out of the slot while in use: dropped (and so closed) unless put back.
    let mut conn = match slot.take() {
        Some(conn) => conn,
        None => db
            .get_sqlite_connection_pool()
            .acquire()
            .await
            .map_err(|e| DbErr::Conn(RuntimeErr::SqlxError(e.into())))?
            .detach(),
    };
    let mut returned = Vec::new();
    for trip in trips {
        match run(&mut conn, trip).await {
            Ok(rows) => returned.extend(rows),
            Err(e) => {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe("ROLLBACK"))
                    .execute(&mut conn)
                    .await;
                return Err(DbErr::Query(RuntimeErr::SqlxError(e.into())));
            }
        }
    }
    *slot = Some(conn);
    Ok(returned)
}

/// Closes the write connection `slot` holds, if any.
pub(super) async fn close_sqlite(slot: &mut WriteConnection) -> Result<(), DbErr> {
    use sea_orm::sqlx::Connection;
    match slot.take() {
        Some(conn) => conn
            .close()
            .await
            .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into()))),
        None => Ok(()),
    }
}

/// One text on `conn`, its values bound in order.
async fn run(
    conn: &mut sea_orm::sqlx::SqliteConnection,
    statement: Statement,
) -> Result<Vec<QueryResult>, sea_orm::sqlx::Error> {
    use sea_orm::sqlx;
    let values = statement.values.unwrap_or(sea_orm::Values(Vec::new()));
    let query = sqlx::query_with(
        sqlx::AssertSqlSafe(statement.sql),
        sea_query_sqlx::SqlxValues(values),
    );
    let rows = query.fetch_all(conn).await?;
    Ok(rows.into_iter().map(QueryResult::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [(&str, Field); 4] = [
        ("id", Field::Text),
        ("n", Field::Integer),
        ("note", Field::Text),
        ("m", Field::Integer),
    ];

    fn rows(count: usize) -> Vec<(String, i64, Option<&'static str>, i64)> {
        (0..count)
            .map(|n| (format!("r{n}"), n as i64, None, 7))
            .collect()
    }

    /// Rows per statement: the number of `(?, ?, ?, ?)` groups.
    fn sizes(statements: &[Statement]) -> Vec<usize> {
        statements
            .iter()
            .map(|s| s.sql.matches("(?, ?, ?, ?)").count())
            .collect()
    }

    #[test]
    fn sqlite_statements_come_in_a_few_fixed_sizes() {
        let insert = |count| insert(DbBackend::Sqlite, "t", &COLUMNS, rows(count));
        assert_eq!(sizes(&insert(1)), [1]);
        assert_eq!(sizes(&insert(3)), [4]);
        assert_eq!(sizes(&insert(17)), [64]);
        assert_eq!(sizes(&insert(600)), [256, 256, 256]);
        // The same size, the same text, whatever the rows.
        assert_eq!(insert(2)[0].sql, insert(3)[0].sql);
        assert_eq!(
            insert(1)[0].sql,
            "INSERT INTO t (id, n, note, m) SELECT r.column1, r.column2, r.column3, r.column4 \
             FROM (SELECT * FROM (VALUES (?, ?, ?, ?)) WHERE column1 IS NOT NULL) AS r"
        );
    }

    #[test]
    fn rows_bind_in_column_order_and_the_rest_is_null() {
        let statements = insert(DbBackend::Sqlite, "t", &COLUMNS, rows(3));
        let bound = statements[0].values.clone().unwrap().0;
        assert_eq!(bound.len(), 4 * 4);
        assert_eq!(
            bound[4..8],
            [
                Value::from("r1".to_owned()),
                Value::from(1_i64),
                Value::String(None),
                Value::from(7_i64)
            ]
        );
        assert!(bound[12..].iter().all(|v| *v == Value::String(None)));
    }

    #[test]
    fn postgres_takes_the_rows_as_one_json_array() {
        let statements = insert(DbBackend::Postgres, "t", &COLUMNS, rows(3));
        assert_eq!(statements.len(), 1);
        assert!(
            statements[0]
                .sql
                .ends_with("FROM jsonb_array_elements(CAST($1 AS jsonb)) AS r(value)"),
            "{}",
            statements[0].sql
        );
        assert_eq!(
            statements[0].values.clone().unwrap().0,
            [Value::from(
                r#"[["r0",0,null,7],["r1",1,null,7],["r2",2,null,7]]"#
            )]
        );
    }

    #[test]
    fn parameters_around_the_rows_keep_their_places() {
        let statements = batched(
            DbBackend::Sqlite,
            &[Field::Text, Field::Integer, Field::Text, Field::Integer],
            rows(1),
            &[Value::from(1_i64)],
            &[Value::from("after")],
            |r| {
                format!(
                    "UPDATE t SET n = ? FROM {} WHERE t.id = {} AND ?",
                    r.table(),
                    r.field(0)
                )
            },
        );
        let bound = statements[0].values.clone().unwrap().0;
        assert_eq!(bound.first(), Some(&Value::from(1_i64)));
        assert_eq!(bound.last(), Some(&Value::from("after")));
        assert_eq!(bound.len(), 1 + 4 + 1);
    }

    #[test]
    fn chains_into_one_statement_on_sqlite_only() {
        let statements = |backend| {
            let mut all = insert(backend, "a", &COLUMNS, rows(1));
            all.extend(insert(backend, "b", &COLUMNS, rows(1)));
            all
        };
        let sqlite = chain(DbBackend::Sqlite, statements(DbBackend::Sqlite));
        assert_eq!(sqlite.len(), 1);
        assert!(
            sqlite[0]
                .sql
                .contains("WHERE column1 IS NOT NULL) AS r; INSERT INTO b")
        );
        assert_eq!(sqlite[0].values.clone().unwrap().0.len(), 8);
        assert_eq!(
            chain(DbBackend::Postgres, statements(DbBackend::Postgres)).len(),
            2
        );
    }

    #[test]
    fn json_rows_are_arrays_in_column_order_with_null_for_none() {
        let rows = [("a\"b", Some(1_i64), None::<&str>)];
        assert_eq!(encode(&rows), r#"[["a\"b",1,null]]"#);
    }
}
