//! The SQL of the store: the embedded migration and one statement per
//! operation, made once per store with its checked schema and table.
//!
//! Durations travel as microseconds (`bigint`), turned into intervals on
//! the server, and every deadline is computed from the server's `now()`:
//! replicas of a service may disagree about the time, the database is one
//! clock for all of them.

/// The migration, with `{schema}` and `{table}` to fill in.
const MIGRATION: &str = include_str!("migration.sql");

/// Serialises migrations of every orch idempotency table in a database, so
/// that replicas starting together do not race on `CREATE … IF NOT EXISTS`
/// (which can fail with a unique violation when run concurrently).
const MIGRATION_LOCK: i64 = 0x6f72_6368_6964_656d; // "orchidem"

/// The statements of one store.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) migrate: String,
    pub(super) claim: String,
    pub(super) complete: String,
    pub(super) release: String,
    pub(super) renew: String,
    pub(super) reap: String,
}

/// The condition every fenced statement adds: the token's generation is
/// the record's, the record is still in progress, and it has not expired
/// (an expired record is gone for everyone, even if the reaper has not
/// deleted it yet).
const FENCE: &str = "scope = $1 AND key = $2 AND generation = $3 \
                     AND state = 'in_progress' AND expires_at > now()";

impl Statements {
    /// `schema` and `table` must have passed the config's identifier check:
    /// they are spliced between double quotes.
    pub(super) fn new(schema: &str, table: &str) -> Self {
        let t = format!("\"{schema}\".\"{table}\"");
        let migrate = format!(
            "BEGIN;\nSELECT pg_advisory_xact_lock({MIGRATION_LOCK});\n{}\nCOMMIT;",
            MIGRATION.replace("{schema}", schema).replace("{table}", table)
        );
        // One statement: the INSERT takes a free key, or, through ON
        // CONFLICT, one whose record expired or whose lease ended (same
        // fingerprint only: another payload is a mismatch even then). The
        // row lock ON CONFLICT takes makes exactly one of concurrent
        // claimers win. When nothing was taken, the outer SELECT reads the
        // record as it is, to answer InProgress, Completed or Mismatch.
        let claim = format!(
            "WITH claimed AS (
                INSERT INTO {t} AS r (scope, key, fingerprint, generation, state, lease_until, expires_at)
                VALUES ($1, $2, $3, nextval('\"{schema}\".\"{table}_generation\"'), 'in_progress',
                        now() + $4::bigint * interval '1 microsecond',
                        now() + $5::bigint * interval '1 microsecond')
                ON CONFLICT (scope, key) DO UPDATE SET
                    fingerprint = EXCLUDED.fingerprint, generation = EXCLUDED.generation,
                    state = 'in_progress', lease_until = EXCLUDED.lease_until,
                    expires_at = EXCLUDED.expires_at, protocol = NULL, status = NULL,
                    header_names = NULL, header_values = NULL, body = NULL,
                    trailer_names = NULL, trailer_values = NULL
                WHERE r.expires_at <= now()
                   OR (r.state = 'in_progress' AND r.lease_until <= now()
                       AND r.fingerprint = EXCLUDED.fingerprint)
                RETURNING r.generation
            )
            SELECT c.generation AS acquired, r.fingerprint, r.state,
                   r.expires_at <= now() AS expired,
                   r.lease_until <= now() AS lease_over,
                   floor(extract(epoch FROM r.lease_until - now()) * 1000000)::bigint AS lease_left_us,
                   r.protocol, r.status, r.header_names, r.header_values, r.body,
                   r.trailer_names, r.trailer_values
            FROM (VALUES (1)) AS one (x)
            LEFT JOIN claimed AS c ON true
            LEFT JOIN {t} AS r ON c.generation IS NULL AND r.scope = $1 AND r.key = $2"
        );
        let complete = format!(
            "UPDATE {t} SET state = 'completed', lease_until = NULL,
                 expires_at = now() + $4::bigint * interval '1 microsecond',
                 protocol = $5, status = $6, header_names = $7, header_values = $8,
                 body = $9, trailer_names = $10, trailer_values = $11
             WHERE {FENCE}"
        );
        // Release forgets the record: a DELETE, the next claim inserts anew
        // and takes a new generation from the sequence.
        let release = format!("DELETE FROM {t} WHERE {FENCE}");
        let renew = format!(
            "UPDATE {t} SET lease_until = now() + $4::bigint * interval '1 microsecond',
                 expires_at = greatest(expires_at, now() + $4::bigint * interval '1 microsecond')
             WHERE {FENCE}"
        );
        // In batches, skipping rows a claim holds locked, so that the
        // reaper never holds many locks nor waits behind live traffic.
        let reap = format!(
            "DELETE FROM {t} WHERE (scope, key) IN (
                 SELECT scope, key FROM {t} WHERE expires_at <= now()
                 LIMIT $1 FOR UPDATE SKIP LOCKED)
             AND expires_at <= now()"
        );
        Self {
            migrate,
            claim,
            complete,
            release,
            renew,
            reap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_filled_in_everywhere() {
        let sql = Statements::new("s", "t");
        assert!(!sql.migrate.contains('{'), "{}", sql.migrate);
        assert!(sql.migrate.contains("\"s\".\"t_generation\""));
        for statement in [&sql.claim, &sql.complete, &sql.release, &sql.renew, &sql.reap] {
            assert!(statement.contains("\"s\".\"t\""), "{statement}");
        }
    }
}
