//! The fleet document's Prometheus metrics, the same in both daemons
//! (registered under each daemon's prefix: `tributary_hub_config_sync_*`
//! on the hub, `tributary_config_sync_*` on a gateway).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::FleetHooks;

type Label1 = [(&'static str, &'static str); 1];

/// The counters. Cheap to clone (shared handles).
#[derive(Clone, Debug, Default)]
pub struct FleetMetrics {
    /// Sync messages and edits refused, by reason
    /// (`config_sync_rejected_total{reason}`: `malformed_sync`, a
    /// validation reason of a local edit, `store`, `busy`, …).
    pub rejected: Family<Label1, Counter>,
    /// Sync messages, by direction (`config_sync_messages_total{direction="in|out"}`).
    pub messages: Family<Label1, Counter>,
    /// Outgoing sync messages dropped because the MQTT task's queue was
    /// full (`config_sync_dropped_total`); the peer gets a new round after
    /// its stall timeout.
    pub dropped: Counter,
}

impl FleetMetrics {
    /// Registers the counters in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "config_sync_rejected",
            "Fleet configuration sync messages and edits refused, by reason",
            self.rejected.clone(),
        );
        r.register(
            "config_sync_messages",
            "Fleet configuration sync messages, by direction",
            self.messages.clone(),
        );
        r.register(
            "config_sync_dropped",
            "Outgoing fleet configuration sync messages dropped (queue full)",
            self.dropped.clone(),
        );
    }

    /// The actor's callbacks into these counters (refusals are also logged).
    pub fn hooks(&self) -> FleetHooks {
        let (rejected, messages, dropped) = (
            self.rejected.clone(),
            self.messages.clone(),
            self.dropped.clone(),
        );
        FleetHooks {
            rejected: Box::new(move |reason, peer| {
                rejected.get_or_create(&[("reason", reason)]).inc();
                match peer {
                    Some(node) => tracing::warn!(%node, reason, "fleet sync message refused"),
                    None => tracing::debug!(reason, "fleet configuration edit refused"),
                }
            }),
            message: Box::new(move |incoming| {
                let d = if incoming { "in" } else { "out" };
                messages.get_or_create(&[("direction", d)]).inc();
            }),
            dropped: Box::new(move || {
                dropped.inc();
            }),
        }
    }
}
