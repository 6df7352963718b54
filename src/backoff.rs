//! Exponential backoff, shared by everything that retries: the worker (a failed application), the
//! poller (FLUID's API) and the forwarder (the downstream URL); and the lease a claim of the
//! poller or the forwarder holds while its request is out.

/// How long past the request timeout a lease lasts: the margin for recording the answer.
const LEASE_MARGIN_MS: u64 = 30_000;

/// The lease in milliseconds of a claim whose request may take `timeout_ms`: it outlasts the
/// request, so no other replica sends it meanwhile, and ends soon after a replica that died.
pub fn lease_ms(timeout_ms: u64) -> i64 {
    i64::try_from(timeout_ms.saturating_add(LEASE_MARGIN_MS)).unwrap_or(i64::MAX)
}

/// The delay in milliseconds before try number `attempt + 1` after `attempt` failed tries (the
/// first retry waits `base_ms`, each next one twice as long), at most `max_ms`.
pub fn delay_ms(base_ms: u64, max_ms: u64, attempt: i32) -> i64 {
    let exp = (attempt - 1).clamp(0, 30) as u32;
    let delay = base_ms.saturating_mul(1u64 << exp).min(max_ms);
    i64::try_from(delay).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::delay_ms;

    #[test]
    fn doubles_from_the_base_up_to_the_cap() {
        let delays: Vec<i64> = (1..=6).map(|n| delay_ms(1000, 10_000, n)).collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(
            delay_ms(1000, 10_000, 0),
            1000,
            "a first try waits the base"
        );
        assert_eq!(delay_ms(u64::MAX, u64::MAX, 99), i64::MAX, "no overflow");
    }

    #[test]
    fn a_lease_outlasts_the_request_by_the_margin() {
        assert_eq!(super::lease_ms(30_000), 60_000);
        assert_eq!(super::lease_ms(u64::MAX), i64::MAX, "no overflow");
    }
}
