//! Connections for reading the store, one per concurrent reader: under WAL a
//! reader sees the last commit and never waits for the writer, so reads
//! (the caller's key, the catalog's history, the audit search) do not queue
//! behind the one writer connection.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::store::{Store, StoreError};

/// Idle connections kept at most; more readers at once open their own.
const IDLE: usize = 16;

pub struct Readers {
    dir: PathBuf,
    idle: Mutex<Vec<Store>>,
}

/// A connection taken from [`Readers`]; goes back when dropped.
pub struct Reader<'a> {
    pool: &'a Readers,
    store: Option<Store>,
}

impl Readers {
    pub fn new(dir: PathBuf) -> Readers {
        Readers {
            dir,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn get(&self) -> Result<Reader<'_>, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let store = match idle {
            Some(store) => store,
            None => Store::open_reader(&self.dir)?,
        };
        Ok(Reader {
            pool: self,
            store: Some(store),
        })
    }
}

impl std::ops::Deref for Reader<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.store
            .as_ref()
            .expect("a reader holds its store until dropped")
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < IDLE {
                idle.push(store);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_commits_and_cannot_write() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = Store::open(tmp.path()).unwrap();
        let readers = Readers::new(tmp.path().to_owned());
        let before = readers.get().unwrap().access_generation().unwrap();
        writer
            .add_principal(&crate::store::NewPrincipal {
                name: "someone",
                role: veil_policies::Role::Consumer,
                org: None,
                region: None,
                subject: None,
            })
            .unwrap();
        let reader = readers.get().unwrap();
        assert!(reader.access_generation().unwrap() > before);
        assert!(reader.principal("someone").unwrap().is_some());
        drop(reader);
        // Read-only at the SQLite level: a write through one fails.
        let mut direct = Store::open_reader(tmp.path()).unwrap();
        let text = veil_policies::policy::DEFAULT_PRESET;
        assert!(direct.load_policy(text, "someone").is_err());
        // The connection went back and is reused.
        assert_eq!(readers.idle.lock().unwrap().len(), 1);
    }
}
