//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4, Pseudocode 1), as Cilium uses
//! it for north-south service traffic: a table of `m` (prime) entries, each a backend id, that
//! every node computes identically from the same backend set, so a flow hashed to an entry
//! reaches the same backend whichever node it lands on, and a backend change moves few flows.
//!
//! Each backend walks its own permutation of the table (`offset`, `offset + skip`, … mod `m`;
//! full because `m` is prime and `1 <= skip < m`) and, on each of its turns, claims its next
//! entry not yet taken. Turns are handed out by weight (see [`table`]).

use std::{cmp::Ordering, cmp::Reverse, collections::BinaryHeap};

/// Cilium's default table size: a prime well above 100 × backends for most services (the paper
/// keeps `m > 100 n` so each backend's share stays within about 1% of the others).
pub const DEFAULT_TABLE_SIZE: u32 = 16_381;

/// Largest table size accepted: Cilium's largest (2^17 − 1, prime).
pub const MAX_TABLE_SIZE: u32 = 131_071;

/// SipHash keys of the two hash functions. They are part of the table's definition: changing
/// them reshuffles every table, so every flow of every Maglev service moves on upgrade.
const OFFSET_KEY: (u64, u64) = (0x5374_7261_6974_4d67, 0x6c65_762d_6f66_6673); // "StraitMglev-offs"
const SKIP_KEY: (u64, u64) = (0x5374_7261_6974_4d67, 0x6c65_762d_736b_6970); // "StraitMglev-skip"

/// One backend as Maglev sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaglevBackend {
    /// What the table stores; node-local, so it takes no part in the layout.
    pub id: u32,
    /// Stable identity, the same on every node (e.g. `10.244.1.2:8080/TCP`): the permutation
    /// is derived from it alone.
    pub key: String,
    /// Relative share of the table; 0 means drained: the backend gets no entry.
    pub weight: u16,
}

impl MaglevBackend {
    /// A backend of weight 1.
    pub fn new(id: u32, key: impl Into<String>) -> Self {
        Self {
            id,
            key: key.into(),
            weight: 1,
        }
    }
}

/// Why no table can be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    #[error("maglev table size {0} is not a prime of at most {max}", max = MAX_TABLE_SIZE)]
    InvalidTableSize(u32),
    #[error("no maglev backend has a non-zero weight")]
    NoActiveBackend,
    #[error("{backends} maglev backends do not fit a table of {table_size} entries")]
    TooManyBackends { backends: usize, table_size: u32 },
    #[error("duplicate maglev backend key {0}")]
    DuplicateKey(String),
}

/// Whether `m` can size a Maglev table: prime (so every skip generates a full permutation)
/// and at most [`MAX_TABLE_SIZE`].
pub fn is_valid_table_size(m: u32) -> bool {
    (2..=MAX_TABLE_SIZE).contains(&m)
        && (2..)
            .take_while(|d| d * d <= m)
            .all(|d| !m.is_multiple_of(d))
}

/// The Maglev lookup table of `m` entries for `backends`, each entry a backend id.
///
/// Deterministic in the backend *set*: backends are taken in key order, and each one's
/// permutation depends only on its key. Weights by stride scheduling: the next turn goes to the
/// backend whose next turn number divided by its weight is smallest (ties to the smaller key).
/// Turns `1..=Σw`, then the next `Σw`, and so on give a backend of weight `w` exactly `w` turns
/// each, as "w turns per round" would, but interleaved, so every backend ends within about one
/// entry of its exact share `m·w/Σw` (Cilium's weighted turns aim at the same shares). With
/// equal weights this is round-robin in key order: the paper's Pseudocode 1.
pub fn table(backends: &[MaglevBackend], m: u32) -> Result<Vec<u32>, MaglevError> {
    if !is_valid_table_size(m) {
        return Err(MaglevError::InvalidTableSize(m));
    }
    let mut sorted: Vec<&MaglevBackend> = backends.iter().collect();
    sorted.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0].key == pair[1].key) {
        return Err(MaglevError::DuplicateKey(pair[0].key.clone()));
    }
    // Drained backends are checked for duplicates above but take no turn.
    sorted.retain(|backend| backend.weight > 0);
    if sorted.is_empty() {
        return Err(MaglevError::NoActiveBackend);
    }
    if sorted.len() > m as usize {
        return Err(MaglevError::TooManyBackends {
            backends: sorted.len(),
            table_size: m,
        });
    }

    let m64 = u64::from(m);
    let m = m as usize;
    // Each backend's permutation is walked lazily from its cursor instead of materialising the
    // n×m matrix as the paper and Cilium do.
    let mut turns: BinaryHeap<Reverse<Turn>> = sorted
        .iter()
        .enumerate()
        .map(|(index, backend)| {
            let key = backend.key.as_bytes();
            Reverse(Turn {
                number: 1,
                weight: backend.weight.into(),
                index,
                position: (siphash24(OFFSET_KEY, key) % m64) as usize,
                skip: (siphash24(SKIP_KEY, key) % (m64 - 1) + 1) as usize,
            })
        })
        .collect();
    let mut entries = vec![None; m];
    for _ in 0..m {
        let Reverse(mut turn) = turns.pop().expect("each pop is followed by a push");
        // Ends: the permutation covers every entry and fewer than `m` are taken.
        while entries[turn.position].is_some() {
            turn.position = (turn.position + turn.skip) % m;
        }
        entries[turn.position] = Some(sorted[turn.index].id);
        turn.number += 1;
        turns.push(Reverse(turn));
    }
    // Every turn filled one entry, so all `m` are set.
    Ok(entries.into_iter().flatten().collect())
}

/// A backend's next turn, ordered by `number / weight` then key order, and its permutation
/// cursor (`position`, advanced by `skip`). One per backend is in the heap at any time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Turn {
    number: u64,
    weight: u64,
    index: usize,
    position: usize,
    skip: usize,
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        // Cross-multiplied to stay exact; number <= 2^17, weight < 2^16: no overflow.
        (self.number * other.weight)
            .cmp(&(other.number * self.weight))
            .then(self.index.cmp(&other.index))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// SipHash-2-4 (Aumasson & Bernstein, 2012) of `data` under a 128-bit key. Chosen because it is
/// fully specified with published test vectors, so tables stay identical across Rust releases
/// and machines (unlike `DefaultHasher`); two keys give two independent hash functions, and it
/// mixes short, similar keys (addresses differing in one digit) well.
fn siphash24((k0, k1): (u64, u64), data: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    // The last word carries the bytes left over and the length's low byte, per the spec.
    let tail = data.chunks_exact(8).remainder();
    let mut last = [0; 8];
    last[..tail.len()].copy_from_slice(tail);
    last[7] = data.len() as u8;
    let words = data
        .chunks_exact(8)
        .map(|word| word.try_into().expect("8 bytes"));
    for word in words.chain([last]).map(u64::from_le_bytes) {
        v[3] ^= word;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= word;
    }
    v[2] ^= 0xff;
    (0..4).for_each(|_| sip_round(&mut v));
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u32 = DEFAULT_TABLE_SIZE;

    /// `n` backends of weight 1; ids differ from indices so the test sees ids are stored.
    fn backends(n: u32) -> Vec<MaglevBackend> {
        (0..n)
            .map(|i| {
                MaglevBackend::new(1000 + i, format!("10.244.{}.{}:8080/TCP", i / 250, i % 250))
            })
            .collect()
    }

    fn count(table: &[u32], id: u32) -> usize {
        table.iter().filter(|&&entry| entry == id).count()
    }

    #[test]
    fn siphash_matches_the_reference_vectors() {
        // From the SipHash paper's appendix: key 00..0f, messages 00..(len-1).
        let key = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let message: Vec<u8> = (0..15).collect();
        assert_eq!(siphash24(key, &[]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(key, &message), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn equal_weights_share_the_table_near_uniformly() {
        for n in [3, 10, 100] {
            let input = backends(n);
            let table = table(&input, M).unwrap();
            assert_eq!(table.len(), M as usize);
            assert!(table.iter().all(|id| input.iter().any(|b| b.id == *id)));
            let share = M as usize / n as usize;
            for backend in &input {
                // Round-robin turns: floor or ceil of m/n, far inside the ±1% of m asked for.
                let got = count(&table, backend.id);
                assert!(got.abs_diff(share) <= 1, "n={n}: {got} vs {share}");
            }
        }
    }

    #[test]
    fn input_order_does_not_matter() {
        let input = backends(50);
        let mut shuffled = input.clone();
        shuffled.reverse();
        shuffled.rotate_left(17);
        shuffled.swap(3, 40);
        assert_ne!(input, shuffled);
        assert_eq!(table(&input, M).unwrap(), table(&shuffled, M).unwrap());
    }

    #[test]
    fn removing_a_backend_moves_few_other_entries() {
        let input = backends(10);
        let before = table(&input, M).unwrap();
        let removed = input[4].id;
        let rest: Vec<_> = input.iter().filter(|b| b.id != removed).cloned().collect();
        let after = table(&rest, M).unwrap();

        let orphaned = count(&before, removed);
        let changed = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let moved = changed - orphaned;
        assert!(!after.contains(&removed));
        // Every orphaned entry changes; the rest mostly stay (measured: 1638 + 94 = 1732).
        assert!(
            before
                .iter()
                .zip(&after)
                .all(|(b, a)| *b != removed || b != a)
        );
        assert!(changed < 2 * (M as usize / 10), "changed {changed}");
        assert!(
            moved < M as usize / 50,
            "moved {moved} entries of other backends"
        );

        // The table is a function of the set: adding the backend back restores it exactly.
        let mut again = rest;
        again.push(input[4].clone());
        assert_eq!(table(&again, M).unwrap(), before);
    }

    #[test]
    fn weights_give_proportional_shares_and_zero_drains() {
        let mut input = backends(3);
        input[0].weight = 1;
        input[1].weight = 3;
        input[2].weight = 0;
        let table = table(&input, M).unwrap();
        let (light, heavy) = (count(&table, input[0].id), count(&table, input[1].id));
        assert!(
            !table.contains(&input[2].id),
            "a drained backend has entries"
        );
        assert_eq!(light + heavy, M as usize);
        // Exact shares are 4095.25 and 12285.75; stride turns keep within one entry.
        assert!(light.abs_diff(M as usize / 4) <= 1, "light {light}");
        assert!(heavy.abs_diff(3 * M as usize / 4) <= 1, "heavy {heavy}");

        // Uneven weights that no round of Σw turns divides: still within an entry of m·w/Σw.
        let mut uneven = backends(3);
        for (backend, weight) in uneven.iter_mut().zip([1000, 2999, 7]) {
            backend.weight = weight;
        }
        let table = super::table(&uneven, M).unwrap();
        for backend in &uneven {
            let exact = f64::from(M) * f64::from(backend.weight) / 4006.0;
            let got = count(&table, backend.id) as f64;
            assert!((got - exact).abs() <= 1.0, "{got} vs {exact}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        use MaglevError::*;
        let two = backends(2);
        let mut drained = two.clone();
        drained.iter_mut().for_each(|b| b.weight = 0);
        let mut duplicate = two.clone();
        duplicate[1].key = duplicate[0].key.clone();
        let key = duplicate[0].key.clone();
        let too_many = TooManyBackends {
            backends: 8,
            table_size: 7,
        };
        let cases = [
            (two.clone(), 16_380, InvalidTableSize(16_380)),
            (two, 262_139, InvalidTableSize(262_139)),
            (vec![], M, NoActiveBackend),
            (drained, M, NoActiveBackend),
            (backends(8), 7, too_many),
            (duplicate, M, DuplicateKey(key)),
        ];
        for (input, m, error) in cases {
            assert_eq!(table(&input, m), Err(error));
        }
        let message = InvalidTableSize(16_380).to_string();
        assert_eq!(
            message,
            "maglev table size 16380 is not a prime of at most 131071"
        );
        let message = DuplicateKey("10.244.0.0:8080/TCP".into()).to_string();
        assert_eq!(message, "duplicate maglev backend key 10.244.0.0:8080/TCP");
    }

    #[test]
    fn table_sizes() {
        for m in [2, 7, 251, 16_381, 65_521, MAX_TABLE_SIZE] {
            assert!(is_valid_table_size(m), "{m}");
        }
        for m in [0, 1, 9, 16_380, 65_520, 262_139] {
            assert!(!is_valid_table_size(m), "{m}");
        }
        // The smallest table still works: n = m fills one entry per backend.
        let mut small = table(&backends(7), 7).unwrap();
        small.sort_unstable();
        assert_eq!(small, (1000..1007).collect::<Vec<_>>());
    }
}
