//! From the flow's refusals to the closed set of reasons that usage events carry.
//!
//! The flow's [`Rejection::reason`](crate::flow::Rejection::reason) is fine-grained (one name per
//! variant, for metrics and logs); usage events count rejected calls in the nine buckets of
//! [`RejectReason`], a wire format that only grows with a new version (docs/events.md).

use gateway_model::event::RejectReason;

use crate::apikey::KeyRejection;
use crate::flow::{QuotaExceeded, Rejection, SubscriptionRejection};

/// The usage bucket of a flow refusal; `None` when no key was identified (no credential, or an
/// unknown client id): such calls have no key to charge and appear only in metrics.
#[must_use]
pub fn reject_reason(rejection: Rejection) -> Option<RejectReason> {
    match rejection {
        // Refused before any key was identified: nothing to charge.
        Rejection::ClientCert(_) => None,
        // A refused token names no subscription (its claims are not trusted): metrics only.
        Rejection::Token(_) => None,
        Rejection::Key(key) => key_reject_reason(key),
        // A key that names no subscription of the API is refused as not authorized there; a
        // subscription that cannot call, as disabled.
        Rejection::Subscription(SubscriptionRejection::NotIdentified) => {
            Some(RejectReason::NotAuthorized)
        }
        Rejection::Subscription(_) => Some(RejectReason::Disabled),
        Rejection::Restricted(_) => Some(RejectReason::Restriction),
        Rejection::ReadOnlyRoute => Some(RejectReason::ReadOnly),
        Rejection::Quota(QuotaExceeded::Throttled { .. }) => Some(RejectReason::Throttled),
        Rejection::Quota(QuotaExceeded::Daily { .. }) => Some(RejectReason::QuotaDaily),
        Rejection::Quota(QuotaExceeded::Monthly { .. }) => Some(RejectReason::QuotaMonthly),
    }
}

/// The usage bucket of an API-key refusal; `None` for [`KeyRejection::NoKey`] and
/// [`KeyRejection::UnknownKey`].
///
/// A refusal that may come before the client id is known (a malformed credential, a JWT without
/// a client id claim) still maps to [`RejectReason::Auth`]: whether there is a key to charge is
/// the caller's knowledge, and it records usage only when it has one.
#[must_use]
pub fn key_reject_reason(rejection: KeyRejection) -> Option<RejectReason> {
    match rejection {
        KeyRejection::NoKey | KeyRejection::UnknownKey => None,
        KeyRejection::Malformed
        | KeyRejection::BadSecret
        | KeyRejection::BadBearer
        | KeyRejection::ClientIdOnlyNotAllowed
        | KeyRejection::Jwt(_) => Some(RejectReason::Auth),
        KeyRejection::Disabled | KeyRejection::Expired => Some(RejectReason::Disabled),
        KeyRejection::NotAuthorized
        | KeyRejection::ConstrainedOnly
        | KeyRejection::RoutingMismatch => Some(RejectReason::NotAuthorized),
        KeyRejection::ReadOnly => Some(RejectReason::ReadOnly),
    }
}
