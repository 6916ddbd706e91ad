//! Many rows in one statement whose text never changes: the rows travel as a
//! single JSON array of arrays, bound as one parameter and unpacked by the
//! database (`jsonb_each` on SQLite, `jsonb_array_elements` on PostgreSQL).
//! Both unpack into the binary JSON form, parsed once per batch; PostgreSQL's
//! `json` type would parse each row's text again for every field read from it.
//!
//! This is how the delivery path writes. A multi-row `VALUES` list differs
//! with every row count, so each batch was parsed and planned anew, and
//! building its per-row value list cost more than the insert itself. A fixed
//! statement is prepared once per connection and stays in its cache.

use sea_orm::{DatabaseConnection, DbBackend, DbErr, QueryResult, Statement};
use serde::Serialize;

use super::statement;

/// How a JSON field becomes a column value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Text,
    Integer,
}

/// The SQL expression for field `index` of the current row (`r.value`).
pub(super) fn field(index: usize, kind: Field) -> String {
    match kind {
        Field::Text => format!("(r.value ->> {index})"),
        Field::Integer => format!("CAST(r.value ->> {index} AS BIGINT)"),
    }
}

/// The table of rows, named `r` with one JSON column `value`, that a
/// statement reads from; its one `?` takes [`encode`]'s text.
pub(super) fn source(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "jsonb_array_elements(CAST(? AS jsonb)) AS r(value)",
        _ => "jsonb_each(?) AS r",
    }
}

/// The rows as one JSON array; each row is a tuple, written as an array in
/// the order of its columns.
pub(super) fn encode<R: Serialize>(rows: &[R]) -> String {
    serde_json::to_string(rows).expect("tuples of strings and integers always serialize")
}

/// `INSERT INTO table (columns…) SELECT … FROM rows`, the fields of each row
/// going to `columns` in order.
pub(super) fn insert<R: Serialize>(
    backend: DbBackend,
    table: &str,
    columns: &[(&str, Field)],
    rows: &[R],
) -> Statement {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let values: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| field(i, *kind))
        .collect();
    let sql = format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {}",
        names.join(", "),
        values.join(", "),
        source(backend),
    );
    statement(backend, &sql, vec![encode(rows).into()])
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

/// Runs `statements` as one SQLite transaction in a single round trip to a
/// connection's worker thread: `BEGIN IMMEDIATE`, the statements and
/// `COMMIT` go as one text (SeaORM's transactions take three, BEGIN and
/// COMMIT each its own, and on a loaded machine every trip is a thread
/// wake-up or two on the publish's path). Returns the rows the statements
/// return. The caller holds the write lock.
///
/// On any error the transaction is rolled back and the connection closed
/// rather than put back in the pool, where it might still be inside the
/// transaction; the same if this future is dropped before the text has run.
/// Errors here are rare, and a new connection is cheap.
pub(super) async fn transact_sqlite(
    db: &DatabaseConnection,
    statements: Vec<Statement>,
) -> Result<Vec<QueryResult>, DbErr> {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx;
    let mut all = Vec::with_capacity(statements.len() + 2);
    all.push(Statement::from_string(DbBackend::Sqlite, "BEGIN IMMEDIATE"));
    all.extend(statements);
    all.push(Statement::from_string(DbBackend::Sqlite, "COMMIT"));
    let Some(text) = chain(DbBackend::Sqlite, all).pop() else {
        return Ok(Vec::new());
    };
    let values = text.values.unwrap_or(sea_orm::Values(Vec::new()));
    let mut guard = CloseUnlessDone(None);
    let conn = guard.0.insert(
        db.get_sqlite_connection_pool()
            .acquire()
            .await
            .map_err(|e| DbErr::Conn(RuntimeErr::SqlxError(e.into())))?,
    );
    let query = sqlx::query_with(
        sqlx::AssertSqlSafe(text.sql),
        sea_query_sqlx::SqlxValues(values),
    );
    match query.fetch_all(&mut **conn).await {
        Ok(rows) => {
            // Done: back to the pool.
            guard.0.take();
            Ok(rows.into_iter().map(QueryResult::from).collect())
        }
        Err(e) => {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe("ROLLBACK"))
                .execute(&mut **conn)
                .await;
            Err(DbErr::Query(RuntimeErr::SqlxError(e.into())))
        }
    }
}

/// A pooled connection that is closed when dropped, unless taken out first.
struct CloseUnlessDone(Option<sea_orm::sqlx::pool::PoolConnection<sea_orm::sqlx::Sqlite>>);

impl Drop for CloseUnlessDone {
    fn drop(&mut self) {
        if let Some(conn) = &mut self.0 {
            conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_text_is_the_same_for_any_row_count() {
        let columns = [("id", Field::Text), ("n", Field::Integer)];
        let one = insert(DbBackend::Sqlite, "t", &columns, &[("a", 1)]);
        let many = insert(DbBackend::Sqlite, "t", &columns, &[("a", 1), ("b", 2)]);
        assert_eq!(one.sql, many.sql);
        assert_eq!(
            one.sql,
            "INSERT INTO t (id, n) SELECT (r.value ->> 0), CAST(r.value ->> 1 AS BIGINT) \
             FROM jsonb_each(?) AS r"
        );
        let pg = insert(DbBackend::Postgres, "t", &columns, &[("a", 1)]);
        assert!(
            pg.sql
                .ends_with("FROM jsonb_array_elements(CAST($1 AS jsonb)) AS r(value)")
        );
    }

    #[test]
    fn chains_into_one_statement_on_sqlite_only() {
        let columns = [("id", Field::Text)];
        let statements = |backend| {
            vec![
                insert(backend, "a", &columns, &[("x",)]),
                insert(backend, "b", &columns, &[("y",)]),
            ]
        };
        let sqlite = chain(DbBackend::Sqlite, statements(DbBackend::Sqlite));
        assert_eq!(sqlite.len(), 1);
        assert!(
            sqlite[0]
                .sql
                .contains("FROM jsonb_each(?) AS r; INSERT INTO b")
        );
        let bound: Vec<sea_orm::Value> = sqlite[0].values.clone().unwrap().0;
        assert_eq!(bound, vec![r#"[["x"]]"#.into(), r#"[["y"]]"#.into()]);
        assert_eq!(
            chain(DbBackend::Postgres, statements(DbBackend::Postgres)).len(),
            2
        );
    }

    #[test]
    fn rows_are_arrays_in_column_order_with_null_for_none() {
        let rows = [("a\"b", Some(1_i64), None::<&str>)];
        assert_eq!(encode(&rows), r#"[["a\"b",1,null]]"#);
    }
}
