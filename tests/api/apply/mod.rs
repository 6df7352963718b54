//! Applying stored events: the state rules at work and the worker.

mod expected;
mod transactions;
mod worker;
