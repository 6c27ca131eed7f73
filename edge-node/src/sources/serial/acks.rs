//! The cumulative acknowledgement of one device boot (docs/protocol.md,
//! "DeviceAck"; the serial module docs, "Where the count starts").

use std::collections::BTreeSet;

/// Most final seqs remembered above a gap. Forgetting one is safe (it is
/// simply not acknowledged until the device resends it), so a device that
/// never fills a gap cannot make the gateway's memory grow.
const MAX_ABOVE_GAP: usize = 4096;

/// The cumulative acknowledgement of one device boot (see the module docs,
/// "Where the count starts").
#[derive(Debug, Default)]
pub(super) struct AckWindow {
    /// Lowest seq whose verdict is not final yet; `None` until the first
    /// data frame after a hello sets it.
    next: Option<u64>,
    /// Final seqs above `next` (after a gap).
    done: BTreeSet<u64>,
    /// A frame was rejected before `next` was known: the first good frame
    /// may not be the device's oldest.
    tainted: bool,
}

impl AckWindow {
    /// A frame could not be read; it may have been a data frame.
    pub(super) fn frame_lost(&mut self) {
        if self.next.is_none() {
            self.tainted = true;
        }
    }

    /// A data frame arrived; returns whether the count could start (false
    /// means: ask for a new hello).
    pub(super) fn arrived(&mut self, seq: u32) -> bool {
        if self.next.is_none() && !self.tainted {
            self.next = Some(u64::from(seq));
        }
        self.next.is_some()
    }

    /// The device said hello again for this boot: if the count had not
    /// started, the next data frame is its oldest again.
    pub(super) fn hello(&mut self) {
        if self.next.is_none() {
            self.tainted = false;
        }
    }

    /// Frame `seq` is final; returns the `upto` to acknowledge, if any.
    pub(super) fn finished(&mut self, seq: u32) -> Option<u32> {
        let mut next = self.next?;
        let seq = u64::from(seq);
        if seq >= next {
            self.done.insert(seq);
            while self.done.remove(&next) {
                next += 1;
            }
            if self.done.len() > MAX_ABOVE_GAP {
                self.done.pop_last();
            }
            self.next = Some(next);
        }
        next.checked_sub(1)
            .and_then(|upto| u32::try_from(upto).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_above_a_gap_are_bounded_and_forgetting_is_safe() {
        let mut w = AckWindow::default();
        w.arrived(0);
        for seq in 1..=5000 {
            assert_eq!(w.finished(seq), None);
        }
        assert_eq!(w.done.len(), MAX_ABOVE_GAP);
        // The gap closes: only what was remembered is acknowledged.
        assert_eq!(w.finished(0), Some(MAX_ABOVE_GAP as u32));
        // The forgotten frames count once the device resends them.
        assert_eq!(
            w.finished(MAX_ABOVE_GAP as u32 + 1),
            Some(MAX_ABOVE_GAP as u32 + 1)
        );
    }

    #[test]
    fn acks_are_cumulative_from_the_first_frame() {
        let mut w = AckWindow::default();
        assert!(w.arrived(5));
        assert_eq!(w.finished(5), Some(5));
        // 6 lost on the wire; 7 is final but cannot be acknowledged yet.
        assert!(w.arrived(7));
        assert_eq!(w.finished(7), Some(5));
        // 6 resent: the gap closes.
        assert_eq!(w.finished(6), Some(7));
        // A retransmission of an acknowledged frame gets the watermark again.
        assert_eq!(w.finished(6), Some(7));
    }

    #[test]
    fn a_lost_frame_before_the_first_one_blocks_acks_until_a_hello() {
        let mut w = AckWindow::default();
        w.frame_lost();
        assert!(!w.arrived(3));
        assert_eq!(w.finished(3), None);
        w.hello();
        assert!(w.arrived(2));
        assert_eq!(w.finished(2), Some(2));
        assert_eq!(w.finished(3), Some(3));
    }

    #[test]
    fn nothing_is_acknowledged_below_seq_zero() {
        let mut w = AckWindow::default();
        assert!(w.arrived(0));
        assert_eq!(w.finished(1), None);
        assert_eq!(w.finished(0), Some(1));
        let mut top = AckWindow::default();
        top.arrived(u32::MAX);
        assert_eq!(top.finished(u32::MAX), Some(u32::MAX));
    }
}
