//! String-ID registries: an experiment names its environment and agents, and
//! a registry turns the names into constructors.

use crate::error::CoreError;

/// One registered constructor.
pub struct Entry<F> {
    pub id: &'static str,
    pub description: &'static str,
    pub make: F,
}

/// An ordered list of entries, looked up by ID.
pub struct Registry<F> {
    kind: &'static str,
    entries: Vec<Entry<F>>,
}

impl<F> Registry<F> {
    pub fn new(kind: &'static str) -> Self {
        Registry {
            kind,
            entries: Vec::new(),
        }
    }

    /// Adds an entry; IDs must be unique.
    pub fn register(&mut self, id: &'static str, description: &'static str, make: F) {
        assert!(
            self.entries.iter().all(|e| e.id != id),
            "duplicate {} id '{id}'",
            self.kind
        );
        self.entries.push(Entry {
            id,
            description,
            make,
        });
    }

    pub fn get(&self, id: &str) -> Result<&Entry<F>, CoreError> {
        self.entries
            .iter()
            .find(|e| e.id == id)
            .ok_or_else(|| CoreError::UnknownId {
                kind: self.kind,
                id: id.to_string(),
                known: self.ids().join(", "),
            })
    }

    pub fn ids(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.id).collect()
    }

    pub fn entries(&self) -> &[Entry<F>] {
        &self.entries
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }
}
