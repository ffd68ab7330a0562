//! What one entry of the embedded store (or of the L1 tier, the same store)
//! costs the process, in bytes: what its byte bound counts.
//!
//! Counting the key and the value alone undercounts small entries several
//! times over: an entry of the analytics (a key of about 50 bytes, `[]`)
//! costs some 700 bytes once moka's bookkeeping, the tag versions and the
//! allocator are counted, so a store "full" at its bound held four to five
//! times that in memory. The figures below were measured (moka 0.12.16, a
//! counting allocator, then the resident set with mimalloc, the server's
//! allocator: see `tests/memory_bound_*.rs`, which check that the resident
//! memory of a saturated store stays within 1.5 times its bound).

use std::mem::size_of;

use bytes::Bytes;

use super::{Entry, TagCell, TagVersion};

/// moka's own bookkeeping per entry, measured: the `Arc` it wraps the key
/// in, its value entry, entry info, deque and timer-wheel nodes, its hash
/// table's bucket and slot, the frequency sketch's share (about 290 bytes
/// requested), rounded up for the allocator's size classes.
const MOKA_PER_ENTRY: usize = 320;

/// The shared buffer header `bytes` allocates once a value is cloned (the
/// first hit promotes it).
const SHARED_BUFFER: usize = 32;

/// A tag's cell, charged to every entry written under it: a cell shared by
/// many entries is counted more than once, which errs on the safe side,
/// while one an attacker's distinct guilds create per entry is counted
/// exactly. The `Arc` around the cell, and its slot in the registry's map,
/// doubled for the map's spare capacity and the dead cells awaiting
/// collection (at most half the live ones, see `TagRegistry`).
const PER_TAG_CELL: usize =
    2 * size_of::<usize>() + size_of::<TagCell>() + 2 * (size_of::<(String, usize)>() + 1);

/// An allocation of `len` bytes, as the allocator rounds it: to a multiple
/// of 16, plus up to an eighth for its size classes above 64 bytes.
fn allocated(len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    len.next_multiple_of(16) + len / 8
}

/// The cost of an entry under `key` holding `value`, written under `tags`
/// (and the store-wide cell every entry holds).
pub(super) fn entry_cost(key: &str, value: &Bytes, tags: &[String]) -> u32 {
    let entry = allocated(2 * size_of::<usize>() + size_of::<Entry>());
    let versions = allocated((tags.len() + 1) * size_of::<TagVersion>());
    let cells: usize = tags
        .iter()
        .map(|tag| PER_TAG_CELL + allocated(tag.len()))
        .sum();
    let bytes = MOKA_PER_ENTRY
        + allocated(key.len())
        + allocated(value.len())
        + SHARED_BUFFER
        + entry
        + versions
        + cells;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_entry_costs_far_more_than_its_key_and_value() {
        let tags = [
            "guild:123456789012345678".to_string(),
            "analytics:ghosts".to_string(),
            "analytics:ghosts:123456789012345678".to_string(),
        ];
        let key = "analytics:ghosts:123456789012345678:1700000000000";
        let cost = entry_cost(key, &Bytes::from_static(b"\0digest!![]"), &tags);
        assert!(cost as usize > 10 * (key.len() + 11), "{cost}");
    }

    #[test]
    fn a_large_value_costs_about_its_size() {
        let value = Bytes::from(vec![b'x'; 1 << 20]);
        let cost = entry_cost("k", &value, &[]) as usize;
        assert!(
            (1 << 20..(1 << 20) * 9 / 8 + 4096).contains(&cost),
            "{cost}"
        );
    }
}
