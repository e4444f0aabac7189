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

/// The hasher of maps and sets keyed by the inventory's and the runbook's names (hosts,
/// groups, variables) and of the interner: foldhash, not std's SipHash, which took ~5% of
/// planning's instructions. Those keys come from the user's own files, so hash flooding is
/// not what these maps must resist; the seed is still random per process.
pub type NameHasher = foldhash::fast::RandomState;
/// An insertion-ordered map keyed by names (see [`NameHasher`]).
pub type NameMap<K, V> = indexmap::IndexMap<K, V, NameHasher>;
/// An insertion-ordered set of names (see [`NameHasher`]).
pub type NameSet<T> = indexmap::IndexSet<T, NameHasher>;

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

/// A list of [`Shared`] texts that holds one without an allocation of its own: most of a
/// plan's tasks have one command and one dependency, and a plan has a task per host and step.
/// Reads as a slice; serialises as a list.
#[derive(Clone)]
pub enum SharedList {
    One(Shared),
    Many(Box<[Shared]>),
}

impl SharedList {
    pub fn as_slice(&self) -> &[Shared] {
        match self {
            SharedList::One(s) => std::slice::from_ref(s),
            SharedList::Many(all) => all,
        }
    }
}

impl Default for SharedList {
    fn default() -> Self {
        SharedList::Many(Box::default())
    }
}

impl Deref for SharedList {
    type Target = [Shared];
    fn deref(&self) -> &[Shared] {
        self.as_slice()
    }
}

impl<'a> IntoIterator for &'a SharedList {
    type Item = &'a Shared;
    type IntoIter = std::slice::Iter<'a, Shared>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl FromIterator<Shared> for SharedList {
    fn from_iter<I: IntoIterator<Item = Shared>>(items: I) -> Self {
        let mut items = items.into_iter();
        let Some(first) = items.next() else {
            return SharedList::default();
        };
        match items.next() {
            None => SharedList::One(first),
            Some(second) => {
                let mut all = vec![first, second];
                all.extend(items);
                SharedList::Many(all.into_boxed_slice())
            }
        }
    }
}

impl From<Vec<Shared>> for SharedList {
    fn from(mut all: Vec<Shared>) -> Self {
        match all.len() {
            1 => SharedList::One(all.pop().expect("one")),
            _ => SharedList::Many(all.into_boxed_slice()),
        }
    }
}

impl PartialEq for SharedList {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SharedList {}

impl fmt::Debug for SharedList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl Serialize for SharedList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SharedList, D::Error> {
        Vec::<Shared>::deserialize(d).map(SharedList::from)
    }
}

/// One [`Shared`] per distinct text. Thread-safe: the dry run records hosts in parallel.
#[derive(Default)]
pub struct Interner {
    seen: Mutex<HashSet<Shared, NameHasher>>,
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

/// An [`Interner`] as one worker of the dry run sees it: a text it was handed before comes
/// from a table of its own, without taking the shared table's lock (the dry run's threads
/// would take it for every command, most of them the same few).
pub struct LocalInterner<'a> {
    shared: &'a Interner,
    seen: HashSet<Shared, NameHasher>,
}

impl<'a> LocalInterner<'a> {
    pub fn new(shared: &'a Interner) -> LocalInterner<'a> {
        LocalInterner {
            shared,
            seen: HashSet::default(),
        }
    }

    pub fn get(&mut self, text: &str) -> Shared {
        if let Some(s) = self.seen.get(text) {
            return s.clone();
        }
        let s = self.shared.get(text);
        self.seen.insert(s.clone());
        s
    }

    /// The shared table, for texts this worker will not see again.
    pub fn shared(&self) -> &'a Interner {
        self.shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_interner_hands_out_the_shared_tables_texts() {
        let shared = Interner::new();
        let a = shared.get("apt-get update");
        let mut one = LocalInterner::new(&shared);
        let mut two = LocalInterner::new(&shared);
        let from_one = one.get("apt-get update");
        assert!(Arc::ptr_eq(&from_one.0, &a.0));
        let new_in_two = two.get("true");
        assert!(Arc::ptr_eq(&one.get("true").0, &new_in_two.0));
        assert!(Arc::ptr_eq(&two.get("true").0, &new_in_two.0));
    }

    #[test]
    fn a_list_of_one_is_held_inline_and_every_list_reads_and_serialises_as_a_slice() {
        let one: SharedList = [Shared::from("a")].into_iter().collect();
        assert!(matches!(one, SharedList::One(_)));
        let two: SharedList = ["a", "b"].into_iter().map(Shared::from).collect();
        let none: SharedList = std::iter::empty().collect();
        assert_eq!(&*two, &[Shared::from("a"), Shared::from("b")]);
        assert!(none.is_empty());
        assert_eq!(one, SharedList::Many(Box::new([Shared::from("a")])));
        assert_ne!(one, two);
        for (list, json) in [(&none, "[]"), (&one, r#"["a"]"#), (&two, r#"["a","b"]"#)] {
            assert_eq!(serde_json::to_string(list).unwrap(), json);
            let back: SharedList = serde_json::from_str(json).unwrap();
            assert_eq!(&back, list);
        }
        let back: SharedList = serde_json::from_str(r#"["a"]"#).unwrap();
        assert!(matches!(back, SharedList::One(_)));
        assert_eq!(std::mem::size_of::<SharedList>(), 24);
    }

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
