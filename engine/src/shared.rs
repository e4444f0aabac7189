//! Shared text for large plans: a host name, step name, role name, task id or recorded
//! command appears in many tasks of a plan; one allocation serves them all. [`Shared`] is an
//! `Arc<str>` that serialises as a plain string (the plan's JSON does not change), and an
//! [`Interner`] hands out one `Shared` per distinct text.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

/// Immutable text whose clones share one allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Shared(Arc<str>);

impl Shared {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Shared {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Shared {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Shared {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl From<&str> for Shared {
    fn from(s: &str) -> Shared {
        Shared(Arc::from(s))
    }
}

impl From<String> for Shared {
    fn from(s: String) -> Shared {
        Shared(Arc::from(s))
    }
}

impl From<&String> for Shared {
    fn from(s: &String) -> Shared {
        Shared(Arc::from(s.as_str()))
    }
}

impl From<Shared> for String {
    fn from(s: Shared) -> String {
        s.0.to_string()
    }
}

impl PartialEq<str> for Shared {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Shared {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Shared {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Shared> for str {
    fn eq(&self, other: &Shared) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Shared> for &str {
    fn eq(&self, other: &Shared) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Shared> for String {
    fn eq(&self, other: &Shared) -> bool {
        **self == *other.0
    }
}

impl Serialize for Shared {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Shared {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Shared, D::Error> {
        // A saved plan read back: no interning; it is read far less often than made.
        String::deserialize(d).map(Shared::from)
    }
}

/// One [`Shared`] per distinct text. Thread-safe: the dry run records hosts in parallel.
#[derive(Default)]
pub struct Interner {
    seen: Mutex<HashSet<Shared, foldhash::fast::RandomState>>,
}

impl Interner {
    pub fn new() -> Interner {
        Interner::default()
    }

    pub fn get(&self, text: &str) -> Shared {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = seen.get(text) {
            return s.clone();
        }
        let s = Shared::from(text);
        seen.insert(s.clone());
        s
    }

    /// Like [`get`](Self::get), keeping `text`'s allocation when it is new.
    pub fn take(&self, text: String) -> Shared {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = seen.get(text.as_str()) {
            return s.clone();
        }
        let s = Shared::from(text);
        seen.insert(s.clone());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_share_one_allocation_and_serialise_as_strings() {
        let i = Interner::new();
        let a = i.get("apt-get update");
        let b = i.take("apt-get update".to_string());
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert!(!Arc::ptr_eq(&a.0, &i.get("apt-get upgrade").0));
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"apt-get update\"");
        let back: Shared = serde_json::from_str("\"x y\"").unwrap();
        assert_eq!(back, "x y");
    }
}
