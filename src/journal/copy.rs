//! `journal copy`: moves a SQLite journal into an empty PostgreSQL journal, every table and
//! column as stored (ids, positions, outbox states, attempt counts, places, replacements,
//! attempts, operator actions, replay jobs), so a gateway started on the copy continues where
//! the SQLite one stopped. The copy is one PostgreSQL transaction: it commits only after the
//! row counts of every table match the source's.

use std::fmt;

use futures_util::TryStreamExt;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};

use super::{parse_store_url, EventJournal, JournalError, JournalOptions, StoreLocation};

/// The journal's tables in an order that satisfies the foreign keys.
const TABLES: [&str; 10] = [
    "events",
    "emissions",
    "delivery_attempts",
    "tenant_deliveries",
    "operator_actions",
    "replay_jobs",
    "replay_job_events",
    "workflows",
    "workflow_waits",
    "notifications",
];

/// PostgreSQL's limit of bind parameters in one statement.
const MAX_PARAMETERS: usize = 65_535;

/// Why a copy did not happen (the target is left as it was: the copy is one transaction).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// `--from` must be a SQLite journal, `--to` a PostgreSQL one.
    #[error("{0}")]
    Urls(&'static str),
    /// Opening (and migrating) either journal failed.
    #[error("cannot open the {which} journal")]
    Open {
        /// `source` or `target`.
        which: &'static str,
        #[source]
        source: JournalError,
    },
    /// The target already holds rows: copying into it would mix two journals.
    #[error(
        "the target journal is not empty ({table} has {rows} rows); copy into an empty database"
    )]
    TargetNotEmpty {
        /// The first table found with rows.
        table: &'static str,
        /// How many.
        rows: i64,
    },
    /// A source column the target has no place for: copying would lose it.
    #[error("the target table {table} has no column {column}")]
    MissingColumn {
        /// The table.
        table: &'static str,
        /// The source column.
        column: String,
    },
    /// The target has a column type the copy does not know how to fill.
    #[error("the target column {table}.{column} has a type the copy does not handle: {data_type}")]
    UnsupportedType {
        /// The table.
        table: &'static str,
        /// The column.
        column: String,
        /// Its PostgreSQL `data_type`.
        data_type: String,
    },
    /// The counts after the copy differ from the source's; nothing was committed.
    #[error("verification failed: {table} has {source_rows} rows in the source, {target_rows} in the copy")]
    CountMismatch {
        /// The table.
        table: &'static str,
        /// Rows in the source.
        source_rows: i64,
        /// Rows in the target.
        target_rows: i64,
    },
    /// A database statement failed.
    #[error("{context}")]
    Database {
        /// What was being done.
        context: String,
        #[source]
        source: sqlx::Error,
    },
}

fn database(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> CopyError {
    let context = context.into();
    move |source| CopyError::Database { context, source }
}

/// The rows copied per table, verified equal in source and target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// (table, rows), in copy order; `tenant_sequences` last (derived from the events).
    pub tables: Vec<(&'static str, i64)>,
}

impl fmt::Display for CopyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (table, rows) in &self.tables {
            writeln!(f, "{table:<18} {rows:>10} rows copied, counts verified")?;
        }
        Ok(())
    }
}

/// One value read from SQLite, typed as its target column wants it.
enum Value {
    Text(Option<String>),
    BigInt(Option<i64>),
    Integer(Option<i32>),
    Double(Option<f64>),
    Boolean(Option<bool>),
}

/// The PostgreSQL types of the journal's columns.
#[derive(Clone, Copy)]
enum ColumnType {
    Text,
    BigInt,
    Integer,
    Double,
    Boolean,
}

/// Copies the SQLite journal at `from` into the empty PostgreSQL journal at `to` (its schema
/// created by the gateway's migrations first) and returns the verified counts.
pub async fn copy_journal(
    from: &str,
    to: &str,
    options: JournalOptions,
) -> Result<CopyReport, CopyError> {
    let Ok(StoreLocation::Sqlite(path)) = parse_store_url(from) else {
        return Err(CopyError::Urls("--from must be a sqlite:// journal URL"));
    };
    if !matches!(parse_store_url(to), Ok(StoreLocation::Postgres)) {
        return Err(CopyError::Urls("--to must be a postgres:// journal URL"));
    }
    if !path.exists() {
        return Err(CopyError::Urls("the --from journal file does not exist"));
    }
    // Opening runs each backend's migrations: the source is brought to the current schema, the
    // target gets its tables (and a missing target database is the usual clear error).
    for (which, url) in [("source", from), ("target", to)] {
        EventJournal::open(url, options.clone())
            .await
            .map_err(|source| CopyError::Open { which, source })?
            .close()
            .await;
    }
    let mut sqlite = SqliteConnectOptions::new()
        .filename(&path)
        .read_only(true)
        .connect()
        .await
        .map_err(database("open the source journal"))?;
    let mut postgres = PgConnection::connect(to)
        .await
        .map_err(database("connect to the target journal"))?;

    let mut transaction = postgres.begin().await.map_err(database("begin the copy"))?;
    for table in TABLES.iter().copied().chain(["tenant_sequences"]) {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *transaction)
            .await
            .map_err(database(format!("count the target's {table}")))?;
        if rows > 0 {
            return Err(CopyError::TargetNotEmpty { table, rows });
        }
    }

    let mut report = CopyReport { tables: Vec::new() };
    for table in TABLES {
        copy_table(&mut sqlite, &mut transaction, table).await?;
        let source_rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut sqlite)
            .await
            .map_err(database(format!("count the source's {table}")))?;
        report
            .tables
            .push((table, verify(&mut transaction, table, source_rows).await?));
    }
    // Derived from the copied events rather than copied from SQLite's own `tenant_sequences`,
    // so the target's numbering continues from what it holds whatever the source's table says.
    let sequences: Vec<(String, i64)> =
        sqlx::query_as("SELECT tenant, max(sequence) FROM events GROUP BY tenant")
            .fetch_all(&mut sqlite)
            .await
            .map_err(database("read the tenants' last sequences"))?;
    let (tenants, last): (Vec<String>, Vec<i64>) = sequences.into_iter().unzip();
    let source_tenants = i64::try_from(tenants.len()).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO tenant_sequences (tenant, last_sequence) \
         SELECT * FROM UNNEST($1::text[], $2::bigint[])",
    )
    .bind(tenants)
    .bind(last)
    .execute(&mut *transaction)
    .await
    .map_err(database("write tenant_sequences"))?;
    report.tables.push((
        "tenant_sequences",
        verify(&mut transaction, "tenant_sequences", source_tenants).await?,
    ));
    // Positions and action ids were copied as they are: the identities continue after them.
    for (table, column) in [("emissions", "position"), ("operator_actions", "id")] {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
             COALESCE(max({column}), 1), max({column}) IS NOT NULL) FROM {table}"
        ))
        .execute(&mut *transaction)
        .await
        .map_err(database(format!(
            "continue the identity of {table}.{column}"
        )))?;
    }
    transaction
        .commit()
        .await
        .map_err(database("commit the copy"))?;
    postgres.close().await.ok();
    sqlite.close().await.ok();
    Ok(report)
}

/// The target's row count of `table`, which must equal `source_rows`.
async fn verify(
    target: &mut PgConnection,
    table: &'static str,
    source_rows: i64,
) -> Result<i64, CopyError> {
    let target_rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(target)
        .await
        .map_err(database(format!("count the copied {table}")))?;
    if target_rows != source_rows {
        return Err(CopyError::CountMismatch {
            table,
            source_rows,
            target_rows,
        });
    }
    Ok(target_rows)
}

/// Copies every row of `table`, column by column as named in the source, in batches.
async fn copy_table(
    sqlite: &mut SqliteConnection,
    postgres: &mut PgConnection,
    table: &'static str,
) -> Result<(), CopyError> {
    let target_columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1",
    )
    .bind(table)
    .fetch_all(&mut *postgres)
    .await
    .map_err(database(format!("read the target's columns of {table}")))?;
    let source_columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
            .bind(table)
            .fetch_all(&mut *sqlite)
            .await
            .map_err(database(format!("read the source's columns of {table}")))?;
    let mut columns = Vec::new();
    for column in source_columns {
        let Some((_, data_type)) = target_columns.iter().find(|(name, _)| *name == column) else {
            return Err(CopyError::MissingColumn { table, column });
        };
        let column_type = match data_type.as_str() {
            "text" => ColumnType::Text,
            "bigint" => ColumnType::BigInt,
            "integer" => ColumnType::Integer,
            "double precision" => ColumnType::Double,
            "boolean" => ColumnType::Boolean,
            _ => {
                return Err(CopyError::UnsupportedType {
                    table,
                    column,
                    data_type: data_type.clone(),
                })
            }
        };
        columns.push((column, column_type));
    }
    let names = columns
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let batch_rows = (MAX_PARAMETERS / columns.len().max(1)).min(1000);
    // Primary-key order (positions, ordinals, action ids): the target's indexes fill in order.
    let primary_key: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk")
            .bind(table)
            .fetch_all(&mut *sqlite)
            .await
            .map_err(database(format!(
                "read the source's primary key of {table}"
            )))?;
    let order = if primary_key.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", primary_key.join(", "))
    };
    let select = format!("SELECT {names} FROM {table}{order}");
    let mut rows = sqlx::query(&select).fetch(&mut *sqlite);
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(batch_rows);
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(database(format!("read the source's {table}")))?
    {
        let mut values = Vec::with_capacity(columns.len());
        for (index, (column, column_type)) in columns.iter().enumerate() {
            let read = database(format!("read {table}.{column}"));
            values.push(match column_type {
                ColumnType::Text => Value::Text(row.try_get(index).map_err(read)?),
                ColumnType::BigInt => Value::BigInt(row.try_get(index).map_err(read)?),
                ColumnType::Integer => Value::Integer(row.try_get(index).map_err(read)?),
                ColumnType::Double => Value::Double(row.try_get(index).map_err(read)?),
                ColumnType::Boolean => Value::Boolean(row.try_get(index).map_err(read)?),
            });
        }
        batch.push(values);
        if batch.len() == batch_rows {
            insert_batch(postgres, table, &names, &batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        insert_batch(postgres, table, &names, &batch).await?;
    }
    Ok(())
}

async fn insert_batch(
    postgres: &mut PgConnection,
    table: &str,
    names: &str,
    batch: &[Vec<Value>],
) -> Result<(), CopyError> {
    let width = batch.first().map_or(0, Vec::len);
    let mut statement = format!("INSERT INTO {table} ({names}) OVERRIDING SYSTEM VALUE VALUES ");
    for row in 0..batch.len() {
        if row > 0 {
            statement.push_str(", ");
        }
        statement.push('(');
        for column in 0..width {
            if column > 0 {
                statement.push_str(", ");
            }
            statement.push_str(&format!("${}", row * width + column + 1));
        }
        statement.push(')');
    }
    let mut query = sqlx::query(&statement);
    for value in batch.iter().flatten() {
        query = match value {
            Value::Text(v) => query.bind(v.clone()),
            Value::BigInt(v) => query.bind(*v),
            Value::Integer(v) => query.bind(*v),
            Value::Double(v) => query.bind(*v),
            Value::Boolean(v) => query.bind(*v),
        };
    }
    query
        .execute(postgres)
        .await
        .map_err(database(format!("write {table}")))?;
    Ok(())
}
