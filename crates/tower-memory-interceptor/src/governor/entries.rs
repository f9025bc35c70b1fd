//! A route's ledger entry (its cost model), found per thread without a lock or a hash.

use std::cell::RefCell;

use super::Governor;
use crate::ledger::Entry;
use crate::route::Route;

thread_local! {
    // The ledger entry of each hot route, per thread: an admission looks its route up without a
    // lock or a hash. Bounded and keyed by the ledger, like the report's metric handles.
    static ENTRIES: RefCell<Vec<(usize, Route, &'static Entry)>> = const { RefCell::new(Vec::new()) };
}

const ENTRY_SLOTS: usize = 32;

thread_local! {
    // The last route looked up on this thread, compared by ledger and text address: most
    // lookups in a row are of the same route. Only the address is kept, never dereferenced;
    // the `Route` that owns the text lives on in `ENTRIES` (or was static).
    static LAST_ENTRY: std::cell::Cell<LastEntry> =
        const { std::cell::Cell::new((0, std::ptr::null(), None)) };
}

/// Ledger id, route text address, and the text's length with the entry.
type LastEntry = (usize, *const u8, Option<(usize, &'static Entry)>);

impl Governor {
    /// The route's ledger entry (its cost model).
    #[inline]
    pub(crate) fn entry(&self, route: &Route) -> &'static Entry {
        let id = self.ledger.id() as usize;
        let hit = LAST_ENTRY.with(|last| {
            let (l, text, entry) = last.get();
            let r = route.as_str();
            (l == id
                && std::ptr::eq(text, r.as_ptr())
                && entry.is_some_and(|(len, _)| len == r.len()))
            .then(|| entry.map(|(_, e)| e))
            .flatten()
        });
        match hit {
            Some(entry) => entry,
            None => self.entry_slow(id, route),
        }
    }

    #[cold]
    fn entry_slow(&self, id: usize, route: &Route) -> &'static Entry {
        let entry = ENTRIES
            .try_with(|cell| {
                let mut entries = cell.try_borrow_mut().ok()?;
                if let Some(i) = entries
                    .iter()
                    .position(|(l, r, _)| *l == id && r.same(route))
                {
                    let at = i.saturating_sub(1);
                    entries.swap(i, at);
                    return Some(entries[at].2);
                }
                let entry = self.ledger.entry(route.as_str());
                if entries.len() == ENTRY_SLOTS {
                    entries.pop();
                }
                entries.push((id, route.clone(), entry));
                Some(entry)
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| self.ledger.entry(route.as_str()));
        // The text's address identifies the route next time: a router hands out clones of one
        // label, a classifier the same static string.
        let text = route.as_str();
        LAST_ENTRY.with(|last| last.set((id, text.as_ptr(), Some((text.len(), entry)))));
        entry
    }
}
