//! What more than one bench builds the same way.

use tributary_edge::reading::{Item, Origin, Sample, Submission};

/// `samples` as a batch of submissions of `per` readings each, one
/// simulated device (`device-{i}`) per chunk, each with the next `seq`:
/// the shape a busy gateway's ingest sees.
pub fn submissions(samples: &[Sample], per: usize, seq: &mut u64) -> Vec<Submission> {
    samples
        .chunks(per)
        .enumerate()
        .map(|(d, c)| {
            *seq += 1;
            Submission {
                origin: Some(Origin {
                    source: format!("device-{d}"),
                    seq: *seq,
                }),
                items: c.iter().copied().map(Item::Reading).collect(),
            }
        })
        .collect()
}
