#![allow(missing_docs, dead_code)]
use super::*;
use crate::reading::Submission;
use actix::prelude::*;
pub struct StoreActor;
impl Actor for StoreActor {
    type Context = SyncContext<Self>;
}
impl StoreActor {
    pub fn start(
        _o: StoreOptions,
        _m: crate::metrics::Metrics,
    ) -> Result<(Addr<StoreActor>, NodeId), StoreError> {
        todo!()
    }
}
#[derive(Message)]
#[rtype(result = "Result<BatchResult, StoreError>")]
pub struct StoreBatch(pub Vec<Submission>);
#[derive(Message)]
#[rtype(result = "Result<Vec<AggregateRow>, StoreError>")]
pub struct QueryAggregates(pub AggregateQuery);
#[derive(Message)]
#[rtype(result = "Result<StoredAlert, StoreError>")]
pub struct RecordAlert(pub NewAlert);
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct ResolveAlert(pub ResolvedAlert);
#[derive(Message)]
#[rtype(result = "Result<Vec<StoredAlert>, StoreError>")]
pub struct QueryAlerts(pub AlertQuery);
#[derive(Message)]
#[rtype(result = "Result<StoreStatus, StoreError>")]
pub struct GetStatus;
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Checkpoint;
macro_rules! h {
    ($m:ty) => {
        impl Handler<$m> for StoreActor {
            type Result = <$m as Message>::Result;
            fn handle(&mut self, _: $m, _: &mut SyncContext<Self>) -> Self::Result {
                todo!()
            }
        }
    };
}
h!(StoreBatch);
h!(QueryAggregates);
h!(RecordAlert);
h!(ResolveAlert);
h!(QueryAlerts);
h!(GetStatus);
h!(Checkpoint);
