//! Secrets shared by every process on one metadata database (`server_secrets`), so
//! that no node keeps one only in its memory: any node can check what another signed,
//! and a restart invalidates nothing.

use crate::{MetaError, MetaStore};

impl MetaStore {
    /// The secret called `name`: `fresh` is stored the first time any process asks for
    /// it, and the stored value is returned from then on, to every process (two that
    /// ask at once get the same one).
    pub async fn shared_secret(&self, name: &str, fresh: &str) -> Result<String, MetaError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .execute(&mut *conn)
        .await?;
        let (value,): (String,) =
            sqlx::query_as("SELECT value FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *conn)
                .await?;
        Ok(value)
    }
}
