//! Test-only scaffolding for the join-semilattice laws (STYLE.md §7), shared
//! by the property tests of the CRDTs in this directory.
//!
//! Each test module generates a *history*: every state its replicas passed
//! through while running random operations. The strategies here pick states
//! out of one such history, so the picks are related the way real replicas'
//! states are; the checks return a [`TestCaseError`] for `?` in `proptest!`.

use super::Join;
use core::fmt::Debug;
use proptest::prelude::*;
use proptest::sample::Index;
use std::vec::Vec;

/// `N` states picked, with repetition, from one history drawn from `history`.
///
/// The history must never be empty.
pub fn picks<T, const N: usize>(
    history: impl Strategy<Value = Vec<T>>,
) -> impl Strategy<Value = [T; N]>
where
    T: Clone + Debug,
{
    (history, any::<[Index; N]>()).prop_map(|(s, picks)| picks.map(|i| i.get(&s).clone()))
}

/// One to fifteen states picked, with repetition, from one history drawn
/// from `history`, in delivery order, and for each a random key: sorting
/// by the keys reorders the delivery (see [`shuffled_with_duplicates`]).
///
/// The history must never be empty.
pub fn deliveries<T>(
    history: impl Strategy<Value = Vec<T>>,
) -> impl Strategy<Value = (Vec<T>, Vec<u32>)>
where
    T: Clone + Debug,
{
    let picks = proptest::collection::vec((any::<Index>(), any::<u32>()), 1..16);
    (history, picks).prop_map(|(s, picks)| {
        picks
            .into_iter()
            .map(|(i, key)| (i.get(&s).clone(), key))
            .unzip()
    })
}

/// Checks `a ⊔ b == b ⊔ a`.
pub fn commutative<T>(a: &T, b: &T) -> Result<(), TestCaseError>
where
    T: Join + Clone + PartialEq + Debug,
{
    prop_assert_eq!(a.joined(b), b.joined(a));
    Ok(())
}

/// Checks `(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)`.
pub fn associative<T>(a: &T, b: &T, c: &T) -> Result<(), TestCaseError>
where
    T: Join + Clone + PartialEq + Debug,
{
    prop_assert_eq!(a.joined(b).joined(c), a.joined(&b.joined(c)));
    Ok(())
}

/// Checks `a ⊔ a == a`.
pub fn idempotent<T>(a: &T) -> Result<(), TestCaseError>
where
    T: Join + Clone + PartialEq + Debug,
{
    prop_assert_eq!(&a.joined(a), a);
    Ok(())
}

/// Joins every state of `from` into `state`, in order.
pub fn deliver<'a, T>(mut state: T, from: impl IntoIterator<Item = &'a T>) -> T
where
    T: Join + 'a,
{
    for s in from {
        state.join(s);
    }
    state
}

/// `states` reordered by `keys` (a stable sort, `keys[i]` being the key of
/// `states[i]`), followed by the first half of `states` again, in their
/// original order: duplicates.
pub fn shuffled_with_duplicates<'a, T>(states: &'a [T], keys: &[u32]) -> Vec<&'a T> {
    assert_eq!(states.len(), keys.len(), "one key per state");
    let mut order: Vec<usize> = (0..states.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    order.extend(0..states.len() / 2);
    order.into_iter().map(|i| &states[i]).collect()
}

/// Two replicas, both starting at `start`: the first receives `states` in
/// order, the second receives them reordered by `keys` and with duplicates
/// ([`shuffled_with_duplicates`]). Returns both replicas' final states.
pub fn deliver_two_ways<T>(start: T, states: &[T], keys: &[u32]) -> (T, T)
where
    T: Join + Clone + PartialEq + Debug,
{
    let in_order = deliver(start.clone(), states);
    let shuffled = deliver(start, shuffled_with_duplicates(states, keys));
    (in_order, shuffled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffled_with_duplicates_sorts_stably_then_repeats_the_first_half() {
        let states = [10, 20, 30, 40, 50];
        let shuffled = shuffled_with_duplicates(&states, &[3, 1, 3, 0, 2]);
        assert_eq!(shuffled, [&40, &20, &50, &10, &30, &10, &20]);
    }
}
