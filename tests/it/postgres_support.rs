//! Test databases on the development PostgreSQL (127.0.0.1:5432, user `postgres`, trust auth;
//! `TEST_POSTGRES_URL` names another server's maintenance database). Every test creates its
//! own database under a unique name and drops it when done, so runs never collide.
//!
//! Without a reachable server the PostgreSQL tests are skipped with a line saying so, unless
//! `CI` is set: there a missing PostgreSQL fails them.

use sqlx::postgres::PgConnection;
use sqlx::Connection;
use uuid::Uuid;

/// The maintenance database the test databases are created from.
fn admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of one test, dropped (with any connection still open to it) when dropped.
pub struct TestDatabase {
    /// The database's name (`tg_test_...`).
    pub name: String,
    /// `postgres://...` URL of the database.
    pub url: String,
    /// Whether it still has to be dropped.
    dropped: bool,
}

/// Connects to the maintenance database, or reports the skip (`None`); panics with `CI` set.
pub async fn admin_connection(test: &str) -> Option<PgConnection> {
    match PgConnection::connect(&admin_url()).await {
        Ok(connection) => Some(connection),
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("{test}: PostgreSQL is required when CI is set and is not reachable: {error}")
        }
        Err(error) => {
            println!(
                "SKIPPED {test}: PostgreSQL is not reachable ({error}); set CI to make this \
                 a failure"
            );
            None
        }
    }
}

impl TestDatabase {
    /// Creates an empty database for `test`; `None` (after printing why) when PostgreSQL is
    /// not reachable and `CI` is not set.
    pub async fn create(test: &str) -> Option<TestDatabase> {
        let mut admin = admin_connection(test).await?;
        let name = format!("tg_test_{}", Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        admin.close().await.expect("close the admin connection");
        let base = admin_url();
        let server = base
            .rsplit_once('/')
            .map_or(base.as_str(), |(server, _)| server);
        Some(TestDatabase {
            url: format!("{server}/{name}"),
            name,
            dropped: false,
        })
    }

    /// A connection of the test's own, behind the journal's back.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Drops the database now, closing every connection to it (as a lost database would).
    pub async fn drop_now(&mut self) {
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("admin connection");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .expect("drop the test database");
        self.dropped = true;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own
        // with a runtime of its own does the dropping, and is waited for.
        let dropping = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let mut admin = PgConnection::connect(&admin_url()).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await?;
                admin.close().await
            })
        });
        if let Ok(Err(error)) = dropping.join() {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

/// Every table a journal writes, locked against writers (reads go on) through a connection of
/// its own, as another process holding the store would: the PostgreSQL twin of
/// `support::StoreLock`.
pub struct PostgresLock(PgConnection);

impl PostgresLock {
    pub async fn acquire(database: &TestDatabase) -> PostgresLock {
        let mut connection = database.connect().await;
        sqlx::query("BEGIN")
            .execute(&mut connection)
            .await
            .expect("begin");
        // EXCLUSIVE conflicts with every write lock but not with plain reads (ACCESS SHARE).
        sqlx::query(
            "LOCK TABLE tenant_sequences, events, emissions, delivery_attempts, \
             operator_actions, replay_jobs, replay_job_events IN EXCLUSIVE MODE",
        )
        .execute(&mut connection)
        .await
        .expect("lock the journal tables");
        PostgresLock(connection)
    }

    pub async fn release(mut self) {
        sqlx::query("ROLLBACK")
            .execute(&mut self.0)
            .await
            .expect("release the lock");
        self.0.close().await.expect("close the lock connection");
    }
}
