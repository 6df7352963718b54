//! A stored event is applied: the [`worker`] claims events from the inbox, reads each with its
//! provider's [`mapping`] and applies it to [`transactions`] through the pure state rules. An
//! [`expected`] debit is a transaction the merchant announced before any event.

pub mod expected;
pub mod mapping;
pub mod transactions;
pub mod worker;
