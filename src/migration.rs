//! Versioned SQLite schemas, for the state file and for stores of other
//! crates (the release-delivery jobs keep theirs with it).
//!
//! `application_id` marks a file as one of pushguard's (each kind of file
//! its own id); `user_version` is the schema version. Migrations run in order
//! inside one immediate transaction, so concurrent first opens agree; a file
//! from a newer pushguard, or another program's database, is left untouched
//! and reported rather than guessed at.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

/// Creates `path` as an empty file readable and writable by its owner only
/// (mode 0600) when it does not exist yet; an existing file is left as it
/// is. SQLite gives the file's `-wal` and `-shm` companions the same mode.
/// State and store files hold job output and history: nobody else reads
/// them.
///
/// ```
/// use std::os::unix::fs::PermissionsExt as _;
///
/// let dir = tempfile::tempdir()?;
/// let file = dir.path().join("state.db");
/// pushguard::migration::create_private(&file)?;
/// assert_eq!(std::fs::metadata(&file)?.permissions().mode() & 0o777, 0o600);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A kind of file and the migrations that build its schema.
pub struct Schema {
    /// Marks the file as this kind.
    pub application_id: i64,
    /// Each entry moves the schema from version `index` to `index + 1`.
    pub migrations: &'static [&'static str],
}

/// What the file held before [`Schema::migrate`] ran.
pub enum Found {
    /// A file of this kind and this version or older (now migrated), or an empty file.
    Ok,
    /// A file of this kind from a newer version; left untouched.
    Newer(i64),
    /// Another kind of file or another program's database (its application
    /// id); left untouched.
    Foreign(i64),
}

impl Schema {
    /// The schema version this build writes.
    pub const fn version(&self) -> i64 {
        self.migrations.len() as i64
    }

    /// Checks the file and applies the missing migrations.
    pub fn migrate(&self, conn: &mut Connection) -> rusqlite::Result<Found> {
        // The usual case first, without the write lock: a file of this
        // application at the current version needs nothing. Both values are
        // read from the file's header in one read.
        let (app, version): (i64, i64) = conn.query_row(
            "SELECT application_id, user_version FROM pragma_application_id, pragma_user_version",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if app == self.application_id && version == self.version() {
            return Ok(Found::Ok);
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let app: i64 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if app != self.application_id {
            let tables: i64 =
                tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
            if app != 0 || tables != 0 || version != 0 {
                return Ok(Found::Foreign(app));
            }
            tx.execute_batch(&format!("PRAGMA application_id = {}", self.application_id))?;
        }
        if version > self.version() {
            return Ok(Found::Newer(version));
        }
        for (index, sql) in self
            .migrations
            .iter()
            .enumerate()
            .skip(version.max(0) as usize)
        {
            tx.execute_batch(sql)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
        }
        tx.commit()?;
        Ok(Found::Ok)
    }
}
