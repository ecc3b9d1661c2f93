//! Connection health rows (one per component).

use super::{exec, Ctx, StoreError};
use rusqlite::{params, Connection, OptionalExtension};

// ---------------------------------------------------------------------------
// Health

/// The health record of one component ("imap", "smtp", or "lease":
/// see `health::lease`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Health {
    pub component: String,
    pub last_ok_at: Option<String>,
    pub failing_since: Option<String>,
    pub last_error: Option<String>,
    pub alerted: bool,
}

pub fn health(conn: &Connection, component: &str) -> Result<Health, StoreError> {
    Ok(conn
        .query_row(
            "SELECT component, last_ok_at, failing_since, last_error, alerted FROM health
             WHERE component = ?1",
            [component],
            |r| {
                Ok(Health {
                    component: r.get(0)?,
                    last_ok_at: r.get(1)?,
                    failing_since: r.get(2)?,
                    last_error: r.get(3)?,
                    alerted: r.get(4)?,
                })
            },
        )
        .optional()
        .ctx("reading health")?
        .unwrap_or(Health {
            component: component.to_owned(),
            ..Health::default()
        }))
}

pub fn put_health(conn: &Connection, h: &Health) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO health (component, last_ok_at, failing_since, last_error, alerted)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(component) DO UPDATE SET last_ok_at = excluded.last_ok_at,
             failing_since = excluded.failing_since, last_error = excluded.last_error,
             alerted = excluded.alerted",
        params![
            h.component,
            h.last_ok_at,
            h.failing_since,
            h.last_error,
            h.alerted
        ],
    )
    .ctx("saving health")?;
    Ok(())
}
