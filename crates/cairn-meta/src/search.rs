//! Search by name across namespaces.
//!
//! Each entry's lowercased name is a computed column, `name_key` (the last segment of
//! `path_key`; migration 0007). A substring of it is found through a trigram index where
//! the backend has one: SQLite's FTS5 `trigram` tokenizer (the `entry_names` table, kept
//! in step with `entries` by triggers) and PostgreSQL's `pg_trgm` (a GIN index, made
//! when the extension could be created). Either index serves a pattern of three
//! characters or more; a shorter one, or a PostgreSQL without `pg_trgm`, scans the live
//! entries of the namespaces asked about.

use crate::db::{entry_from_row, placeholders, Backend, ENTRY_COLUMNS};
use crate::{Entry, MetaError, MetaStore};
use cairn_core::NamespaceId;

impl MetaStore {
    /// The live entries (files and folders) of the namespaces `namespaces` whose name
    /// contains `needle`, which must already be a search key (NFC, lowercased:
    /// `cairn_core::path::search_key`), at most `limit` of them, and whether more
    /// matched. Names that start with `needle` come first, then shorter names before
    /// longer, then by name.
    pub async fn search_names(
        &self,
        namespaces: &[NamespaceId],
        needle: &str,
        limit: u32,
    ) -> Result<(Vec<Entry>, bool), MetaError> {
        if namespaces.is_empty() || needle.is_empty() || limit == 0 {
            return Ok((Vec::new(), false));
        }
        // $1: the LIKE pattern; $2: the needle itself; $3: the limit; then namespaces.
        let filter = match self.backend {
            // FTS5 answers LIKE through its index (trigram, case-folding) and does not
            // take an ESCAPE clause, so the pattern carries the needle's own `%` and `_`
            // as wildcards: a superset, made exact by `instr`.
            Backend::Sqlite => {
                "id IN (SELECT rowid FROM entry_names WHERE name_key LIKE $1) \
                 AND instr(name_key, $2) > 0"
            }
            // `\` is PostgreSQL's default LIKE escape, so the pattern is exact.
            Backend::Postgres => "name_key LIKE $1",
        };
        let pattern = match self.backend {
            Backend::Sqlite => format!("%{needle}%"),
            Backend::Postgres => format!("%{}%", escape_like(needle)),
        };
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries \
             WHERE {filter} AND deleted_at IS NULL AND ns_id IN ({}) \
             ORDER BY CASE WHEN substr(name_key, 1, length($2)) = $2 THEN 0 ELSE 1 END, \
                      length(name_key), name_key, ns_id, id \
             LIMIT $3",
            placeholders(4, namespaces.len())
        );
        let mut query = sqlx::query(&sql)
            .bind(pattern)
            .bind(needle.to_owned())
            .bind(i64::from(limit) + 1);
        for ns in namespaces {
            query = query.bind(ns.0);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let truncated = rows.len() > limit as usize;
        let entries = rows
            .iter()
            .take(limit as usize)
            .map(entry_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((entries, truncated))
    }
}

/// `text` with PostgreSQL's LIKE wildcards (and its escape character) escaped.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_like() {
        assert_eq!(super::escape_like(r"50%_a\b"), r"50\%\_a\\b");
    }
}
