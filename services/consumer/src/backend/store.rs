//! What the consumer needs from any backing service, whatever its kind: the one interface
//! every adapter implements. Deadlines, the retry and the circuit breaker are not here:
//! [`super::Backend`] wraps them once around whichever adapter is attached.
//!
//! An adapter makes one attempt per call and says how it failed with an [`BackendError`]:
//! `Unreachable` when the request may not have arrived or its answer was lost (the one failure
//! that is retried, since every operation here is safe to repeat), `Rejected` for refused
//! credentials, `Full` for a store out of space, `Failed` and `Malformed` for the rest.

use futures_util::future::BoxFuture;

use super::coalescer::Lookup;
use super::{BackendError, Created, Info};
use crate::links::{Code, LinkDocument};

/// The most codes one click batch carries: the v1 contract's bound on a batch of increments.
pub const MAX_BATCH_CODES: usize = 1000;

/// The result of one attempt.
pub type Attempt<'a, T> = BoxFuture<'a, Result<T, BackendError>>;

/// A backing service for links and their clicks.
pub trait Store: Send + Sync {
    /// Who answers: the instance as it names itself. Costs the same at any size of the data.
    fn info(&self) -> Attempt<'_, Info>;

    /// The links stored under `codes` (distinct, at most
    /// [`super::coalescer::MAX_LOOKUPS_PER_CALL`]), each answered in their order: its link,
    /// none, or why that one value could not be used (unreadable, or larger than any link
    /// document, which is refused without being read whole). The whole attempt fails only when
    /// the call itself does.
    fn links<'a>(&'a self, codes: &'a [Code]) -> Attempt<'a, Vec<Lookup>>;

    /// Stores `document` under `code` only if nothing is stored there: `Taken` otherwise, even
    /// when what is there is this very document (a retried create); the caller tells those
    /// apart.
    fn create_link<'a>(
        &'a self,
        code: &'a Code,
        document: &'a LinkDocument,
    ) -> Attempt<'a, Created>;

    /// The clicks counted for `code`; 0 when there are none.
    fn clicks<'a>(&'a self, code: &'a Code) -> Attempt<'a, i64>;

    /// Adds each `(code, clicks)` of `batch` (at most [`MAX_BATCH_CODES`]) in one atomic step,
    /// once per `idempotency_key`: a batch sent again with the same key (for at least 24 hours)
    /// is not counted again.
    fn add_clicks<'a>(
        &'a self,
        batch: &'a [(String, u64)],
        idempotency_key: &'a str,
    ) -> Attempt<'a, ()>;
}
